"""What the benchmark scripts share: the machine's name for their tables, generated videos to time them on, and the
device's clock and memory readings."""

from __future__ import annotations

import platform
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    from vidtok.io.files import proc_field

    return proc_field("/proc/cpuinfo", "model name") or platform.processor() or platform.machine()


def add_job_model_arguments(parser) -> None:
    """The options of the dataset-job benchmarks' model: preset, width, device, precision, CPU threads."""
    parser.add_argument("--tokenizer", default="vidtok_kl_causal_488_4chn_v1_1")
    parser.add_argument("--width", type=int, default=128, help="model.ch (128: the official width)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="full", choices=["full", "bf16", "fp16"])
    parser.add_argument("--threads", type=int, default=None)


def job_device(args):
    """The device those options name, with torch's CPU threads set as they say; its line printed."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(machine_line(device))
    return device


def machine_line(device) -> str:
    """The first line of a table: the device (GPU name, or the CPU's), torch's CPU threads and version."""
    import torch

    name = "cuda: " + torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu: {cpu_name()}"
    return f"# {name}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def make_videos(folder: Path, count: int, frames: int, size: int, fps: float = 30.0) -> None:
    """``count`` moving-shapes clips (vidtok.synthetic) of ``frames`` frames, ``size`` pixels square, h264 mp4."""
    from vidtok.io.video import tensor_to_frames, write_video
    from vidtok.synthetic import moving_shapes

    folder.mkdir(parents=True, exist_ok=True)
    for v in range(count):
        write_video(folder / f"shapes{v}.mp4", tensor_to_frames(moving_shapes(frames, size, size, seed=v)), fps=fps)


def sync(device) -> None:
    """Wait for the device's queued work (a timer read after it counts that work)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device, fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()`` and the seconds it took on ``device`` (work queued before it waited for first, its own after)."""
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


def peak_mb(device) -> float:
    """Peak allocated GPU memory (since the last ``torch.cuda.reset_peak_memory_stats``); on a CPU the process's
    peak resident memory."""
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
