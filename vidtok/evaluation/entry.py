"""The entry point of ``evaluate.py`` (a Hydra app): the composed config in, [`evaluate`][vidtok.evaluation.evaluate]
run, the summary table printed, and any user error ([`VidtokError`][vidtok.errors.VidtokError]) turned into one line."""

from __future__ import annotations

import logging
import math
import os
from typing import Any

from ..config_loader import composed_values
from ..hydra_app import drop_stray_hydra_dir, hydra_output_dir, user_errors
from .run import evaluate


def evaluate_from_hydra(cfg: Any) -> float:
    """Entry point of evaluate.py: runs [`evaluate`][], prints the summary table; exits with one line and
    status 2 on a user error. Returns the PSNR."""
    from ..accelerator import end_processes
    from .report import format_summary

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    hydra_dir = hydra_output_dir()
    with user_errors("evaluate"):
        try:
            raw = composed_values(cfg, "ckpt=model.ckpt data.dir=videos/")
            if raw.get("output", {}).get("dir") is None and hydra_dir is not None:
                raw.setdefault("output", {})["dir"] = str(hydra_dir)
            result = evaluate(raw)
        finally:
            end_processes()  # several jobs of a -m sweep run in one process: each sets up afresh
    if result.output_dir is not None:
        drop_stray_hydra_dir(hydra_dir, result.output_dir)
    if int(os.environ.get("RANK", "0")) == 0:
        print(format_summary(result))
    return float(result.summary.get("psnr", math.nan))
