"""The entry point of ``evaluate.py`` (a Hydra app): the composed config in, [`evaluate`][vidtok.evaluation.evaluate]
run (or [`compare`][vidtok.evaluation.compare] for ``tokenizers=[...]``), the summary table printed, and any user
error ([`VidtokError`][vidtok.errors.VidtokError]) turned into one line."""

from __future__ import annotations

import math
from typing import Any

from ..hydra_app import drop_stray_hydra_dir, hydra_output_dir, is_main_rank, run_job
from .compare import compare
from .result import Comparison
from .run import evaluate


def evaluate_from_hydra(cfg: Any) -> float:
    """Entry point of evaluate.py: runs [`evaluate`][], prints the summary table; exits with one line and
    status 2 on a user error. Returns the PSNR."""
    from .comparison_report import format_comparison
    from .report import format_summary

    hydra_dir = hydra_output_dir()

    def job(raw: dict) -> Any:
        if raw.get("output", {}).get("dir") is None and hydra_dir is not None:
            raw.setdefault("output", {})["dir"] = str(hydra_dir)
        return compare(raw) if raw.get("tokenizers") else evaluate(raw)

    result = run_job("evaluate", job, cfg, "ckpt=model.ckpt data.dir=videos/")
    if result.output_dir is not None:
        drop_stray_hydra_dir(hydra_dir, result.output_dir)
    if isinstance(result, Comparison):
        if is_main_rank():
            print(format_comparison(result))
        psnr = result.rows[0].get("psnr")
        return float(psnr if psnr is not None else math.nan)
    if is_main_rank():
        print(format_summary(result))
    return float(result.summary.get("psnr", math.nan))
