"""The entry point of ``encode.py`` (a Hydra app): the composed config in, :func:`~vidtok.encoding.encode_dataset`
run, one summary line printed, and a config / checkpoint / data error turned into one line."""

from __future__ import annotations

import logging
import os
from typing import Any

from ..config import ConfigError, composed_values
from .run import encode_dataset


def encode_from_hydra(cfg: Any) -> int:
    """Entry point of encode.py: runs :func:`encode_dataset`, prints what was written; exits with one line on a
    config, checkpoint, weights or data error. Returns the number of samples in the output."""
    from ..data import DataSourceError
    from ..distributed import LaunchError, end_processes
    from ..errors import InputError
    from ..io.weight_files import CheckpointError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        raw = composed_values(cfg, "data.dir=videos/ output.dir=latents/")
        result = encode_dataset(raw)
    except (ConfigError, CheckpointError, DataSourceError, InputError, LaunchError) as err:
        raise SystemExit(f"cannot encode: {err}") from None
    finally:
        end_processes()
    if int(os.environ.get("RANK", "0")) == 0:
        print(
            f"wrote {result.samples} samples of {result.identity.get('name') or 'the tokenizer'} to "
            f"{result.output_dir} ({result.videos} videos encoded now, {result.skipped_done} done before, "
            f"{len(result.failed)} failed; {result.frames / max(result.seconds, 1e-9):.1f} frames/s)"
        )
    return result.samples
