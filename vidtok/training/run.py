"""Running a training job from a composed config: what ``python -m vidtok.train`` calls, also usable from Python."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from omegaconf import DictConfig, OmegaConf

from ..composition import compose_conf
from ..errors import ConfigError
from ..hydra_app import LOG_FORMAT, drop_stray_hydra_dir, hydra_output_dir, user_errors
from .config import RunConfig, describe_run, load_run_config
from .summary import example_video, run_ending

if TYPE_CHECKING:
    from .trainer import Trainer

log = logging.getLogger("vidtok.train")


def compose_train_config(overrides: Sequence[str] = ()) -> DictConfig:
    """``conf/train.yaml`` composed with Hydra overrides, without starting a Hydra app (``run_dir`` must
    then be given, e.g. ``run_dir=runs/x``, since there is no Hydra output directory)."""
    overrides = list(overrides)
    return compose_conf("train", overrides, f"the training config with {overrides}")


def train(run: RunConfig, accelerator: Any = None) -> dict[str, float]:
    """Train as ``run`` says; returns the last step's logs. Saves the resolved config in the run and ends by printing
    (main process) where the run is, what it reached and the commands to try its last checkpoint."""
    from .trainer import Trainer

    trainer = Trainer(run, accelerator)
    if trainer.is_main and run.raw is not None:
        (trainer.run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(run.raw)))
    last = trainer.fit()
    if trainer.is_main:
        print(_ending(trainer), flush=True)
    return last


def _ending(trainer: Trainer) -> str:
    """The closing lines of ``trainer``'s finished run ([`vidtok.training.summary.run_ending`][])."""
    return run_ending(
        trainer.run,
        run_dir=trainer.run_dir,
        step=trainer.state.step,
        validation=trainer.last_validation,
        checkpoint=trainer.ckpts.latest(),
        video=example_video(trainer.val_set, trainer.train_set),
    )


def train_from_hydra(cfg: DictConfig) -> float:
    """Entry point of ``python -m vidtok.train`` (and train.py); returns the last total loss (what a Hydra sweeper
    would minimise). With ``launch.accelerate`` on a SLURM node it starts ``accelerate launch`` there instead."""
    from ..accelerator import end_processes

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    hydra_dir = hydra_output_dir()
    if cfg.get("launch", {}).get("accelerate") and "LOCAL_RANK" not in os.environ:
        return _launch_node(hydra_dir)
    with user_errors("train"):
        run = load_run_config(cfg)
        if run.dry_run:
            print(f"dry run (nothing trained): {describe_run(run)}", flush=True)
            return math.nan
        try:
            last = train(run)
        finally:
            end_processes()  # several jobs of a -m sweep run in one process: each sets up afresh
    drop_stray_hydra_dir(hydra_dir, Path(run.run_dir))
    return float(last.get("total_loss", math.nan))


def _launch_node(hydra_dir: Optional[Path]) -> float:
    """Run this node's share of a multi-node job through ``accelerate launch`` (see vidtok.training.launch)."""
    import subprocess

    from hydra.core.hydra_config import HydraConfig

    from .launch import slurm_accelerate_command

    if hydra_dir is None:
        raise ConfigError("launch.accelerate=true needs train.py run as a Hydra app (with the submitit launcher)")
    hc = HydraConfig.get()
    config_dir = next(
        (src.path.removeprefix("file://") for src in hc.runtime.config_sources if src.provider == "command-line"),
        None,
    )
    cmd = slurm_accelerate_command(
        list(hc.overrides.task), hydra_dir, config_dir=config_dir, config_name=hc.job.config_name
    )
    log.info("starting on this node: %s", " ".join(cmd))
    subprocess.run(cmd, check=True)
    return math.nan
