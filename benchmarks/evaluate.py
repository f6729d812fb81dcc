"""Evaluation throughput: videos/s and frames/s of ``vidtok.evaluation.evaluate``, and where its time goes.

    python benchmarks/evaluate.py                                 # KL 488 v1.1, full width, clips and whole, 256x256
    python benchmarks/evaluate.py --widths 128 32 --modes clips --videos 8 --frames 65
    python benchmarks/evaluate.py --device cuda --precision bf16 --lpips off on   # rows without and with LPIPS
    python benchmarks/evaluate.py --data /data/MCL-JCV --videos 4 --size 256       # real videos (the first 4)

Each row runs the library's ``evaluate`` (what ``evaluate.py`` runs: the reader thread, the model, the metrics;
reconstructions and reports are not written) over ``--videos`` videos with a tokenizer of random weights (speed
does not depend on the values) of the preset, ``model.ch`` set to the width (128: full width). Without ``--data``
the videos are generated moving-shapes clips (``vidtok.synthetic``, h264 mp4) of ``--frames`` frames at 30 fps,
``--size`` x ``--size``, sampled at 30 fps: every frame is used. ``clips`` mode cuts them into clips of 17 frames
(16 for non-causal presets; the last one completed with copies of its final frame); ``whole`` streams each video
through the model in chunks of 16 frames (trimmed to 1 + 16k frames, as the paper's protocol does).

Before each timed evaluation an untimed one on the first video only runs with the same tokenizer and settings, so
one-time costs (oneDNN / cuDNN kernel selection, allocator growth) are not counted. ``seconds`` is evaluate's own
wall time of its video loop (its clock starts after the metric networks are loaded); ``frames`` counts the distinct
source frames reconstructed and scored (not the copies that complete a last clip). The time shares are evaluate's
``summary["time_share"]``, fractions of the busy time: ``read`` the main loop waiting for decoding (which runs in a
background thread, so it is the part decoding did not hide), ``model`` tokenizer encode + decode, ``metrics`` PSNR
/ SSIM (and LPIPS / FVD when on), ``write`` writing reconstructions (always ~0 here).

LPIPS is off by default: it needs the VGG16 ImageNet weights (``--vgg-path``, ``$VIDTOK_VGG16`` or the torch hub
cache); FVD (``--fvd on``) likewise needs the I3D detector (``--detector-path`` or ``$VIDTOK_I3D``). A row whose
weights cannot be found prints the reason and is skipped, as is one the config refuses (``whole`` for a
non-causal preset).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from common import cpu_name, make_videos

MODES = ("clips", "whole")
ON_OFF = ("off", "on")


def machine_line(device: str, precision: str) -> str:
    import os

    import vidtok

    cores = os.cpu_count() or 0
    parts = [f"CPU {cpu_name()} ({cores} cores)"]
    if device.startswith("cuda"):
        parts.append(f"GPU {torch.cuda.get_device_name(torch.device(device))}")
    parts += [
        f"torch {torch.__version__}",
        f"vidtok {vidtok.__version__}",
        f"{torch.get_num_threads()} threads",
        f"device {device}",
        f"precision {precision}",
    ]
    return "machine: " + ", ".join(parts)


def metric_label(lpips: bool, fvd: bool) -> str:
    return "psnr,ssim" + (",lpips" if lpips else "") + (",fvd" if fvd else "")


def on_off(values: list[str]) -> list[bool]:
    """``--lpips`` alone means on; ``--lpips off on`` gives a row for each."""
    return [v == "on" for v in (values or ["on"])]


def eval_config(
    args: argparse.Namespace, name: str, width: int, mode: str, lpips: bool, fvd: bool, data: Path, limit: int
) -> dict:
    return {
        "ckpt": f"<random weights: {name} model.ch={width}>",  # identity report only (no such file)
        "data": {"dir": str(data), "limit": limit},
        "height": args.size,
        "width": args.size,
        "sample_fps": args.sample_fps,
        "mode": mode,
        "precision": args.precision,
        "device": args.device,
        "threads": args.threads,
        "metrics": {
            "lpips": lpips,
            "vgg_path": args.vgg_path,
            "fvd": fvd,
            "detector_path": args.detector_path,
        },
        "output": {"dir": None, "figure": False, "progress": False},
    }


def run_row(args: argparse.Namespace, tok, name: str, width: int, mode: str, lpips: bool, fvd: bool, data: Path):
    """The timed evaluation's summary (after an untimed one on the first video), or ``{"error": ...}``."""
    from vidtok.errors import ConfigError, DataSourceError, WeightsError
    from vidtok.evaluation import evaluate

    try:
        for limit in (1, args.videos):  # the first: the untimed warm-up on one video
            result = evaluate(eval_config(args, name, width, mode, lpips, fvd, data, limit), tokenizer=tok, write=False)
    except (ConfigError, DataSourceError, WeightsError) as err:
        return {"error": str(err)}
    summary = dict(result.summary)
    summary["source_frames"] = sum(r["frames"] - r["padded_frames"] for r in result.videos)
    if result.failed:
        summary["failed_reason"] = result.failed[0]["reason"]
    return summary


COLUMNS = [
    ("preset", "<"),
    ("width", ">"),
    ("mode", "<"),
    ("metrics", "<"),
    ("size", ">"),
    ("videos", ">"),
    ("frames", ">"),
    ("seconds", ">"),
    ("videos/s", ">"),
    ("frames/s", ">"),
    ("read %", ">"),
    ("model %", ">"),
    ("metrics %", ">"),
    ("write %", ">"),
]


def table_line(cells: list[str], widths: list[int]) -> str:
    """A table row of ``cells`` (the first ``len(cells)`` columns)."""
    return "| " + " | ".join(f"{c:{COLUMNS[i][1]}{widths[i]}s}" for i, c in enumerate(cells)) + " |"


def rule_line(widths: list[int]) -> str:
    """The markdown rule under the header, with each column's alignment."""
    rules = [
        "-" * (w + 1) + ":" if a == ">" else ":" + "-" * (w + 1) for (_, a), w in zip(COLUMNS, widths, strict=True)
    ]
    return "|" + "|".join(rules) + "|"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["vidtok_kl_causal_488_4chn_v1_1"], help="tokenizer presets")
    parser.add_argument("--widths", type=int, nargs="+", default=[128], help="model.ch values (128: full)")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--size", type=int, default=256, help="frame height and width (default 256)")
    parser.add_argument("--videos", type=int, default=4, help="videos per row (with --data: the first N)")
    parser.add_argument("--frames", type=int, default=33, help="frames per generated video (30 fps; default 33)")
    parser.add_argument("--sample-fps", type=float, default=30.0, help="evaluation's sample_fps (default 30)")
    parser.add_argument("--data", type=Path, default=None, help="videos: a folder, CSV or shards (default: generated)")
    parser.add_argument(
        "--lpips", nargs="*", choices=ON_OFF, default=["off"], help="LPIPS off/on; both for a row each (default off)"
    )
    parser.add_argument("--fvd", nargs="*", choices=ON_OFF, default=["off"], help="FVD off/on (default off)")
    parser.add_argument("--vgg-path", default=None, help="VGG16 weights for LPIPS")
    parser.add_argument("--detector-path", default=None, help="I3D TorchScript detector for FVD")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="full", choices=["full", "bf16", "fp16"])
    args = parser.parse_args()
    if args.videos < 1:
        parser.error("--videos must be >= 1")

    import vidtok
    from vidtok.errors import ConfigError

    if args.threads:
        torch.set_num_threads(args.threads)
    metric_sets = [(lp, fv) for lp in on_off(args.lpips) for fv in on_off(args.fvd)]
    print(machine_line(args.device, args.precision))
    if not any(lp for lp, _ in metric_sets):
        print("(LPIPS off: it needs the VGG16 weights; --lpips on to include it)")
    widths = [len(c) for c, _ in COLUMNS]
    widths[0] = max(widths[0], *(len(p) for p in args.presets))
    widths[2] = max(widths[2], *(len(m) for m in args.modes))
    widths[3] = max(widths[3], *(len(metric_label(*m)) for m in metric_sets))
    widths[4] = max(widths[4], len(f"{args.size}x{args.size}"))
    widths[7:10] = [max(w, 8) for w in widths[7:10]]
    print(table_line([c for c, _ in COLUMNS], widths))
    print(rule_line(widths))
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            data = Path(tmp) / "videos"
            make_videos(data, count=args.videos, frames=args.frames, size=args.size)
        for name in args.presets:
            for width in args.widths:
                lead = [name, str(width)]
                try:
                    tok = vidtok.build_tokenizer(vidtok.compose_tokenizer_config(name, [f"model.ch={width}"])).eval()
                    tok.requires_grad_(False)
                except ConfigError as err:
                    print(table_line(lead, widths[:2])[:-2] + f" | error: {err}", flush=True)
                    continue
                for mode in args.modes:
                    for lpips, fvd in metric_sets:
                        r = run_row(args, tok, name, width, mode, lpips, fvd, data)
                        cells = lead + [mode, metric_label(lpips, fvd), f"{args.size}x{args.size}"]
                        prefix = table_line(cells, widths[:5])[:-2]
                        if "error" in r:
                            print(f"{prefix} | error: {r['error']}", flush=True)
                            continue
                        if not r["videos"]:
                            print(f"{prefix} | error: no video evaluated: {r.get('failed_reason', '?')}", flush=True)
                            continue
                        seconds, frames = r["seconds"], r["source_frames"]
                        share = r["time_share"]
                        cells += [
                            str(r["videos"]),
                            str(frames),
                            f"{seconds:.2f}",
                            f"{r['videos_per_second']:.3f}",
                            f"{frames / seconds:.2f}",
                            *(f"{100 * share[k]:.1f}" for k in ("read", "model", "metrics", "write")),
                        ]
                        line = table_line(cells, widths)
                        if r["failed"]:
                            line += f" ({r['failed']} failed: {r.get('failed_reason', '?')})"
                        print(line, flush=True)
                del tok
                if args.device.startswith("cuda"):
                    torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
