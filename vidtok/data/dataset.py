"""Clips for training and evaluation, split across ranks and DataLoader workers, robust to bad videos.

[`VideoClipDataset`][] is an ``IterableDataset`` over a list of videos (CSV or folder) or a list of
tar shards. Each (rank, worker) pair takes its own part:

- training (``train=True``): endless. Each part draws videos at random with its own seed; shards are read with
  webdataset, either resampled (``resampled=True``: each part draws shards with replacement, webdataset's
  ``ResampledShards``) or in epochs (every shard once per epoch, in an order shuffled alike on every rank, then split
  by rank and worker); shard samples go through a shuffle buffer. Each clip is a random temporal and spatial crop.
  Every rank gets batches for as long as it asks, so DDP never waits on an exhausted rank; ``epoch_samples`` ends
  each pass after that many samples per part instead (webdataset's ``with_epoch``), the same count on every rank.
- evaluation (``train=False``): one exact pass. Videos (or shards) are dealt out round-robin, so every
  readable sample arrives exactly once over all ranks and workers, with a fixed start (the first clip,
  or every clip with ``clips="all"``) and a centre crop.

A video that cannot be used (missing, empty, corrupt, truncated, unsupported, too short) or a broken
shard never stops the run: it is logged with its name and reason, and reported downstream. In training
the failures travel on the next good sample (``sample["skipped"]``); in evaluation each failure is a
sample of its own with ``video=None`` so that reports can list it. [`collate_clips`][] gathers both.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import tarfile
import zlib
from collections.abc import Iterator, Sequence
from typing import Any, Optional, Union

import torch
import webdataset as wds
from torch import Tensor
from torch.utils.data import IterableDataset, get_worker_info

from ..distributed import process_part
from ..errors import DataError, VideoError
from ..io.video import read_clip, read_info
from .sampling import check_length, clip_span, eval_clips, frame_interval, padded_indices
from .sources import Failure, Record, expand_urls, shard_records
from .transforms import frames_to_clip

log = logging.getLogger("vidtok.data")

# What a broken input can raise while being read; anything else is a bug and propagates.
READ_ERRORS = (VideoError, OSError, EOFError, ValueError, tarfile.TarError, json.JSONDecodeError)


class VideoClipDataset(IterableDataset):
    """Clips ``(3, num_frames, H, W)`` in [-1, 1] from videos or shards; see the module docstring.

    Args:
        videos: records ([`csv_records`][vidtok.data.sources.csv_records], [`folder_records`][]), or
        shards: tar shard urls or patterns (``"data/train-{0000..0099}.tar"``, ``"pipe:..."``).
        num_frames: clip length.
        size: clip ``(H, W)``.
        sample_fps: take every ``round(fps / sample_fps)``-th frame (None: every frame).
        train: endless random clips (True) or one exact pass (False).
        clips: evaluation only: ``"first"`` clip of each video, or ``"all"`` consecutive clips (the
            last completed with copies of its final frame, as the original's validation).
        short: a video shorter than a clip is ``"skip"`` ped (reported), or ``"pad"`` ded with copies of
            its last frame (the original's training behaviour).
        flip: random horizontal flips in training.
        shuffle_buffer: training samples of shards shuffled through a buffer of this many (raw) samples.
        resampled: training on shards: draw shards with replacement (True), or read them in shuffled epochs.
        epoch_samples: training: end each pass after this many samples per (rank, worker) part (None: endless).
        seed: seed of the training draws (with the epoch and the part).
        rank: this process's rank; default from torch.distributed or the environment.
        world_size: the number of processes; default as ``rank``.
        max_consecutive_failures: in training, stop with [`DataError`][] after this many unusable
            inputs in a row (a dataset that is all bad would otherwise spin forever).
    """

    def __init__(
        self,
        videos: Optional[Sequence[Record]] = None,
        shards: Union[str, Sequence[str], None] = None,
        *,
        num_frames: int,
        size: tuple[int, int],
        sample_fps: Optional[float] = None,
        train: bool = True,
        clips: str = "first",
        short: str = "skip",
        flip: bool = False,
        shuffle_buffer: int = 64,
        resampled: bool = True,
        epoch_samples: Optional[int] = None,
        seed: int = 0,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        max_consecutive_failures: int = 100,
    ):
        super().__init__()
        if (videos is None) == (shards is None):
            raise ValueError("give either videos (a list of records) or shards (tar urls), not both or neither")
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        if clips not in ("first", "all"):
            raise ValueError(f"clips must be 'first' or 'all', got {clips!r}")
        if short not in ("skip", "pad"):
            raise ValueError(f"short must be 'skip' or 'pad', got {short!r}")
        self.videos = list(videos) if videos is not None else None
        self.shards = expand_urls(shards) if shards is not None else None
        self.num_frames, self.size, self.sample_fps = num_frames, tuple(size), sample_fps
        self.train, self.clips, self.short, self.flip = train, clips, short, flip
        if epoch_samples is not None and epoch_samples < 1:
            raise ValueError(f"epoch_samples must be >= 1 or None, got {epoch_samples}")
        self.shuffle_buffer, self.resampled, self.seed = shuffle_buffer, resampled, seed
        self.epoch_samples = epoch_samples
        self.rank, self.world_size = rank, world_size
        self.max_consecutive_failures = max_consecutive_failures
        self.epoch = 0
        self._lengths: dict[str, tuple[int, float]] = {}
        self.skipped_count = 0

    def set_epoch(self, epoch: int) -> None:
        """Change the random stream of training (e.g. on resume, so a restarted run sees new clips)."""
        self.epoch = epoch

    def part(self) -> tuple[int, int]:
        """(index, count) of this (rank, worker) among all ranks x workers."""
        rank, world = process_part()
        rank = self.rank if self.rank is not None else rank
        world = self.world_size if self.world_size is not None else world
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return rank * workers + worker, world * workers

    def __iter__(self) -> Iterator[dict]:
        index, count = self.part()
        if not self.train:
            return self._eval_samples(index, count)
        samples = self._train_samples(random.Random(f"{self.seed}/{self.epoch}/{index}"), index, count)
        return samples if self.epoch_samples is None else itertools.islice(samples, self.epoch_samples)

    # -- evaluation: one exact pass ------------------------------------------------------------------

    def _eval_samples(self, index: int, count: int) -> Iterator[dict]:
        if self.videos is not None:
            records: Iterator[Union[Record, Failure]] = iter(self.videos[index::count])
        else:
            records = (item for url in self.shards[index::count] for item in shard_records(url))
        for record in records:
            if isinstance(record, Failure):
                yield self._failure(record.name, record.reason, key=record.name)
                continue
            try:
                yield from self._eval_clips(record)
            except READ_ERRORS as err:
                yield self._failure(record.name, str(err), key=record.key)

    def _eval_clips(self, record: Record) -> Iterator[dict]:
        total, fps = self._length(record)
        interval = frame_interval(fps, self.sample_fps)
        if self.clips == "all":
            if self.short == "skip":
                check_length(total, self.num_frames, interval, record.name)
            clip_frames = eval_clips(total, self.num_frames, interval, last="repeat")
        else:
            clip_frames = [self._indices(record, total, interval, None)]
        # every clip is read before any is yielded: a video with a damaged tail is reported, not half used
        clips = [self._clip(record, indices, None) for indices in clip_frames]
        for i, (clip, indices) in enumerate(zip(clips, clip_frames, strict=True)):
            yield self._sample(record, clip, i, indices, fps / interval, [])

    # -- training: endless, resampled ----------------------------------------------------------------

    def _train_samples(self, rng: random.Random, index: int, count: int) -> Iterator[dict]:
        skipped: list[tuple[str, str]] = []
        for record in self._train_records(rng, index, count):
            if isinstance(record, Failure):
                skipped.append(self._warn(record.name, record.reason))
            else:
                try:
                    total, fps = self._length(record)
                    interval = frame_interval(fps, self.sample_fps)
                    indices = self._indices(record, total, interval, rng)
                    clip = self._clip(record, indices, rng)
                except READ_ERRORS as err:
                    skipped.append(self._warn(record.name, str(err)))
                else:
                    yield self._sample(record, clip, 0, indices, fps / interval, skipped)
                    skipped = []
            if len(skipped) >= self.max_consecutive_failures:
                raise DataError(
                    f"{len(skipped)} inputs in a row could not be read; the last: "
                    + "; ".join(f"{name}: {reason}" for name, reason in skipped[-3:])
                )

    def _train_records(self, rng: random.Random, index: int, count: int) -> Iterator[Union[Record, Failure]]:
        if self.videos is not None:
            if not self.videos:
                return
            while True:
                yield rng.choice(self.videos)
        yield from wds.DataPipeline(
            self._train_shards(index, count),
            lambda shards: (item for shard in shards for item in shard_records(shard["url"])),
            wds.shuffle(max(1, self.shuffle_buffer), initial=max(1, self.shuffle_buffer), rng=rng),
        )

    def _train_shards(self, index: int, count: int) -> Any:
        """Shard urls (as webdataset's ``{"url": ...}`` dicts) for part ``index`` of ``count``, endlessly."""
        # webdataset hashes its seed parts: ints keep them the same in every process (str hashes are salted)
        seed = zlib.crc32(f"{self.seed}/{self.epoch}".encode())
        if self.resampled:
            return wds.ResampledShards(self.shards, seed=seed, worker_seed=lambda: index, deterministic=True)
        if len(self.shards) < count:
            raise DataError(
                f"reading shards in epochs (resampled=False) needs at least one shard per rank x worker: "
                f"{len(self.shards)} shards for {count} readers; use resampled=True or fewer workers"
            )

        def epochs() -> Iterator[dict]:
            for repeat in itertools.count():
                # the same order on every rank (a seed of the epoch only), split after shuffling: each shard once
                order = wds.SimpleShardList(self.shards, seed=seed * 1_000_003 + repeat)
                yield from itertools.islice(order, index, None, count)

        return epochs

    # -- shared --------------------------------------------------------------------------------------

    def _length(self, record: Record) -> tuple[int, float]:
        """(frame count, fps): from the shard's metadata when it has them, else from the container
        (remembered per file: training draws the same files again and again)."""
        frames, fps = record.meta.get("frames"), record.meta.get("fps")
        if frames and fps:
            return int(frames), float(fps)
        if isinstance(record.source, str) and record.source in self._lengths:
            return self._lengths[record.source]
        info = read_info(record.source, record.name)
        length = int(info.frames), float(info.fps)
        if isinstance(record.source, str):
            self._lengths[record.source] = length
        return length

    def _indices(self, record: Record, total: int, interval: int, rng: Optional[random.Random]) -> list[int]:
        """A random start in training (``rng``), the first frame in evaluation; short videos are
        refused (``short="skip"``) or completed with copies of their last frame (``"pad"``)."""
        if self.short == "skip":
            check_length(total, self.num_frames, interval, record.name)
        room = total - clip_span(self.num_frames, interval)
        start = rng.randint(0, room) if rng is not None and room > 0 else 0
        return padded_indices(total, start, self.num_frames, interval)

    def _clip(self, record: Record, indices: list[int], rng: Optional[random.Random]) -> Tensor:
        frames = read_clip(record.source, indices, record.name)
        return frames_to_clip(frames, self.size, rng, flip=self.flip and rng is not None)

    @staticmethod
    def _sample(record: Record, clip: Tensor, index: int, frames: list[int], fps: float, skipped: list) -> dict:
        return {"video": clip, "key": record.key, "clip": index, "frames": frames, "fps": fps, "skipped": skipped}

    def _warn(self, name: str, reason: str) -> tuple[str, str]:
        self.skipped_count += 1  # per process (each DataLoader worker has its own copy)
        log.warning("skipping %s: %s (%d skipped by this reader so far)", name, reason, self.skipped_count)
        return name, reason

    def _failure(self, name: str, reason: str, key: str) -> dict:
        self._warn(name, reason)
        return {"video": None, "key": key, "clip": 0, "frames": [], "fps": 0.0, "skipped": [(name, reason)]}


def collate_clips(samples: list[dict]) -> dict:
    """Batch samples: ``video`` (B, 3, T, H, W) of the good ones (None if there are none), their
    ``keys``, ``clips``, ``frames`` and ``fps``, and ``skipped``: every (name, reason) reported with them."""
    good = [s for s in samples if s["video"] is not None]
    skipped = [item for s in samples for item in s.get("skipped", ())]
    return {
        "video": torch.stack([s["video"] for s in good]) if good else None,
        "keys": [s["key"] for s in good],
        "clips": [s["clip"] for s in good],
        "frames": [s["frames"] for s in good],
        "fps": [s["fps"] for s in good],
        "skipped": skipped,
    }
