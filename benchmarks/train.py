"""Training throughput and memory: samples/s and peak memory per process, 1 and 2 processes.

    python benchmarks/train.py                                   # full width (128) and width 16, 17x128x128
    python benchmarks/train.py --widths 16 --processes 1 2 --steps 5
    python benchmarks/train.py --data /path/to/videos --perceptual   # real clips, LPIPS on (needs VGG16 weights)

Each row launches ``accelerate launch`` with that many processes (on a machine without CUDA, CPU
processes over gloo), builds the real Trainer (KL 488, discriminator on from the first step), runs
``--warmup`` untimed steps and ``--steps`` timed ones. Without ``--data`` it trains on generated
moving-shapes mp4 clips. Peak memory is each process's peak RSS (CPU) or max allocated (CUDA).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import make_videos, peak_mb

REPO = Path(__file__).resolve().parents[1]


def worker(args: argparse.Namespace) -> None:
    import torch.distributed as dist

    from vidtok.training import Trainer, compose_train_config, load_run_config

    overrides = [
        f"model.ch={args.width}",
        f"data.path={args.data}",
        f"data.num_frames={args.frames}",
        "data.sample_fps=null",
        f"data.height={args.size}",
        f"data.width={args.size}",
        f"data.batch_size={args.batch}",
        "data.num_workers=1",
        f"run_dir={args.run_dir}",
        "logger.kind=none",
        "loss.disc_start=0",
        f"loss.perceptual_weight={1.0 if args.perceptual else 0.0}",
        f"train.max_steps={args.warmup + args.steps}",
        f"train.threads={args.threads}",
    ]
    trainer = Trainer(load_run_config(compose_train_config(overrides)))
    for _ in range(args.warmup):
        trainer.train_step()
    if trainer.world > 1:
        dist.barrier()
    start = time.perf_counter()
    for _ in range(args.steps):
        trainer.train_step()
    if trainer.world > 1:
        dist.barrier()
    seconds = time.perf_counter() - start
    peak = peak_mb(trainer.device)
    peaks = [peak]
    if trainer.world > 1:
        peaks = [None] * trainer.world
        dist.all_gather_object(peaks, peak)
    if trainer.is_main:
        samples = args.steps * args.batch * trainer.world
        print(
            "RESULT "
            + json.dumps(
                {
                    "seconds_per_step": seconds / args.steps,
                    "samples_per_s": samples / seconds,
                    "frames_per_s": samples * args.frames / seconds,
                    "peak_mb": peaks,
                    "device": str(trainer.device),
                }
            ),
            flush=True,
        )


def run_row(args: argparse.Namespace, width: int, processes: int, data: Path, run_dir: Path) -> dict:
    from vidtok.accelerator import free_port

    threads = args.threads or max(1, (os.cpu_count() or 2) // processes)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes)]
    if processes > 1:
        cmd += ["--multi_gpu", "--main_process_port", str(free_port())]
    cmd += [str(Path(__file__).resolve()), "--worker", "--width", str(width), "--data", str(data)]
    cmd += ["--run-dir", str(run_dir), "--threads", str(threads)]
    for key in ("frames", "size", "batch", "steps", "warmup"):
        cmd += [f"--{key}", str(getattr(args, key))]
    if args.perceptual:
        cmd.append("--perceptual")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    import torch

    if not torch.cuda.is_available():
        env["ACCELERATE_USE_CPU"] = "1"
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    for line in result.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip() and not set(ln.strip()) <= set("=-")]
    if any("SIGKILL" in ln or "Signal 9" in ln for ln in lines) or result.returncode in (-9, 137):
        return {"error": "a process was killed (SIGKILL: out of memory?)"}
    return {"error": lines[-1] if lines else f"exit status {result.returncode}"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=int, nargs="+", default=[128, 16], help="model.ch values (128: full)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=1, help="clips per process per step")
    parser.add_argument("--steps", type=int, default=3, help="timed steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process (default: cores/procs)")
    parser.add_argument("--data", type=Path, default=None, help="a folder of videos (default: generated clips)")
    parser.add_argument("--perceptual", action="store_true", help="LPIPS on (needs the VGG16 weights)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--width", type=int, default=16, help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            data = Path(tmp) / "videos"
            make_videos(data, count=4, frames=max(args.frames + 8, 32), size=args.size, fps=24)
        print(
            f"{'width':>5s} {'procs':>5s} {'clip':>11s} {'batch/proc':>10s} {'s/step':>8s} {'samples/s':>9s} "
            f"{'frames/s':>8s}  peak memory per process"
        )
        for width in args.widths:
            for procs in args.processes:
                r = run_row(args, width, procs, data, Path(tmp) / f"run_{width}_{procs}")
                clip = f"{args.frames}x{args.size}x{args.size}"
                if "error" in r:
                    print(f"{width:5d} {procs:5d} {clip:>11s} error: {r['error']}", flush=True)
                    continue
                peaks = " ".join(f"{p:.0f}M" for p in r["peak_mb"])
                print(
                    f"{width:5d} {procs:5d} {clip:>11s} {args.batch:10d} {r['seconds_per_step']:8.2f} "
                    f"{r['samples_per_s']:9.3f} {r['frames_per_s']:8.2f}  {peaks} ({r['device']})",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
