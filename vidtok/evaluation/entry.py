"""The entry point of ``evaluate.py`` (a Hydra app): the composed config in, :func:`~vidtok.evaluation.evaluate`
run, the summary table printed, and a config / checkpoint / weights / data error turned into one line."""

from __future__ import annotations

import logging
import math
import os
from typing import Any

from ..config import ConfigError, composed_values
from .run import evaluate


def evaluate_from_hydra(cfg: Any) -> float:
    """Entry point of evaluate.py: runs :func:`evaluate`, prints the summary table, exits with one line on a
    config, checkpoint, weights or data error. Returns the PSNR."""
    from ..data import DataSourceError
    from ..distributed import LaunchError, drop_stray_hydra_dir, end_processes, hydra_output_dir
    from ..errors import InputError
    from ..io.auxiliary_weights import WeightsError
    from ..io.weight_files import CheckpointError
    from .report import format_summary

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    hydra_dir = hydra_output_dir()
    try:
        raw = composed_values(cfg, "ckpt=model.ckpt data.dir=videos/")
        if raw.get("output", {}).get("dir") is None and hydra_dir is not None:
            raw.setdefault("output", {})["dir"] = str(hydra_dir)
        result = evaluate(raw)
    except (ConfigError, CheckpointError, WeightsError, DataSourceError, InputError, LaunchError) as err:
        raise SystemExit(f"cannot evaluate: {err}") from None
    finally:
        end_processes()  # several jobs of a -m sweep run in one process: each sets up afresh
    if result.output_dir is not None:
        drop_stray_hydra_dir(hydra_dir, result.output_dir)
    if int(os.environ.get("RANK", "0")) == 0:
        print(format_summary(result))
    return float(result.summary.get("psnr", math.nan))
