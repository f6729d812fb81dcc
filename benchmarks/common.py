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
