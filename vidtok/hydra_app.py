"""The Hydra apps' side of the jobs (``python -m vidtok.train`` / ``.evaluate`` / ``.encode`` / ``.decode``, and the
checkout's scripts): the app decorator over the packaged configs, the frame of a job's run ([`run_job`][]: logging,
the one-line exit on a user error, the processes ended), and the output folders Hydra makes under several processes.
Composition itself is [`vidtok.composition`][].
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional, TypeVar

from .composition import allow_numeric_group_choices, conf_dir, quote_brace_patterns
from .config_loader import composed_values
from .errors import VidtokError, report

T = TypeVar("T")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def hydra_app(config_name: str) -> Callable[[Callable], Callable]:
    """``@hydra.main`` for a vidtok app: the config ``conf/<config_name>.yaml`` from vidtok's config directory (the
    checkout's ``conf/`` or the installed package's), Hydra 1.3 semantics, numeric group choices accepted, and shard
    brace patterns taken as typed ([`quote_brace_patterns`][] on the command line)."""
    import hydra

    allow_numeric_group_choices()
    main = hydra.main(config_path=str(conf_dir()), config_name=config_name, version_base="1.3")

    def decorate(task: Callable) -> Callable:
        app = main(task)

        @functools.wraps(task)
        def entry(*args: Any, **kwargs: Any) -> Any:
            sys.argv[1:] = quote_brace_patterns(sys.argv[1:])
            return app(*args, **kwargs)

        return entry

    return decorate


@contextmanager
def user_errors(prog: str) -> Iterator[None]:
    """Inside a job's task function: a [`VidtokError`][vidtok.errors.VidtokError] ends the process with one line on
    stderr and exit status 2 ([`report`][vidtok.errors.report]), not a traceback. Hydra lets ``SystemExit``
    through."""
    try:
        yield
    except VidtokError as err:
        raise SystemExit(report(prog, err)) from None


def run_job(prog: str, job: Callable[[dict], T], cfg: Any, example: str) -> T:
    """What every job's entry does around the job: logging set up, the composed config as plain values (a missing
    key named with ``example``, e.g. ``"data.dir=videos/"``), the job run on them, the processes ended (the jobs of a
    ``-m`` sweep share one process), and a user error made one line and exit status 2 ([`user_errors`][])."""
    import logging

    from .accelerator import end_processes

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    with user_errors(prog):
        try:
            return job(composed_values(cfg, example))
        finally:
            end_processes()


def is_main_rank() -> bool:
    """Whether this is the process that prints a job's summary (rank 0, or the only one)."""
    return int(os.environ.get("RANK", "0")) == 0


def hydra_output_dir() -> Optional[Path]:
    """The output directory of the running Hydra app (None outside one)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except Exception:  # not running under a Hydra app
        return None


def drop_stray_hydra_dir(hydra_dir: Optional[Path], used_dir: Path) -> None:
    """Remove the directory Hydra made on a non-zero rank whose timestamp differs from rank 0's (the one all
    ranks used), when it holds nothing but Hydra's own files."""
    if is_main_rank() or hydra_dir is None or not hydra_dir.exists():
        return
    if hydra_dir.resolve() == used_dir.resolve():
        return
    if all(p.name == ".hydra" or p.suffix == ".log" for p in hydra_dir.iterdir()):
        shutil.rmtree(hydra_dir, ignore_errors=True)
