"""Evaluation reports: the summary table, per-video / per-clip / per-frame CSV and JSON, and a PNG figure."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..defaults import protocol_clip_frames

if TYPE_CHECKING:
    from .result import EvalResult

METRIC_LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "lpips": "LPIPS"}


def metric_names(result: EvalResult) -> list[str]:
    return [m for m in ("psnr", "ssim", "lpips") if m in result.summary]


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def format_summary(result: EvalResult, max_rows: int = 50) -> str:
    """A plain-text table: one row per video (up to ``max_rows``), the overall row, failures, time."""
    s, cfg, tok = result.summary, result.config, result.tokenizer
    metrics = metric_names(result)
    clip = "whole videos" if cfg["mode"] == "whole" else f"clips of {_clip_frames(result)} frames"
    lines = [
        f"vidtok evaluation of {tok.get('name') or 'a tokenizer'} ({tok.get('ckpt') or 'weights given in Python'})",
        f"{clip} at {cfg['height']}x{cfg['width']}, sample fps {cfg['sample_fps']}, precision {cfg['precision']}",
        "",
    ]
    width = max([len("all frames"), *(len(v["video"]) for v in result.videos[:max_rows])]) + 2
    header = f"{'video':<{width}}{'frames':>8}" + "".join(f"{METRIC_LABELS[m]:>12}" for m in metrics)
    lines += [header, "-" * len(header)]
    for v in result.videos[:max_rows]:
        lines.append(f"{v['video']:<{width}}{v['frames']:>8}" + "".join(f"{_fmt(v[m]):>12}" for m in metrics))
    if len(result.videos) > max_rows:
        lines.append(f"... {len(result.videos) - max_rows} more in videos.csv")
    lines.append("-" * len(header))
    lines.append(f"{'all frames':<{width}}{s['frames']:>8}" + "".join(f"{_fmt(s[m]):>12}" for m in metrics))
    if "fvd" in s:
        unit = "windows" if cfg["mode"] == "whole" else "clips (their first frames)"
        lines.append(f"FVD {_fmt(s['fvd'], 2)} over {s['fvd_clips']} {unit} of {cfg['metrics']['fvd_frames']} frames")
    if "fvd_detector" in s:
        lines.append(detector_line(s["fvd_detector"]))
    lines += extra_lines(s)
    unit = "chunks" if cfg["mode"] == "whole" else "clips"
    lines.append(f"{s['videos']} videos evaluated ({s['clips']} {unit}), {s['failed']} not evaluated")
    for f in result.failed:
        lines.append(f"  NOT EVALUATED {f['video']}: {f['reason']}")
    share = ", ".join(f"{k} {_fmt(100 * v, 0)}%" for k, v in s["time_share"].items())
    lines.append(
        f"{_fmt(s['seconds'], 1)} s on {s['processes']} process(es), {_fmt(s['videos_per_second'], 3)} videos/s "
        f"({share})"
    )
    if result.output_dir is not None:
        lines.append(f"reports in {result.output_dir}")
    return "\n".join(lines)


def detector_line(detector: dict[str, Any]) -> str:
    """How a report names the FVD detector beside its figures: what it is, its file and SHA-256."""
    return f"FVD detector: {detector['name']}, {detector['path']}, SHA-256 {detector['sha256']}"


def extra_lines(summary: dict[str, Any], who: str = "") -> list[str]:
    """The discrete tokens' and the latent drift's lines of a summary (``who``: a tokenizer's name before them)."""
    lines = []
    t = summary.get("tokens")
    if t and t.get("tokens"):
        lines.append(
            f"{who}tokens: {t['codes_used']} of {t['codebook_size']} codes used ({100 * t['usage']:.2f}%), perplexity "
            f"{t['perplexity']:.1f}, change rate between latent frames {_fmt(t['change_rate'], 3)}"
        )
    d = summary.get("latent_drift")
    if d and "relative_l2" in d:
        channels = ", ".join(f"{v:.3g}" for v in d["per_channel"])
        changed = f", tokens changed {100 * d['changed_tokens']:.2f}%" if "changed_tokens" in d else ""
        lines.append(
            f"{who}latent drift from {d['reference']}: relative L2 {d['relative_l2']:.4g} (per channel {channels})"
            f"{changed}"
        )
    return lines


def _clip_frames(result: EvalResult) -> int:
    cfg = result.config
    if cfg["clip_frames"] is not None:
        return cfg["clip_frames"]
    return protocol_clip_frames(bool(result.tokenizer.get("causal")))


def write_reports(result: EvalResult, out_dir: Path, *, figure: bool = True, figure_videos: int = 8) -> list[Path]:
    """Write summary.json, summary.txt, config.yaml, videos.csv/json, clips.csv/json, frames.csv, failed.csv
    and (``figure``) metrics.png into ``out_dir``; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = metric_names(result)
    files = []
    summary = {
        "summary": result.summary,
        "failed": result.failed,
        "tokenizer": result.tokenizer,
        "config": result.config,
        "protocol": protocol_text(result),
    }
    files.append(_write_json(out_dir / "summary.json", summary))
    files.append(_write_text(out_dir / "summary.txt", format_summary(result) + "\n"))
    files.append(_write_yaml(out_dir / "config.yaml", result.config))

    video_cols = ["order", "video", "name", "fps", "frames", "padded_frames", "clips", *metrics, "fvd_windows"]
    videos = [
        {**{k: v for k, v in r.items() if k not in ("per_frame", "clips", "seconds")}, "clips": len(r["clips"])}
        for r in result.videos
    ]
    files.append(_write_csv(out_dir / "videos.csv", video_cols, videos))
    files.append(_write_json(out_dir / "videos.json", result.videos))
    clip_cols = ["video", "clip", "first_frame", "last_frame", "frames", "padded_frames", *metrics]
    files.append(_write_csv(out_dir / "clips.csv", clip_cols, result.clips))
    files.append(_write_json(out_dir / "clips.json", result.clips))
    frame_rows = [
        {"video": r["video"], "position": i, **{k: r["per_frame"][k][i] for k in ("source_frame", "clip", "padded")}}
        | {m: r["per_frame"][m][i] for m in metrics}
        for r in result.videos
        for i in range(r["frames"])
    ]
    frame_cols = ["video", "position", "source_frame", "clip", "padded", *metrics]
    files.append(_write_csv(out_dir / "frames.csv", frame_cols, frame_rows))
    files.append(_write_csv(out_dir / "failed.csv", ["order", "video", "name", "reason"], result.failed))
    if figure and result.videos:
        files.append(plot_metrics(result, out_dir / "metrics.png", max_videos=figure_videos))
    return files


def protocol_text(result: EvalResult) -> str:
    """One paragraph saying how the numbers were computed for this run."""
    cfg = result.config
    if cfg["mode"] == "whole":
        cut = f"each complete video streamed through the causal model in chunks of {cfg['chunk_frames']} frames" + (
            f", trimmed to 1 + k*{cfg['chunk_frames']} frames" if cfg["trim"] else ""
        )
    else:
        lead = ", each led by the previous clip's last generated frames" if cfg["pad_gen_frames"] else ""
        cut = (
            f"each video cut into consecutive clips of {_clip_frames(result)} frames, reconstructed one by one "
            f"(last clip: {cfg['last_clip']}{lead})"
        )
    every = "every frame" if cfg["sample_fps"] is None else f"every round(fps / {cfg['sample_fps']})-th frame"
    text = (
        f"Frames: {every}, resized (antialiased) to cover and centre-cropped to {cfg['height']}x{cfg['width']} "
        f"on [0, 1] floats; {cut}. PSNR, SSIM (11-tap Gaussian, sigma 1.5, valid region)"
        + (" and LPIPS (VGG)" if cfg["metrics"]["lpips"] else "")
        + " per frame on the clamped reconstruction, averaged over all frames."
    )
    if cfg["metrics"]["fvd"]:
        n = cfg["metrics"]["fvd_frames"]
        where = (
            "non-overlapping windows of each whole video" if cfg["mode"] == "whole" else "the first frames of each clip"
        )
        text += f" FVD from I3D features of {n}-frame {where}, Frechet distance in float64."
    return text


def plot_metrics(result: EvalResult, path: Path, max_videos: int = 8) -> Path:
    """Per-video PSNR / SSIM / LPIPS bars, and per-frame PSNR over time of up to ``max_videos`` videos with clip
    (or chunk) starts marked, where seams between independently reconstructed clips show as dips."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    metrics = metric_names(result)
    videos = result.videos
    fig = plt.figure(figsize=(max(8.0, 0.35 * len(videos) * len(metrics) / 2), 4.0 + 3.0), dpi=100)
    grid = fig.add_gridspec(2, len(metrics), height_ratios=(1, 1.2))
    labels = [_short(v["video"]) for v in videos]
    for j, m in enumerate(metrics):
        ax = fig.add_subplot(grid[0, j])
        ax.bar(range(len(videos)), [v[m] for v in videos], color=f"C{j}")
        ax.axhline(result.summary[m], color="k", lw=0.8, ls="--", label=f"all frames {result.summary[m]:.4g}")
        ax.set_title(METRIC_LABELS[m], fontsize=10)
        ax.set_xticks(range(len(videos)), labels, rotation=90, fontsize=6)
        ax.legend(fontsize=7, loc="lower right")
    ax = fig.add_subplot(grid[1, :])
    for i, v in enumerate(videos[:max_videos]):
        psnr, clips = v["per_frame"]["psnr"], v["per_frame"]["clip"]
        ax.plot(range(len(psnr)), psnr, lw=0.9, color=f"C{i % 10}", label=_short(v["video"]))
        for pos in range(1, len(clips)):
            if clips[pos] != clips[pos - 1]:
                ax.axvline(pos - 0.5, color=f"C{i % 10}", lw=0.4, ls=":", alpha=0.6)
    unit = "chunk" if result.config["mode"] == "whole" else "clip"
    ax.set_xlabel(f"evaluated frame (dotted: {unit} starts)")
    ax.set_ylabel("PSNR (dB)")
    shown = min(len(videos), max_videos)
    ax.set_title(f"per-frame PSNR, {shown} of {len(videos)} videos", fontsize=10)
    if shown:
        ax.legend(fontsize=7, ncol=max(1, shown // 4), loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _short(name: str, n: int = 24) -> str:
    name = os.path.basename(name) or name
    return name if len(name) <= n else name[: n - 1] + "…"


def _write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=1, default=_json_default, allow_nan=True) + "\n")
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _write_yaml(path: Path, data: dict) -> Path:
    from omegaconf import OmegaConf

    path.write_text(OmegaConf.to_yaml(OmegaConf.create(data)))
    return path


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items() if k in columns})
    return path
