"""The reports of a comparison: the table (``comparison.txt``), one row per tokenizer (``comparison.csv`` /
``.json``), every video's numbers per tokenizer (``videos.csv``), quality against compression and against speed
(``comparison.png``), and each tokenizer's full single-evaluation reports in its own folder."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .report import _fmt, _write_csv, _write_json, _write_text, detector_line, extra_lines, protocol_text, write_reports

if TYPE_CHECKING:
    from .result import Comparison

#: The comparison's columns, in the order of comparison.csv (one per tokenizer).
COLUMNS = (
    "tokenizer",
    "family",
    "causal",
    "compression",
    "compression_ratio",
    "latent_channels",
    "bits_per_token",
    "latent_shape",
    "clip_frames",
    "parameters",
    "videos",
    "frames",
    "psnr",
    "psnr_std",
    "ssim",
    "ssim_std",
    "lpips",
    "lpips_std",
    "fvd",
    "fvd_windows",
    "fvd_detector",
    "fvd_detector_sha256",
    "encode_fps",
    "decode_fps",
    "peak_memory_gib",
    "device",
    "precision",
    "latent_drift",
    "codes_used",
    "code_usage",
    "perplexity",
    "change_rate",
)


VIDEO_COLUMNS = ("tokenizer", "order", "video", "frames", "padded_frames", "psnr", "ssim", "lpips", "fvd_windows")


def format_comparison(comparison: Comparison) -> str:
    """A plain-text table, one row per tokenizer, with the protocol, the detector and the failures below it."""
    rows = comparison.rows
    quality = [m for m in ("psnr", "ssim", "lpips") if any(r[m] is not None for r in rows)]
    head = ["tokenizer", "compression", "ratio", "latent", "params"]
    head += [m.upper() for m in quality] + (["FVD"] if any(r["fvd"] is not None for r in rows) else [])
    head += ["enc f/s", "dec f/s", "peak GiB"]
    table = []
    for r in rows:
        cells = [
            r["tokenizer"],
            r["compression"],
            _fmt(r["compression_ratio"], 1),
            f"{r['latent_channels']} ch" + (f" ({r['bits_per_token']:.0f} bit)" if r["bits_per_token"] else ""),
            _millions(r["parameters"]),
        ]
        cells += [f"{_fmt(r[m], 4 if m != 'psnr' else 2)} ±{_fmt(r[m + '_std'], 3)}" for m in quality]
        if "FVD" in head:
            cells.append(_fmt(r["fvd"], 2))
        cells += [_fmt(r["encode_fps"], 2), _fmt(r["decode_fps"], 2), _fmt(r["peak_memory_gib"], 2)]
        table.append(cells)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *table, strict=True)]
    line = "  ".join(f"{h:<{w}}" for h, w in zip(head, widths, strict=True))
    lines = [f"vidtok comparison of {len(rows)} tokenizers", "", line, "-" * len(line)]
    lines += ["  ".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True)) for cells in table]
    lines.append("")
    first = next(iter(comparison.results.values()))
    lines.append(protocol_text(first))
    counts = {r["tokenizer"]: r["videos"] for r in rows}
    if len(set(counts.values())) > 1:
        lines.append("Rows cover different videos: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + " (below)")
    clips = sorted({r["clip_frames"] for r in rows if r["clip_frames"]})
    if len(clips) > 1:
        lines.append(f"Clip lengths differ by tokenizer ({', '.join(map(str, clips))} frames; see clip_frames).")
    if comparison.detector is not None:
        lines.append(detector_line(comparison.detector))
    lines.append(f"device {rows[0]['device']}, precision {rows[0]['precision']}; ± is the spread (std) over videos")
    for name, result in comparison.results.items():
        lines += extra_lines(result.summary, f"{name} ")
    for f in comparison.failed:
        who = f" for {f['tokenizer']}" if f.get("tokenizer") else ""
        lines.append(f"  NOT EVALUATED {f['video']}{who}: {f['reason']}")
    if comparison.output_dir is not None:
        lines.append(f"reports in {comparison.output_dir}")
    return "\n".join(lines)


def _millions(n: Any) -> str:
    return "-" if n is None else (f"{n / 1e6:.1f}M" if n >= 1e5 else str(n))


def write_comparison(comparison: Comparison, out_dir: Path, *, figure: bool = True) -> list[Path]:
    """Write the comparison's reports into ``out_dir`` and each tokenizer's into its folder; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [
        _write_text(out_dir / "comparison.txt", format_comparison(comparison) + "\n"),
        _write_csv(out_dir / "comparison.csv", list(COLUMNS), comparison.rows),
        _write_json(
            out_dir / "comparison.json",
            {
                "rows": comparison.rows,
                "detector": comparison.detector,
                "failed": comparison.failed,
                "tokenizers": {k: r.tokenizer for k, r in comparison.results.items()},
                "protocol": protocol_text(next(iter(comparison.results.values()))),
                "config": comparison.config,
            },
        ),
    ]
    videos = [
        {"tokenizer": name, **{k: v for k, v in record.items() if k in VIDEO_COLUMNS}}
        for name, result in comparison.results.items()
        for record in result.videos
    ]
    files.append(_write_csv(out_dir / "videos.csv", list(VIDEO_COLUMNS), videos))
    for result in comparison.results.values():
        if result.output_dir is not None:
            files += write_reports(result, result.output_dir, figure=figure)
    if figure and any(r["psnr"] is not None for r in comparison.rows):
        files.append(plot_comparison(comparison, out_dir / "comparison.png"))
    return files


def plot_comparison(comparison: Comparison, path: Path) -> Path:
    """PSNR against the compression ratio and against reconstruction speed (frames/s of encode then decode), one
    point per tokenizer, with the spread over videos as error bars."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), dpi=100)
    for i, r in enumerate(comparison.rows):
        speed = _reconstruct_fps(r)
        for ax, x in zip(axes, (r["compression_ratio"], speed), strict=True):
            if x is None or r["psnr"] is None:
                continue
            ax.errorbar(x, r["psnr"], yerr=r["psnr_std"] or 0.0, fmt="o", color=f"C{i % 10}", capsize=3)
            ax.annotate(_short(r["tokenizer"]), (x, r["psnr"]), fontsize=7, xytext=(4, 4), textcoords="offset points")
    axes[0].set_xlabel("compression ratio (input values per latent value)")
    axes[1].set_xlabel(f"reconstruction frames/s (encode + decode, {comparison.rows[0]['device']})")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    for ax in axes:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylabel("PSNR (dB)")
        ax.grid(alpha=0.3)
    axes[0].set_title("quality against compression", fontsize=10)
    axes[1].set_title("quality against speed", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _reconstruct_fps(row: dict[str, Any]) -> Any:
    enc, dec = row["encode_fps"], row["decode_fps"]
    return 1.0 / (1.0 / enc + 1.0 / dec) if enc and dec and not (math.isnan(enc) or math.isnan(dec)) else None


def _short(name: str, n: int = 28) -> str:
    name = os.path.basename(name.rstrip("/")) or name
    return name if len(name) <= n else name[: n - 1] + "…"
