"""What an evaluation produced: [`EvalResult`][] (identical on every process), and [`summarize`][], its
headline numbers from the gathered video records and FVD features (exactly rounded means, FVD statistics
accumulated in the videos' order, so the numbers do not depend on the process count)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..metrics import FeatureStats, FrameScorer, fvd_from_stats
from ..metrics.video import exact_mean
from .runner import TIMERS


@dataclass
class EvalResult:
    """Everything an evaluation produced, identical on every process.

    ``summary``: means over every evaluated frame (``psnr``, ``ssim``, ``lpips``), ``fvd``, counts and throughput;
    ``videos`` / ``clips``: one record per video / clip, in the listing's order (videos carry their per-frame
    values); ``failed``: the videos that could not be evaluated and why; ``tokenizer``: what was evaluated.
    """

    summary: dict[str, Any]
    videos: list[dict[str, Any]]
    clips: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    tokenizer: dict[str, Any]
    config: dict[str, Any]
    output_dir: Optional[Path] = None
    files: list[Path] = field(default_factory=list)


def add_token_and_drift_stats(summary: dict[str, Any], config: Any, codes: list, drifts: list, reference: Any) -> None:
    """Add to ``summary`` the discrete tokens' statistics (``tokens``: code usage, perplexity, change rate) from the
    processes' code counts, and the latent drift from the ``reference`` (its name) from their drift sums."""
    from ..metrics.codes import code_stats
    from ..metrics.drift import LatentDrift

    codes = [c for c in codes if c is not None]
    if codes:
        summary["tokens"] = code_stats(codes, config.levels)
    if any(d is not None for d in drifts):
        summary["latent_drift"] = {"reference": reference, **LatentDrift.merged(drifts).compute()}


def summarize(
    records: list[dict], failed: list[dict], features: list[tuple], scorer: FrameScorer, wall: float, processes: int
) -> dict[str, Any]:
    """The headline numbers: every metric's mean over all evaluated frames (each frame weighs the same, as in the
    original's evaluation), FVD over all windows, counts, and where the time went."""
    summary: dict[str, Any] = {
        "videos": len(records),
        "failed": len(failed),
        "clips": sum(len(r["clips"]) for r in records),
        "frames": sum(r["frames"] for r in records),
    }
    for m in scorer.metric_names:
        summary[m] = exact_mean([v for r in records for v in r["per_frame"][m]])
    if scorer.detector is not None:
        real, fake = FeatureStats(), FeatureStats()
        for _, _, fr, ff in features:
            real.update(fr[None])
            fake.update(ff[None])
        summary["fvd"] = fvd_from_stats(real, fake)
        summary["fvd_clips"] = len(features)
    seconds = {k: math.fsum(r["seconds"][k] for r in records) for k in TIMERS}
    busy = math.fsum(seconds.values())
    summary["seconds"] = wall
    summary["processes"] = processes
    summary["videos_per_second"] = len(records) / wall if wall > 0 else math.nan
    summary["time_share"] = {k: (v / busy if busy > 0 else math.nan) for k, v in seconds.items()}
    return summary


@dataclass
class Comparison:
    """What a comparison produced, identical on every process: ``rows`` (one per tokenizer, the columns of
    ``comparison_report.COLUMNS``), ``results`` (each tokenizer's ``EvalResult``, by its
    name), the videos that could not be read (for any tokenizer), the detector, where the reports went, and
    ``timing``: the run's ``seconds`` and the ``read_seconds`` spent decoding and resizing the videos once for all
    (each tokenizer's own time is its summary's ``seconds``)."""

    rows: list[dict[str, Any]]
    results: dict[str, EvalResult]
    failed: list[dict[str, Any]]
    detector: Optional[dict[str, Any]]
    config: dict[str, Any]
    output_dir: Optional[Path] = None
    files: list[Path] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=dict)
