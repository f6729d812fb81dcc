"""Evaluate a tokenizer on a set of videos: reconstruct them by the paper's protocol, score every frame, gather.

[`evaluate`][] is what ``evaluate.py`` runs; it works the same from Python (``evaluate({"ckpt": ..., "data":
{"dir": ...}})``) and under ``accelerate launch``, where every process takes every n-th video and the results are
gathered once at the end. A video's numbers never depend on the process count: clips are batched only with clips
of the same video, metrics are computed clip by clip, summary means use exactly rounded sums, and the FVD
statistics are accumulated in the videos' order.

This module holds the orchestration only: the per-video work is in [`.runner`][], the result and its summary in
[`.result`][], the tokenizer's identity in [`.identity`][], the reports in [`.report`][] and the Hydra entry
point in [`.entry`][].
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Optional, Union

import torch
from tqdm.auto import tqdm

from ..data.videos import ListingFailure
from ..distributed import gather_objects
from ..errors import ConfigError
from ..inference.identity import tokenizer_identity
from ..inference.job import start_job
from ..metrics import FrameScorer
from .config import EvalConfig
from .result import EvalResult, add_token_and_drift_stats, summarize
from .runner import UnreadableVideo, VideoRunner, failure

log = logging.getLogger("vidtok.evaluate")


def evaluate(
    config: Union[EvalConfig, dict, Any], *, accelerator: Any = None, write: bool = True, tokenizer: Any = None
) -> EvalResult:
    """Run an evaluation as ``config`` (an [`EvalConfig`][], a dict or an OmegaConf node) says.

    Writes the reports to ``config.output.dir`` (on the main process) when ``write`` and a directory is set.
    ``tokenizer``: an already loaded tokenizer to evaluate instead of loading ``ckpt`` (its identity is then the
    config's). Raises ConfigError / CheckpointError / WeightsError / DataSourceError before any video is read.
    """
    cfg = EvalConfig.from_any(config)
    if cfg.tokenizers:
        raise ConfigError("tokenizers=[...] is a comparison: run vidtok.evaluation.compare (evaluate.py does)")
    cfg.listed_files()
    acc, device, listing, tok, options, from_file = start_job(cfg, "evaluate", accelerator, tokenizer)
    scorer, detector = build_scorer(cfg, device)
    reference = load_reference(cfg, device, [(tok.config.label, tok.config)])
    out_dir = shared_output_dir(cfg, acc) if write else None
    identity = tokenizer_identity(tok, cfg.ckpt, from_file=from_file)
    runner = VideoRunner(tok, scorer, cfg, options, device, out_dir, reference=reference)

    start = time.perf_counter()
    bar = progress_bar(listing, "evaluate", acc, cfg.output.progress)
    records, failed, features = [], [], []
    with torch.inference_mode():
        for task in bar:
            if isinstance(task, ListingFailure):
                failed.append(failure(task, task.reason))
                continue
            try:
                record, feats = runner.run(task)
            except UnreadableVideo as err:
                log.warning("skipping %s: %s", task.name, err)
                failed.append(failure(task, str(err)))
                continue
            records.append(record)
            features.extend(feats)
            bar.set_postfix(psnr=f"{record['psnr']:.2f}")
    bar.close()
    elapsed = time.perf_counter() - start

    parts = gather_objects((records, failed, features, elapsed, runner.codes, runner.drift))
    records = sorted((r for p in parts for r in p[0]), key=lambda r: r["order"])
    failed = sorted((f for p in parts for f in p[1]), key=lambda f: f["order"])
    features = sorted((f for p in parts for f in p[2]), key=lambda f: f[:2])
    wall = max(p[3] for p in parts)
    summary = summarize(records, failed, features, scorer, wall, acc.num_processes)
    if detector is not None:
        summary["fvd_detector"] = detector.info
    add_token_and_drift_stats(summary, tok.config, [p[4] for p in parts], [p[5] for p in parts], cfg.reference_label)
    clips = [dict(c, video=r["video"]) for r in records for c in r["clips"]]
    result = EvalResult(summary, records, clips, failed, identity, cfg.to_dict(), out_dir)
    if out_dir is not None and acc.is_main_process:
        from .report import write_reports

        result.files = write_reports(result, out_dir, figure=cfg.output.figure, figure_videos=cfg.output.figure_videos)
    acc.wait_for_everyone()
    return result


def shared_output_dir(cfg: EvalConfig, acc: Any) -> Optional[Path]:
    """The main process's output directory, the same on every process."""
    out = [cfg.output.dir]
    if acc.num_processes > 1:
        torch.distributed.broadcast_object_list(out, src=0)
    if out[0] is None:
        return None
    path = Path(out[0])
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_reference(cfg: EvalConfig, device: torch.device, evaluated: list[tuple[str, Any]]) -> Any:
    """The ``reference`` tokenizer, loaded and checked against each evaluated one's latent shape (``evaluated``:
    names and configs); None without one. Nothing of a video is read before."""
    entry = cfg.reference_entry()
    if entry is None:
        return None
    tok, _ = entry.load(device)
    for label, config in evaluated:
        cfg.check_reference(config, tok.config, label)
    return tok


def build_scorer(cfg: EvalConfig, device: torch.device) -> tuple[FrameScorer, Optional[Any]]:
    """The evaluation's scorer (PSNR, SSIM, LPIPS as ``metrics`` says) and, with FVD, its I3D detector checked
    once ([`Detector`][vidtok.evaluation.fvd_sets.Detector]: what names it in the reports)."""
    detector = None
    if cfg.metrics.fvd:
        from .fvd_sets import Detector

        detector = Detector(cfg.metrics.detector_path, cfg.metrics.detector_sha256, device)
    scorer = FrameScorer(
        lpips=cfg.metrics.lpips,
        vgg_path=cfg.metrics.vgg_path,
        fvd=detector.module if detector is not None else False,
        device=device,
        fvd_frames=cfg.metrics.fvd_frames,
        ssim_downsample=True,
    )
    return scorer, detector


def progress_bar(listing: Any, what: str, acc: Any, show: bool) -> Any:
    """The videos of a listing with a progress bar per process (one line each under several processes)."""
    return tqdm(
        listing,
        total=len(listing) if isinstance(listing, list) else None,
        desc=f"{what} [{acc.process_index}]" if acc.num_processes > 1 else what,
        unit="video",
        disable=not show,
        position=acc.process_index,
    )
