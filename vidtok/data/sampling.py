"""Which frames a clip takes: every ``round(fps / sample_fps)``-th frame, from a random or fixed start.

The original samples training clips with ``np.linspace(start, start + span, n).astype(int)``, which
stretches the step by ``1/(n-1)`` of a frame (17 frames at interval 1 come out as 0, 1, ..., 15, 17);
here a clip is exactly ``start, start + interval, ...``. Evaluation clips ([`eval_clips`][]) are the
original's validation protocol: the sampled frames cut into consecutive clips, the last one completed
with copies of its final frame (or dropped).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Optional, TypeVar

from ..errors import ShortVideoError
from ..io.video import frame_interval

T = TypeVar("T")

__all__ = ["ShortVideoError", "clip_span", "clip_indices", "eval_clips", "frame_interval"]


def clip_span(num_frames: int, interval: int) -> int:
    """Frames of the source that a clip of ``num_frames`` sampled every ``interval`` frames covers."""
    return (num_frames - 1) * interval + 1


def clip_indices(start: int, num_frames: int, interval: int) -> list[int]:
    return list(range(start, start + clip_span(num_frames, interval), interval))


def padded_indices(total: int, start: int, num_frames: int, interval: int) -> list[int]:
    """Like [`clip_indices`][], with indices past the end replaced by the last frame the clip reaches."""
    indices = [i for i in clip_indices(start, num_frames, interval) if i < total]
    if not indices:
        raise ShortVideoError(f"clip start {start} is past the end of a {total}-frame video")
    return indices + [indices[-1]] * (num_frames - len(indices))


def consecutive_clips(frames: Iterable[T], num_frames: int, last: str = "repeat") -> Iterator[list[T]]:
    """The evaluation protocol's clips: consecutive runs of ``num_frames`` of ``frames`` (indices, or decoded
    frames as they stream in), a shorter last run completed with copies of its final item (``last="repeat"``, as
    the original) or dropped (``"drop"``). Lazy: each clip comes out as soon as it is complete."""
    if last not in ("repeat", "drop"):
        raise ValueError(f"last must be 'repeat' or 'drop', got {last!r}")
    clip: list[T] = []
    for item in frames:
        clip.append(item)
        if len(clip) == num_frames:
            yield clip
            clip = []
    if clip and last == "repeat":
        yield clip + [clip[-1]] * (num_frames - len(clip))


def eval_clips(total: int, num_frames: int, interval: int, last: str = "repeat") -> list[list[int]]:
    """Frame indices of [`consecutive_clips`][] over a ``total``-frame video sampled every ``interval`` frames."""
    return list(consecutive_clips(range(0, total, interval), num_frames, last))


def check_length(total: Optional[int], num_frames: int, interval: int, name: str) -> None:
    if total is not None and total < clip_span(num_frames, interval):
        raise ShortVideoError(_short(name, total, num_frames, interval))


def _short(name: str, total: int, num_frames: int, interval: int) -> str:
    return (
        f"{name} has {total} frames; a clip of {num_frames} frames every {interval} needs "
        f"{clip_span(num_frames, interval)}"
    )


def padding_copies(indices: list[int]) -> int:
    """How many trailing entries of a clip's frame indices repeat the one before them: the copies that complete a
    last clip (``consecutive_clips(..., last="repeat")``)."""
    n = 0
    while n + 1 < len(indices) and indices[-1 - n] == indices[-2 - n]:
        n += 1
    return n
