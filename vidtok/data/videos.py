"""Which videos a process takes (evaluation, dataset encoding), and their frames cut into clips or whole-video chunks.

Each video is decoded once, front to back, keeping every ``round(fps / sample_fps)``-th frame, and cut as a
[`Cutting`][] says (clips or whole-video chunks): one cutter for evaluation and dataset encoding, which differ
only in how a run of frames becomes a clip tensor (``Cutting.to_clip``). Reading runs in a background thread one
step ahead of the model ([`prefetch`][]).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import Optional, TypeVar, Union

import torch
from torch import Tensor

from ..errors import ConfigError, VideoError
from ..io.video import VideoSource, sampled_frames
from .sampling import consecutive_clips
from .sizing import FrameSizing
from .sources import Failure, Record, expand_urls, shard_records, source_kind, video_records
from .transforms import frames_to_clip

T = TypeVar("T")

#: How a listing says which kind of source it is (``auto``: told apart by the paths).
SOURCES = ("auto", "folder", "csv", "shards")


@dataclass
class VideoListConfig:
    """Which videos: ``dir`` is a folder (searched recursively), a CSV file (paths relative to its folder, or to
    ``root``), or tar shards (``data/test-{000..009}.tar``, ``pipe:...``); ``meta`` is the original's layout: a
    CSV of paths relative to ``dir``. ``source: auto`` tells them apart by what ``dir`` and ``meta`` look like.
    ``files``: exactly these paths under the folder ``dir``, in this order (videos or folders of numbered frames; a
    benchmark's checked list sets it)."""

    dir: Optional[str] = None
    meta: Optional[str] = None
    column: str = "videos"
    source: str = "auto"
    limit: Optional[int] = None
    files: Optional[list[str]] = None

    def resolved_source(self) -> str:
        return source_kind(self.dir, self.meta, self.source)

    def check(self) -> None:
        """Checks that need no file (ConfigError naming the ``data.`` key)."""
        if not self.dir:
            raise ConfigError("data.dir must name the videos: a folder, a CSV file, or tar shards (data.dir=...)")
        if self.source not in SOURCES:
            raise ConfigError(f"data.source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"data.limit must be >= 1 or null (every video), got {self.limit}")


@dataclass
class VideoTask:
    """One video of a listing: ``order`` is its position in the whole list (reports and outputs are sorted by it)."""

    order: int
    key: str
    name: str
    source: VideoSource
    meta: dict = field(default_factory=dict)


@dataclass
class ListingFailure:
    """An entry of the listing that is no video (a broken shard, a sample without a video file)."""

    order: int
    key: str
    name: str
    reason: str


@dataclass
class Piece:
    """Frames of one video ready for the model: ``video`` (n, 3, T, H, W) in [-1, 1]; ``indices`` the source
    frame index of every frame of each of the n clips (in ``whole`` mode n = 1 and T is a chunk); ``fps`` of the
    sampled frames."""

    task: VideoTask
    video: Tensor
    indices: list[list[int]]
    fps: float


def list_videos(data: VideoListConfig, rank: int = 0, world: int = 1) -> Iterator[Union[VideoTask, ListingFailure]]:
    """This process's share of the videos, in the listing's order.

    Folders and CSVs are listed up front and dealt out one by one (every ``world``-th from ``rank``). Shards are
    streamed and dealt out whole (every ``world``-th shard), so each shard is read by one process only; a video's
    ``order`` is then ``shard index * SHARD_STRIDE + position in the shard``. With ``data.limit`` (the first N
    entries of the listing) every process reads the shards in order up to the limit and keeps every
    ``world``-th entry, which is exact as long as every process reads the shards alike.
    """
    source = data.resolved_source()
    if data.files is not None:
        root = Path(data.dir)
        items: Iterator[tuple[str, Union[Record, Failure]]] = (
            ("", Record(key=f, name=str(root / f), source=str(root / f))) for f in data.files
        )
    elif source == "shards":
        urls = expand_urls(data.dir)
        if data.limit is None:
            yield from _shard_share(urls, rank, world)
            return
        items = ((_stem(url), item) for url in urls for item in shard_records(url))
    else:
        items = (("", r) for r in video_records(data.dir, kind=source, meta=data.meta, column=data.column))
    for order, (prefix, item) in enumerate(items):
        if data.limit is not None and order >= data.limit:
            return
        if order % world == rank:
            yield _task(order, prefix, item)


SHARD_STRIDE = 1_000_000  # orders of shard samples: shard index * stride + position (shards hold fewer samples)


def _shard_share(urls: list[str], rank: int, world: int) -> Iterator[Union[VideoTask, ListingFailure]]:
    for index in range(rank, len(urls), world):
        for position, item in enumerate(shard_records(urls[index])):
            yield _task(index * SHARD_STRIDE + position, _stem(urls[index]), item)


def _stem(url: str) -> str:
    """A shard's name without folders and extension (``pipe:`` commands: their last word)."""
    name = url.split()[-1].rstrip("/").rsplit("/", 1)[-1]
    return name.split(".")[0] or "shard"


def _task(order: int, prefix: str, item: Union[Record, Failure]) -> Union[VideoTask, ListingFailure]:
    if isinstance(item, Failure):
        return ListingFailure(order, item.name, item.name, item.reason)
    # shard samples are named by their shard too: keys repeat across shards
    key = f"{prefix}/{item.key}" if prefix else item.key
    return VideoTask(order, key, item.name, item.source, item.meta)


#: How a run of sampled frames becomes a clip: uint8 frames ``(T, H, W, 3)`` at the source size and the target
#: ``(h, w)`` -> float ``(3, T, h, w)`` in [-1, 1]; [`vidtok.data.transforms`][] has the two readings.
ClipMaker = Callable[[Tensor, tuple[int, int]], Tensor]


@dataclass(frozen=True)
class Cutting:
    """How a job cuts each video into pieces ([`video_pieces`][]): frames sampled at ``sample_fps`` (None: every
    frame), each run of them made a ``size`` clip by ``to_clip``
    ([`frames_to_clip`][vidtok.data.transforms.frames_to_clip], resized on [0, 1] floats as the original's evaluation;
    or [`uint8_resized_clip`][vidtok.data.transforms.uint8_resized_clip], on uint8 frames as ``vidtok encode``).

    ``mode="clips"``: consecutive clips of ``clip_frames``, ``group`` clips per piece, the last completed with copies
    of its final frame (``last="repeat"``) or dropped (``"drop"``). ``mode="whole"``: the whole video in chunks of
    ``chunk_frames`` (the first one a frame longer); with ``trim``, as the original's long-video evaluation,
    ``1 + k * chunk_frames`` frames, the rest dropped, and a video of ``chunk_frames`` frames or fewer refused.
    ``sizing``: each video's size chosen from its own (keep the aspect ratio, buckets; see
    [`FrameSizing`][vidtok.data.sizing.FrameSizing]) instead of ``size``. ``max_frames``: at most that many sampled
    frames of each video are read (the rest is not decoded).
    """

    size: tuple[int, int]
    sample_fps: Optional[float]
    mode: str
    clip_frames: int
    last: str
    group: int
    chunk_frames: int
    trim: bool = False
    to_clip: ClipMaker = frames_to_clip
    sizing: Optional[FrameSizing] = None
    max_frames: Optional[int] = None

    def target(self, height: int, width: int) -> tuple[int, int]:
        """The size a video of ``height`` x ``width`` pixels is cut to."""
        return self.size if self.sizing is None else self.sizing.target(height, width)


@dataclass
class FramesRead:
    """What reading a video found: ``fps`` of the sampled frames, ``source_fps`` of the file, ``frames`` sampled
    (those of a dropped last clip or trimmed chunk included)."""

    fps: float
    source_fps: float
    frames: int


def video_pieces(task: VideoTask, cutting: Cutting) -> Generator[Piece, None, FramesRead]:
    """The video's frames as they are decoded, cut as ``cutting`` says, one piece at a time (never two videos in
    one); the generator's value (what ``yield from`` gives) is what was read. A video too short for the cut raises
    [`VideoError`][]."""
    sampled = sampled_frames(task.source, cutting.sample_fps, task.name)
    frames = _Counted(islice(sampled.frames, cutting.max_frames))
    cut = _whole_pieces if cutting.mode == "whole" else _clip_pieces
    try:
        yield from cut(task, frames, sampled.fps, cutting)
    finally:
        sampled.frames.close()  # the decoder, also when the consumer stops early
    return FramesRead(sampled.fps, sampled.source_fps, frames.count)


@dataclass
class ReadVideo:
    """A video's sampled frames, each made ready once as a cut's ``to_clip`` makes them (``frames``: source index
    and a (3, h, w) frame), so that several cuts ([`cut_read_video`][]) see identical tensors; ``fps`` of the
    sampled frames."""

    task: VideoTask
    frames: list[tuple[int, Tensor]]
    fps: float
    source_fps: float


def read_video(task: VideoTask, cutting: Cutting, block: int = 16) -> ReadVideo:
    """Decode ``task``'s video once as ``cutting`` samples, sizes and limits it, ``block`` frames made ready at a
    time (frames are resized one by one, so the block does not change them). Holds the whole sampled video in memory:
    for jobs that cut one video several ways (comparing tokenizers with different clip rules)."""
    sampled = sampled_frames(task.source, cutting.sample_fps, task.name)
    frames: list[tuple[int, Tensor]] = []
    try:
        run: list[tuple[int, Tensor]] = []
        for item in islice(sampled.frames, cutting.max_frames):
            run.append(item)
            if len(run) == block:
                frames.extend(_ready(run, cutting))
                run = []
        frames.extend(_ready(run, cutting))
    finally:
        sampled.frames.close()
    return ReadVideo(task, frames, sampled.fps, sampled.source_fps)


def _ready(run: list[tuple[int, Tensor]], cutting: Cutting) -> list[tuple[int, Tensor]]:
    if not run:
        return []
    indices, clip = _clip(run, cutting)
    return [(i, clip[:, j]) for j, i in enumerate(indices)]


def cut_read_video(video: ReadVideo, cutting: Cutting) -> Iterator[Piece]:
    """A [`ReadVideo`][] cut as ``cutting`` says (its clip or chunk rule and group), as [`video_pieces`][] would have
    cut the file: the same pieces, from frames made ready once."""
    frames = _Counted(iter(video.frames))
    cut = _whole_pieces if cutting.mode == "whole" else _clip_pieces
    yield from cut(video.task, frames, video.fps, replace(cutting, to_clip=_stacked, sizing=None))


def _stacked(frames: Tensor, size: tuple[int, int]) -> Tensor:
    """Ready frames (T, 3, h, w) -> the clip (3, T, h, w)."""
    return frames.transpose(0, 1).contiguous()


class _Counted:
    """The items of an iterator, counted as they pass (``count``)."""

    def __init__(self, items: Iterator[T]):
        self.items, self.count = items, 0

    def __iter__(self) -> Iterator[T]:
        for item in self.items:
            self.count += 1
            yield item


def _clip_pieces(task: VideoTask, frames: _Counted, fps: float, cutting: Cutting) -> Iterator[Piece]:
    clips: list[tuple[list[int], Tensor]] = []  # complete clips, already resized (raw frames are large)
    for run in consecutive_clips(frames, cutting.clip_frames, cutting.last):
        clips.append(_clip(run, cutting))
        if len(clips) == cutting.group:
            yield _piece(task, clips, fps)
            clips = []
    if clips:
        yield _piece(task, clips, fps)
    elif frames.count < cutting.clip_frames and cutting.last == "drop":
        raise VideoError(
            f"{task.name} has {frames.count} sampled frames, fewer than one clip of {cutting.clip_frames} "
            "(last_clip=drop)"
        )


def _whole_pieces(task: VideoTask, frames: _Counted, fps: float, cutting: Cutting) -> Iterator[Piece]:
    chunk = cutting.chunk_frames
    pending: list[tuple[int, Tensor]] = []
    want = chunk + 1
    for item in frames:
        pending.append(item)
        if len(pending) == want:
            yield _piece(task, [_clip(pending, cutting)], fps)
            pending, want = [], chunk
    if frames.count <= chunk and cutting.trim:
        raise VideoError(
            f"{task.name} has {frames.count} sampled frames; the whole-video protocol (trim=true) needs more than "
            f"chunk_frames={chunk}"
        )
    if pending and not cutting.trim:
        yield _piece(task, [_clip(pending, cutting)], fps)


def _clip(frames: list[tuple[int, Tensor]], cutting: Cutting) -> tuple[list[int], Tensor]:
    """(source indices, clip tensor) of a run of (index, frame)."""
    stacked = torch.stack([f for _, f in frames])
    return [i for i, _ in frames], cutting.to_clip(stacked, cutting.target(*stacked.shape[1:3]))


def _piece(task: VideoTask, clips: list[tuple[list[int], Tensor]], fps: float) -> Piece:
    return Piece(task, torch.stack([clip for _, clip in clips]), [indices for indices, _ in clips], fps)


_DONE = object()


def prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """``items`` produced in a background thread, up to ``depth`` ahead; its exceptions re-raised here in order.
    Closing the returned generator stops the thread at its next item."""
    out: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                out.put((item, None))
            out.put((_DONE, None))
        except BaseException as err:  # handed to the consumer, who decides
            out.put((None, err))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # a generator's finally blocks (an open decoder) run now, in this thread

    thread = threading.Thread(target=produce, name="vidtok-video-reader", daemon=True)
    thread.start()
    try:
        while True:
            item, err = out.get()
            if err is not None:
                raise err
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                out.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
