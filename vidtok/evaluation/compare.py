"""Several tokenizers measured side by side by one protocol (``evaluate.py tokenizers=[...]``).

Every tokenizer sees identical input tensors: each video is decoded, sampled and resized once
(`vidtok.data.videos.read_video`) and cut for each tokenizer by its own clip rule (17 frames for a
tokenizer that takes ``1 + k*f``, 16 for one that takes multiples, unless ``clip_frames`` says otherwise). One
[`FrameScorer`][vidtok.metrics.FrameScorer] scores them all (one LPIPS network, one I3D detector, its SHA-256
checked once); the I3D features of an input window are computed once and shared by every tokenizer that cuts it the
same way. Each tokenizer's results are an `EvalResult` exactly as a single
evaluation makes it; the comparison adds one row per tokenizer (compression, latent shape, parameters, quality and
its spread over videos, FVD with its detector, encode / decode speed and peak memory, discrete token statistics).
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch

from ..data.videos import ListingFailure, cut_read_video, list_videos, read_video
from ..distributed import gather_objects
from ..errors import ConfigError
from ..inference.identity import tokenizer_identity
from ..models.options import InferenceOptions
from .config import EvalConfig, TokenizerEntry
from .result import Comparison, EvalResult, add_token_and_drift_stats, summarize
from .run import build_scorer, load_reference, progress_bar, shared_output_dir
from .runner import UnreadableVideo, VideoRunner, failure, reading

log = logging.getLogger("vidtok.evaluate")


@dataclass
class _Contender:
    """One tokenizer of a run: its entry, the model, its runner and identity."""

    entry: TokenizerEntry
    tok: Any
    runner: VideoRunner
    identity: dict[str, Any]


def compare(config: Union[EvalConfig, dict, Any], *, accelerator: Any = None, write: bool = True) -> Comparison:
    """Evaluate every tokenizer of ``config.tokenizers`` on the same videos by the same protocol (see the module
    docstring). Every tokenizer is loaded and checked against the protocol (clip length, frame size, mode) before any
    video is read; a ConfigError names the tokenizer that cannot take it and why."""
    cfg = EvalConfig.from_any(config)
    if not cfg.tokenizers:
        raise ConfigError("a comparison needs tokenizers=[...] (names, checkpoints or diffusers:<id>)")
    cfg.listed_files()
    acc, device = cfg.processes(accelerator)
    listing = list_videos(cfg.data, acc.process_index, acc.num_processes)
    if cfg.data.resolved_source() != "shards":
        listing = list(listing)
    loaded = []
    for entry in cfg.entries():  # each checked as it loads: a refusal comes before the next model's download
        tok, ckpt = entry.load(device)
        loaded.append((entry, (tok, ckpt), _checked_options(cfg, entry, tok, ckpt)))
    reference = load_reference(cfg, device, [(entry.label, tok.config) for entry, (tok, _), _ in loaded])

    scorer, detector = build_scorer(cfg, device)
    out_dir = shared_output_dir(cfg, acc) if write else None
    real_features: dict = {}
    contenders = []
    for i, (entry, (tok, ckpt), options) in enumerate(loaded):
        sub = out_dir / _folder(i, entry.label) if out_dir is not None else None
        runner = VideoRunner(tok, scorer, cfg, options, device, sub, real_features, reference)
        identity = tokenizer_identity(tok, ckpt)
        identity["name"] = entry.label
        contenders.append(_Contender(entry, tok, runner, identity))
    whole = cfg.mode == "whole"  # long videos: each tokenizer streams the file itself (the same frames)

    read_cut = contenders[0].runner.cutting
    start = time.perf_counter()
    records: list[list[dict]] = [[] for _ in contenders]
    features: list[list[tuple]] = [[] for _ in contenders]
    failed: list[dict] = []
    read_seconds = 0.0
    busy = [0.0] * len(contenders)  # each tokenizer's own time (its videos' runs), the videos' reading apart
    bar = progress_bar(listing, "compare", acc, cfg.output.progress)
    with torch.inference_mode():
        for task in bar:
            if isinstance(task, ListingFailure):
                failed.append(failure(task, task.reason))
                continue
            t0 = time.perf_counter()
            try:
                with reading():
                    video = None if whole else read_video(task, read_cut)
            except UnreadableVideo as err:
                log.warning("skipping %s: %s", task.name, err)
                failed.append(failure(task, str(err)))
                continue
            read_seconds += time.perf_counter() - t0
            real_features.clear()  # keyed by video: the previous video's are done
            for k, c in enumerate(contenders):
                t1 = time.perf_counter()
                try:
                    pieces = None if video is None else cut_read_video(video, c.runner.cutting)
                    record, feats = c.runner.run(task, pieces=pieces)
                except UnreadableVideo as err:  # too short for this tokenizer's clip
                    failed.append(failure(task, str(err), tokenizer=c.entry.label))
                    continue
                finally:
                    busy[k] += time.perf_counter() - t1
                records[k].append(record)
                features[k].extend(feats)
    bar.close()
    wall = time.perf_counter() - start

    extras = [(c.runner.codes, c.runner.drift) for c in contenders]
    parts = gather_objects((records, features, failed, extras, busy, read_seconds, wall))
    failed = sorted((f for p in parts for f in p[2]), key=lambda f: (f["order"], f.get("tokenizer", "")))
    results: dict[str, EvalResult] = {}
    rows = []
    for k, c in enumerate(contenders):
        recs = sorted((r for p in parts for r in p[0][k]), key=lambda r: r["order"])
        feats = sorted((f for p in parts for f in p[1][k]), key=lambda f: f[:2])
        mine = [f for f in failed if f.get("tokenizer") in (None, c.entry.label)]
        summary = summarize(recs, mine, feats, scorer, max(p[4][k] for p in parts), acc.num_processes)
        if detector is not None:
            summary["fvd_detector"] = detector.info
        add_token_and_drift_stats(
            summary, c.tok.config, [p[3][k][0] for p in parts], [p[3][k][1] for p in parts], cfg.reference_label
        )
        clips = [dict(clip, video=r["video"]) for r in recs for clip in r["clips"]]
        result = EvalResult(summary, recs, clips, mine, c.identity, cfg.to_dict(), c.runner.out_dir)
        results[c.entry.label] = result
        rows.append(_row(c, result, device, cfg))
    timing = {"seconds": max(p[6] for p in parts), "read_seconds": max(p[5] for p in parts)}
    comparison = Comparison(
        rows, results, failed, detector.info if detector else None, cfg.to_dict(), out_dir, timing=timing
    )
    if out_dir is not None and acc.is_main_process:
        from .comparison_report import write_comparison

        comparison.files = write_comparison(comparison, out_dir, figure=cfg.output.figure)
    acc.wait_for_everyone()
    return comparison


def _checked_options(cfg: EvalConfig, entry: TokenizerEntry, tok: Any, ckpt: Optional[str]) -> InferenceOptions:
    """The protocol's checks for one tokenizer, naming it, and its passes' options (a diffusers model has its own
    switches: ``tile`` is refused for it rather than ignored)."""
    try:
        cfg.check_for(tok.config)
        if ckpt is not None:
            return cfg.inference_options(tok.config)
        if cfg.tile is not None:
            raise ConfigError("tile= tiles vidtok's passes; give a diffusers model its own {..., tiling: true}")
        return InferenceOptions()
    except ConfigError as err:
        raise ConfigError(f"tokenizer {entry.label} cannot take this protocol: {err}") from None


def _row(c: _Contender, result: EvalResult, device: torch.device, cfg: EvalConfig) -> dict[str, Any]:
    """The tokenizer's row of the comparison."""
    s, config, ident = result.summary, c.tok.config, c.identity
    f, fs, ch = config.temporal_factor, config.spatial_factor, config.latent_channels
    passes = [r.get("passes", {}) for r in result.videos]
    frames = sum(p.get("frames", 0) for p in passes)
    encode_s = math.fsum(p.get("encode", 0.0) for p in passes)
    decode_s = math.fsum(p.get("decode", 0.0) for p in passes)
    peaks = [r["peak_memory_bytes"] for r in result.videos if r.get("peak_memory_bytes") is not None]
    shapes = [r["latent_shape"] for r in result.videos if r.get("latent_shape")]
    tokens = s.get("tokens", {})
    row: dict[str, Any] = {
        "tokenizer": c.entry.label,
        "family": getattr(config, "family", "VidTok"),
        "causal": config.causal,
        "compression": f"{f}x{fs}x{fs}",
        "compression_ratio": 3 * f * fs * fs / ch,
        "latent_channels": ch,
        "bits_per_token": math.log2(config.codebook_size) if config.is_discrete else None,
        "latent_shape": "x".join(str(v) for v in shapes[0]) if shapes else None,
        "clip_frames": c.runner.cutting.clip_frames if cfg.mode == "clips" else None,
        "parameters": ident.get("parameters"),
        "videos": s["videos"],
        "frames": s["frames"],
    }
    for m in ("psnr", "ssim", "lpips"):
        per_video = [r[m] for r in result.videos if m in r]
        row[m] = s.get(m)
        row[f"{m}_std"] = statistics.pstdev(per_video) if len(per_video) > 1 else (0.0 if per_video else None)
    detector = s.get("fvd_detector") or {}
    row.update(
        fvd=s.get("fvd"),
        fvd_windows=s.get("fvd_clips"),
        fvd_detector=detector.get("path"),
        fvd_detector_sha256=detector.get("sha256"),
        encode_fps=frames / encode_s if encode_s > 0 else None,
        decode_fps=frames / decode_s if decode_s > 0 else None,
        peak_memory_gib=max(peaks) / 2**30 if peaks else None,
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        precision=cfg.precision,
        latent_drift=(s.get("latent_drift") or {}).get("relative_l2"),
        codes_used=tokens.get("codes_used"),
        code_usage=tokens.get("usage"),
        perplexity=tokens.get("perplexity"),
        change_rate=tokens.get("change_rate"),
    )
    return row


def _folder(i: int, label: str) -> str:
    """A tokenizer's report folder: its position and its name made a file name."""
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in label).strip("._") or "tokenizer"
    return f"{i + 1:02d}_{safe[:80]}"
