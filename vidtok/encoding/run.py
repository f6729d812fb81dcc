"""Encode a dataset: every video of a listing into latents or FSQ indices, written as WebDataset shards.

[`encode_dataset`][] is what ``encode.py`` runs; it works the same from Python and under ``accelerate launch``,
where each process takes every n-th video (whole shards for sharded input) and writes shards of its own. Frames are
read as ``vidtok encode`` reads them (sampled at ``sample_fps``, resized to cover ``height`` x ``width`` and
centre-cropped, on uint8 frames), so a sample equals ``vidtok encode`` of the same frames. Reading and resizing run
beside the model: in a background thread, or in ``workers`` DataLoader processes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..data.dataset import READ_ERRORS
from ..data.sampling import padding_copies
from ..data.videos import Cutting, ListingFailure, Piece, VideoTask, prefetch, video_pieces
from ..distributed import gather_objects
from ..errors import ConfigError
from ..inference.identity import tokenizer_identity
from ..inference.job import claim_output, start_job
from ..io.token_files import TokenFile, token_bytes
from .config import EncodeConfig
from .shards import Committed, ShardSink, code_files, read_committed, remove_uncommitted, write_manifest
from .stats import video_moments, write_stats

log = logging.getLogger("vidtok.encode")


@dataclass
class EncodeResult:
    """What a run wrote (on every process: the totals over all processes): ``samples`` in the output (this run's and
    earlier ones'), ``videos`` encoded by this run, ``frames`` its samples stand for, ``seconds`` of its video loop
    (the slowest process), ``skipped_done`` videos earlier runs had committed, ``failed`` every skipped video."""

    output_dir: Path
    samples: int
    videos: int
    failed: list[dict]
    skipped_done: int
    seconds: float
    frames: int
    identity: dict = field(default_factory=dict)


@dataclass
class _End:
    """A video whose frames are all read."""

    task: VideoTask
    fps: float
    source_fps: float
    frames: int


@dataclass
class _Failed:
    task: VideoTask
    reason: str


def _pieces(task: VideoTask, cutting: Cutting) -> Iterator[Union[Piece, _End, _Failed]]:
    """One video's pieces as they are decoded, then its end; or, at the first read error, its failure (the
    consumer then drops what it had of the video)."""
    try:
        read = yield from video_pieces(task, cutting)
    except MemoryError:
        raise
    except Exception as err:  # the reader only decodes and resizes: whatever it raises is the video's
        reason = str(err) if isinstance(err, READ_ERRORS) else f"{type(err).__name__}: {err}"
        yield _Failed(task, reason)
        return
    yield _End(task, read.fps, read.source_fps, read.frames)


class _ReadSet(torch.utils.data.IterableDataset):
    """The videos of this process, read in DataLoader workers (each takes every n-th video: a video's pieces
    stay in order)."""

    def __init__(self, tasks: list, cutting: Cutting):
        self.tasks, self.cutting = tasks, cutting

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        tasks = self.tasks if info is None else self.tasks[info.id :: info.num_workers]
        for task in tasks:
            yield from _pieces(task, self.cutting)


def _read(tasks: list, cutting: Cutting, workers: int) -> Iterator:
    """Every piece, end and failure of ``tasks`` in order, read beside the model (a thread, or ``workers``
    DataLoader processes)."""
    if workers == 0:
        return prefetch((item for task in tasks for item in _pieces(task, cutting)), depth=4)
    loader = torch.utils.data.DataLoader(
        _ReadSet(tasks, cutting), batch_size=None, num_workers=workers, prefetch_factor=4
    )
    return iter(loader)


def _prepare_output(acc: Any, out_dir: Path, identity: dict, cfg: EncodeConfig) -> Committed:
    """Every process: once the main process has claimed ``out_dir``, what earlier runs committed there."""
    if acc.is_main_process:
        _claim_output(out_dir, identity, cfg)
    acc.wait_for_everyone()
    return read_committed(out_dir)


def _claim_output(out_dir: Path, identity: dict, cfg: EncodeConfig) -> None:
    """Main process: start ``out_dir`` or check that it holds this job's samples; drop what a killed run left."""
    claim_output(out_dir, identity, cfg.job_keys(), "samples")
    for name in remove_uncommitted(out_dir):
        log.info("removed %s (left unfinished by an interrupted run)", name)


def _split_listing(listing: Iterator, done: set, sink: ShardSink) -> tuple[list[VideoTask], int]:
    """The videos to encode, and how many earlier runs committed; entries that are no video are recorded as
    failures."""
    tasks, skipped = [], 0
    for task in listing:
        if task.key in done:
            skipped += 1
        elif isinstance(task, ListingFailure):
            _add_failure(sink, task, task.reason)
        else:
            tasks.append(task)
    return tasks, skipped


def _add_failure(sink: ShardSink, task: Union[VideoTask, ListingFailure], reason: str) -> None:
    """A video that is skipped, as ``failed.jsonl`` lists it."""
    sink.add_failure({"order": task.order, "key": task.key, "name": task.name, "reason": reason})


def _encode_videos(
    tasks: list[VideoTask], cutting: Cutting, encoder: _Encoder, sink: ShardSink, cfg: EncodeConfig, rank: int
) -> tuple[int, int, float]:
    """Read, encode and write every task, then commit the shards (or abort them on any error): the videos
    encoded, the frames their samples stand for, and the seconds it took."""
    start = time.perf_counter()
    bar = tqdm(total=len(tasks), desc="encode", unit="video", disable=not cfg.output.progress, position=rank)
    reader = _read(tasks, cutting, cfg.workers)
    try:
        with torch.inference_mode():
            videos, frames = _write_videos(_finished_videos(reader, encoder, sink, bar), sink)
        sink.commit()
    except BaseException:
        sink.abort()
        raise
    finally:
        bar.close()
        close = getattr(reader, "close", None)
        if close is not None:
            close()
    return videos, frames, time.perf_counter() - start


def _finished_videos(reader: Iterator, encoder: _Encoder, sink: ShardSink, bar: Any) -> Iterator[tuple[list, dict]]:
    """The videos the encoder completes as the reader's items go through it (failures recorded and dropped),
    then the rest once the reader is done."""
    for item in reader:
        if isinstance(item, Piece):
            yield from encoder.push(item)
            continue
        bar.update(1)
        if isinstance(item, _Failed):
            encoder.drop(item.task)
            log.warning("skipping %s: %s", item.task.name, item.reason)
            _add_failure(sink, item.task, item.reason)
        else:
            yield from encoder.end(item)
    yield from encoder.flush()


def _write_videos(finished: Iterator[tuple[list, dict, tuple]], sink: ShardSink) -> tuple[int, int]:
    """Add each finished video's samples to the shards; the videos and the frames their samples stand for."""
    videos = frames = 0
    for samples, record, indices in finished:
        sink.add_video(record, samples, indices)
        videos += 1
        frames += sum(r["frames"] for _, _, r in samples)
    return videos, frames


def _summary(
    acc: Any, out_dir: Path, identity: dict, videos: int, frames: int, seconds: float, skipped: int, tok: Any, kind: str
) -> EncodeResult:
    """Every process: the totals over all processes, once the main process has written the manifest and the
    statistics."""
    parts = gather_objects((videos, frames, seconds, skipped))
    acc.wait_for_everyone()
    if acc.is_main_process:
        write_manifest(out_dir)
        write_stats(out_dir, read_committed(out_dir).indexes, tok.config, kind, code_files(out_dir))
    acc.wait_for_everyone()
    state = read_committed(out_dir)
    failed = sorted((f for index in state.indexes for f in index["failed"]), key=lambda f: f["order"])
    return EncodeResult(
        output_dir=out_dir,
        samples=sum(len(v["samples"]) for index in state.indexes for v in index["videos"]),
        videos=sum(p[0] for p in parts),
        failed=failed,
        skipped_done=sum(p[3] for p in parts),
        seconds=max(p[2] for p in parts),
        frames=sum(p[1] for p in parts),
        identity=identity,
    )


def encode_dataset(config: Union[EncodeConfig, dict, Any], *, accelerator: Any = None, tokenizer: Any = None):
    """Run a dataset encoding as ``config`` (an [`EncodeConfig`][], a dict or an OmegaConf node) says.

    Started again with the same config after an interruption, it encodes only the videos no earlier run
    committed. ``tokenizer``: an already loaded tokenizer instead of loading ``ckpt``. Raises ConfigError /
    CheckpointError / DataSourceError before any video is read; a video that cannot be read is skipped and
    listed in ``failed.jsonl``. Returns an [`EncodeResult`][].
    """
    cfg = EncodeConfig.from_any(config)
    if cfg.workers and cfg.mode == "whole":
        raise ConfigError("workers applies to mode=clips; mode=whole reads each video in a background thread")
    acc, device, listing, tok, options, from_file = start_job(cfg, "encode", accelerator, tokenizer)
    identity = tokenizer_identity(tok, cfg.ckpt, from_file=from_file)
    out_dir = Path(cfg.output.dir)
    committed = _prepare_output(acc, out_dir, identity, cfg)
    rank, kind = acc.process_index, "indices" if cfg.output.indices else "latents"
    codes = tok.config.codebook_size if kind == "indices" else 0
    first = committed.next_number.get(rank, 0)
    sink = ShardSink(out_dir, rank, first, cfg.output.max_count, cfg.output.max_bytes, codebook_size=codes,
                     write_samples=not cfg.output.stats_only)  # fmt: skip
    tasks, skipped = _split_listing(listing, committed.done, sink)
    encoder = _Encoder(tok, cfg, options, device, kind)
    cutting = cfg.cutting(tok.config.causal, tok.config.spatial_factor)
    videos, frames, seconds = _encode_videos(tasks, cutting, encoder, sink, cfg, rank)
    return _summary(acc, out_dir, identity, videos, frames, seconds, skipped, tok, kind)


class _Encoder:
    """Runs the model on pieces as they come and keeps each video's samples until the video ends. In ``clips``
    mode clips are batched across videos (``batch_size`` per call, all of one shape); a video is finished once
    its last clip has been through the model."""

    def __init__(self, tok: Any, cfg: EncodeConfig, options: Any, device: torch.device, kind: str):
        self.tok, self.cfg, self.options, self.device, self.kind = tok, cfg, options, device, kind
        self.autocast = cfg.autocast(device)
        # what the model gives: posterior runs keep the encoder's moments (mean and log-variance) until written
        self.output = "moments" if cfg.output.posterior else kind
        self.pending: dict[str, list] = {}  # video key -> [(data (1, ...), source indices)], in clip order
        self.sizes: dict[str, tuple[int, int]] = {}  # video key -> its frames' (height, width)
        # clips waiting for the model, one queue per clip shape (videos of several sizes): (video key, clip, ids)
        self.queues: dict[tuple, list[tuple[str, Tensor, list[int]]]] = {}
        self.ended: list[_End] = []  # videos whose frames are all read, in the order they ended
        self.stream = None  # whole mode: the open stream of the current video

    def push(self, piece: Piece) -> list:
        """Take a piece; the videos it completes, as [`finish`][] gives them."""
        parts = self.pending.setdefault(piece.task.key, [])
        self.sizes[piece.task.key] = tuple(piece.video.shape[-2:])
        if self.cfg.mode == "whole":
            with self.autocast:
                if self.stream is None:
                    self.stream = self.tok.encoder_stream(options=self.options, output=self.output)
                    self.stream.__enter__()
                parts.append((self.stream.push(piece.video.to(self.device)), piece.indices[0]))
            return []
        queue = self.queues.setdefault(tuple(piece.video.shape[1:]), [])
        for clip, ids in zip(piece.video.split(1), piece.indices, strict=True):
            queue.append((piece.task.key, clip, ids))
        while len(queue) >= self.cfg.batch_size:
            self._run(queue, self.cfg.batch_size)
        return self._finished()

    def end(self, end: _End) -> list:
        """A video's frames are all read; the videos now complete."""
        if self.cfg.mode == "whole":
            return [self.finish(end)]
        self.ended.append(end)
        return self._finished()

    def flush(self) -> list:
        """The clips still waiting through the model; every remaining video."""
        for queue in self.queues.values():
            while queue:
                self._run(queue, len(queue))
        return self._finished()

    def _run(self, queue: list, count: int) -> None:
        batch = queue[:count]
        del queue[:count]
        encode = {"indices": self.tok.encode_indices, "latents": self.tok.encode, "moments": self.tok.encode_moments}
        encode = encode[self.output]
        with self.autocast:
            out = encode(torch.cat([clip for _, clip, _ in batch]).to(self.device), options=self.options)
        for i, (key, _, ids) in enumerate(batch):
            data = out[i : i + 1].float() if self.kind == "latents" else out[i : i + 1]
            self.pending[key].append((data, ids))

    def _finished(self) -> list:
        done = []
        waiting = {key for queue in self.queues.values() for key, _, _ in queue}
        while self.ended and self.ended[0].task.key not in waiting:
            done.append(self.finish(self.ended.pop(0)))
        return done

    def drop(self, task: VideoTask) -> None:
        """Forget a video that failed while being read."""
        self.pending.pop(task.key, None)
        self.sizes.pop(task.key, None)
        for queue in self.queues.values():
            queue[:] = [item for item in queue if item[0] != task.key]
        self._close_stream()

    def _close_stream(self) -> None:
        if self.stream is not None:
            self.stream.__exit__(None, None, None)
            self.stream = None

    def finish(self, end: _End) -> tuple[list[tuple[str, bytes, dict]], dict, tuple]:
        """The video's samples (key, safetensors bytes, json record), its index record (with the statistics of
        its latents) and its samples' indices (for the shard's code counts; empty for latents)."""
        task, cfg, tc = end.task, self.cfg, self.tok.config
        parts = self.pending.pop(task.key, [])
        height, width = self.sizes.pop(task.key, (cfg.height, cfg.width))
        base = task.key.replace(".", "_")
        video = {"order": task.order, "key": task.key, "name": task.name, "frames": end.frames, "fps": end.fps}
        if (height, width) != (cfg.height, cfg.width):
            video.update(height=height, width=width)
        common = {
            "video": task.key,
            "order": task.order,
            "source": task.name,
            "fps": end.fps,
            "source_fps": end.source_fps,
            "height": height,
            "width": width,
            "kind": self.kind,
        }
        if cfg.mode == "whole":
            with self.autocast:
                tail = self.stream.finish()
            self._close_stream()
            pieces = [p for p, _ in parts] + [tail]
            data = torch.cat(pieces, dim=1 if self.kind == "indices" else 2)
            ids = [i for _, chunk in parts for i in chunk]
            clips = [(data, ids)]
        else:
            clips = parts
        logvars = [None] * len(clips)
        if self.output == "moments":  # the posterior: its mean is the latents
            split = [self.tok.regularizer.split(data.float()) for data, _ in clips]
            clips = [(mean, ids) for (mean, _), (_, ids) in zip(split, clips, strict=True)]
            logvars = [logvar for _, logvar in split]
        samples = []
        for number, ((data, ids), logvar) in enumerate(zip(clips, logvars, strict=True)):
            padded = padding_copies(ids)
            frames = len(ids) - padded
            tokens = TokenFile(
                self.kind,
                data.float() if self.kind == "latents" else data,
                tc,
                end.fps,
                frames,
                height,
                width,
                None if cfg.mode == "whole" else len(ids),
                {"path": task.name, "fps": end.source_fps},
                logvar=logvar,
            )
            key = base if cfg.mode == "whole" else f"{base}/{number:05d}"
            record = dict(common, clip=number, first_frame=ids[0], last_frame=ids[frames - 1], frames=frames)
            record.update(padded_frames=padded, shape=list(data.shape))
            samples.append((key, token_bytes(tokens), record))
        if self.kind == "latents":
            video["stats"] = video_moments([data for data, _ in clips], tc.causal)
            return samples, video, ()
        return samples, video, tuple(data for data, _ in clips)
