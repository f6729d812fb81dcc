"""Encode a dataset: every video of a listing into latents or FSQ indices, written as WebDataset shards.

:func:`encode_dataset` is what ``encode.py`` runs; it works the same from Python and under ``accelerate launch``,
where each process takes every n-th video (whole shards for sharded input) and writes shards of its own. Frames are
read as ``vidtok encode`` reads them (sampled at ``sample_fps``, resized to cover ``height`` x ``width`` and
centre-cropped, on uint8 frames), so a sample equals ``vidtok encode`` of the same frames. Reading and resizing run
beside the model: in a background thread, or in ``workers`` DataLoader processes.
"""

from __future__ import annotations

import json
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
from ..data.sampling import consecutive_clips, padding_copies
from ..data.videos import ListingFailure, VideoTask, prefetch
from ..distributed import gather_objects
from ..errors import ConfigError, VideoError
from ..inference.identity import tokenizer_identity
from ..inference.job import start_job
from ..io.files import read_json, write_atomic
from ..io.token_files import TokenFile, token_bytes
from ..io.video import frame_interval, frames_to_tensor, iter_frames, read_info
from .config import EncodeConfig
from .shards import ShardSink, read_committed, remove_uncommitted, write_manifest

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
class _Piece:
    """Frames of one video for the model: ``video`` (n, 3, T, H, W) in [-1, 1]; ``indices`` the source frame
    indices of each of the n clips (``whole`` mode: n = 1, T a chunk)."""

    task: VideoTask
    video: Tensor
    indices: list[list[int]]
    fps: float


@dataclass
class _End:
    task: VideoTask
    fps: float
    source_fps: float
    frames: int


@dataclass
class _Failed:
    task: VideoTask
    reason: str


def _pieces(task: VideoTask, cfg: EncodeConfig, causal: bool) -> Iterator[Union[_Piece, _End, _Failed]]:
    """One video's frames as they are decoded, cut as the config says, then its end; or, at the first read
    error, its failure (the consumer then drops what it had of the video)."""
    try:
        info = read_info(task.source, task.name)
        interval = frame_interval(info.fps, cfg.sample_fps)
        fps = info.fps / interval
        size = (cfg.height, cfg.width)
        count = 0
        if cfg.mode == "whole":
            for frames in iter_frames(task.source, interval=interval, size=size, chunk=cfg.chunk_frames):
                ids = [(count + i) * interval for i in range(frames.shape[0])]
                count += frames.shape[0]
                yield _Piece(task, frames_to_tensor(frames), [ids], fps)
        else:
            clip, clips, pieces = cfg.clip_length(causal), [], 0

            def numbered() -> Iterator[tuple[int, Tensor]]:
                nonlocal count
                for chunk in iter_frames(task.source, interval=interval, size=size, chunk=clip):
                    for frame in chunk:
                        yield count * interval, frame
                        count += 1

            for run in consecutive_clips(numbered(), clip, cfg.last_clip):
                clips.append(([i for i, _ in run], torch.stack([frame for _, frame in run])))
                if len(clips) == cfg.batch_size:
                    yield _batch(task, clips, fps)
                    clips, pieces = [], pieces + 1
            if clips:
                yield _batch(task, clips, fps)
                pieces += 1
            if not pieces and count:
                raise VideoError(f"{task.name} has {count} sampled frames, fewer than one clip of {clip}")
        if count == 0:
            raise VideoError(f"{task.name} holds no video frames")
    except MemoryError:
        raise
    except Exception as err:  # the reader only decodes and resizes: whatever it raises is the video's
        reason = str(err) if isinstance(err, READ_ERRORS) else f"{type(err).__name__}: {err}"
        yield _Failed(task, reason)
        return
    yield _End(task, fps, info.fps, count)


def _batch(task: VideoTask, clips: list, fps: float) -> _Piece:
    video = torch.cat([frames_to_tensor(frames) for _, frames in clips])
    return _Piece(task, video, [ids for ids, _ in clips], fps)


class _ReadSet(torch.utils.data.IterableDataset):
    """The videos of this process, read in DataLoader workers (each takes every n-th video: a video's pieces
    stay in order)."""

    def __init__(self, tasks: list, cfg: EncodeConfig, causal: bool):
        self.tasks, self.cfg, self.causal = tasks, cfg, causal

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        tasks = self.tasks if info is None else self.tasks[info.id :: info.num_workers]
        for task in tasks:
            yield from _pieces(task, self.cfg, self.causal)


def _read(tasks: list, cfg: EncodeConfig, causal: bool) -> Iterator:
    if cfg.workers == 0:
        return prefetch((item for task in tasks for item in _pieces(task, cfg, causal)), depth=4)
    loader = torch.utils.data.DataLoader(
        _ReadSet(tasks, cfg, causal), batch_size=None, num_workers=cfg.workers, prefetch_factor=4
    )
    return iter(loader)


def _job_record(identity: dict, cfg: EncodeConfig) -> dict:
    """What run.json holds, and what a resumed run must match: the tokenizer's config and weights, the keys."""
    weights = {k: identity.get(k) for k in ("ckpt_sha256", "weights_sha256") if identity.get(k)}
    return {"tokenizer": identity["name"], "config": identity["config"], "weights": weights, "keys": cfg.job_keys()}


def _claim_output(out_dir: Path, record: dict, identity: dict) -> None:
    """Main process: start ``out_dir`` or check that it holds this job's samples; drop what a killed run left."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "run.json"
    if path.is_file():
        old = read_json(path, ConfigError, "job record", "use another output.dir or remove it")
        if old.get("job") != record:
            diff = sorted(k for k in record if old.get("job", {}).get(k) != record[k])
            raise ConfigError(
                f"output.dir {out_dir} holds samples of another job (differs in: {', '.join(diff)}); use another "
                "output.dir, or remove it to start over"
            )
    else:
        write_atomic(path, json.dumps({"job": record, "identity": identity}, indent=1, default=str).encode())
    for name in remove_uncommitted(out_dir):
        log.info("removed %s (left unfinished by an interrupted run)", name)


def encode_dataset(config: Union[EncodeConfig, dict, Any], *, accelerator: Any = None, tokenizer: Any = None):
    """Run a dataset encoding as ``config`` (an :class:`EncodeConfig`, a dict or an OmegaConf node) says.

    Started again with the same config after an interruption, it encodes only the videos no earlier run
    committed. ``tokenizer``: an already loaded tokenizer instead of loading ``ckpt``. Raises ConfigError /
    CheckpointError / DataSourceError before any video is read; a video that cannot be read is skipped and
    listed in ``failed.jsonl``. Returns an :class:`EncodeResult`.
    """
    cfg = EncodeConfig.from_any(config)
    if cfg.workers and cfg.mode == "whole":
        raise ConfigError("workers applies to mode=clips; mode=whole reads each video in a background thread")
    acc, device, listing, tok, options, from_file = start_job(cfg, "encode", accelerator, tokenizer)
    tc = tok.config
    identity = tokenizer_identity(tok, cfg.ckpt, from_file=from_file)
    out_dir = Path(cfg.output.dir)
    if acc.is_main_process:
        _claim_output(out_dir, _job_record(identity, cfg), identity)
    acc.wait_for_everyone()
    committed = read_committed(out_dir)
    rank = acc.process_index
    sink = ShardSink(out_dir, rank, committed.next_number.get(rank, 0), cfg.output.max_count, cfg.output.max_bytes)
    tasks, skipped = [], 0
    for task in listing:
        if task.key in committed.done:
            skipped += 1
        elif isinstance(task, ListingFailure):
            sink.add_failure({"order": task.order, "key": task.key, "name": task.name, "reason": task.reason})
        else:
            tasks.append(task)
    kind = "indices" if cfg.output.indices else "latents"
    encoder = _Encoder(tok, cfg, options, device, kind)
    start = time.perf_counter()
    bar = tqdm(total=len(tasks), desc="encode", unit="video", disable=not cfg.output.progress, position=rank)
    videos = frames = 0
    reader = _read(tasks, cfg, tc.causal)
    try:
        with torch.inference_mode():
            for item in reader:
                if isinstance(item, _Piece):
                    finished = encoder.push(item)
                elif isinstance(item, _Failed):
                    bar.update(1)
                    encoder.drop(item.task)
                    log.warning("skipping %s: %s", item.task.name, item.reason)
                    task = item.task
                    sink.add_failure({"order": task.order, "key": task.key, "name": task.name, "reason": item.reason})
                    continue
                else:
                    bar.update(1)
                    finished = encoder.end(item)
                for samples, record in finished:
                    sink.add_video(record, samples)
                    videos += 1
                    frames += sum(r["frames"] for _, _, r in samples)  # frames the samples stand for
            for samples, record in encoder.flush():
                sink.add_video(record, samples)
                videos += 1
                frames += sum(r["frames"] for _, _, r in samples)
        sink.commit()
    except BaseException:
        sink.abort()
        raise
    finally:
        bar.close()
        close = getattr(reader, "close", None)
        if close is not None:
            close()
    seconds = time.perf_counter() - start
    parts = gather_objects((videos, frames, seconds))
    acc.wait_for_everyone()
    if acc.is_main_process:
        write_manifest(out_dir)
    acc.wait_for_everyone()
    state = read_committed(out_dir)
    failed = sorted((f for index in state.indexes for f in index["failed"]), key=lambda f: f["order"])
    samples = sum(len(v["samples"]) for index in state.indexes for v in index["videos"])
    return EncodeResult(
        out_dir,
        samples,
        sum(p[0] for p in parts),
        failed,
        sum(gather_objects(skipped)),
        max(p[2] for p in parts),
        sum(p[1] for p in parts),
        identity,
    )


class _Encoder:
    """Runs the model on pieces as they come and keeps each video's samples until the video ends. In ``clips``
    mode clips are batched across videos (``batch_size`` per call, all of one shape); a video is finished once
    its last clip has been through the model."""

    def __init__(self, tok: Any, cfg: EncodeConfig, options: Any, device: torch.device, kind: str):
        self.tok, self.cfg, self.options, self.device, self.kind = tok, cfg, options, device, kind
        self.autocast = cfg.autocast(device)
        self.pending: dict[str, list] = {}  # video key -> [(data (1, ...), source indices)], in clip order
        self.queue: list[tuple[str, Tensor, list[int]]] = []  # clips waiting for the model: (video key, clip, ids)
        self.ended: list[_End] = []  # videos whose frames are all read, in the order they ended
        self.stream = None  # whole mode: the open stream of the current video

    def push(self, piece: _Piece) -> list:
        """Take a piece; the videos it completes, as :meth:`finish` gives them."""
        parts = self.pending.setdefault(piece.task.key, [])
        if self.cfg.mode == "whole":
            with self.autocast:
                if self.stream is None:
                    self.stream = self.tok.encoder_stream(options=self.options, output=self.kind)
                    self.stream.__enter__()
                parts.append((self.stream.push(piece.video.to(self.device)), piece.indices[0]))
            return []
        for clip, ids in zip(piece.video.split(1), piece.indices, strict=True):
            self.queue.append((piece.task.key, clip, ids))
        while len(self.queue) >= self.cfg.batch_size:
            self._run(self.cfg.batch_size)
        return self._finished()

    def end(self, end: _End) -> list:
        """A video's frames are all read; the videos now complete."""
        if self.cfg.mode == "whole":
            return [self.finish(end)]
        self.ended.append(end)
        return self._finished()

    def flush(self) -> list:
        """The clips still waiting through the model; every remaining video."""
        while self.queue:
            self._run(len(self.queue))
        return self._finished()

    def _run(self, count: int) -> None:
        batch, self.queue = self.queue[:count], self.queue[count:]
        encode = self.tok.encode_indices if self.kind == "indices" else self.tok.encode
        with self.autocast:
            out = encode(torch.cat([clip for _, clip, _ in batch]).to(self.device), options=self.options)
        for i, (key, _, ids) in enumerate(batch):
            data = out[i : i + 1].float() if self.kind == "latents" else out[i : i + 1]
            self.pending[key].append((data, ids))

    def _finished(self) -> list:
        done = []
        waiting = {key for key, _, _ in self.queue}
        while self.ended and self.ended[0].task.key not in waiting:
            done.append(self.finish(self.ended.pop(0)))
        return done

    def drop(self, task: VideoTask) -> None:
        """Forget a video that failed while being read."""
        self.pending.pop(task.key, None)
        self.queue = [item for item in self.queue if item[0] != task.key]
        self._close_stream()

    def _close_stream(self) -> None:
        if self.stream is not None:
            self.stream.__exit__(None, None, None)
            self.stream = None

    def finish(self, end: _End) -> tuple[list[tuple[str, bytes, dict]], dict]:
        """The video's samples (key, safetensors bytes, json record) and its index record."""
        task, cfg, tc = end.task, self.cfg, self.tok.config
        parts = self.pending.pop(task.key, [])
        base = task.key.replace(".", "_")
        video = {"order": task.order, "key": task.key, "name": task.name, "frames": end.frames, "fps": end.fps}
        common = {
            "video": task.key,
            "order": task.order,
            "source": task.name,
            "fps": end.fps,
            "source_fps": end.source_fps,
            "height": cfg.height,
            "width": cfg.width,
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
        samples = []
        for number, (data, ids) in enumerate(clips):
            padded = padding_copies(ids)
            frames = len(ids) - padded
            tokens = TokenFile(
                self.kind,
                data.float() if self.kind == "latents" else data,
                tc,
                end.fps,
                frames,
                cfg.height,
                cfg.width,
                None if cfg.mode == "whole" else len(ids),
                {"path": task.name, "fps": end.source_fps},
            )
            key = base if cfg.mode == "whole" else f"{base}/{number:05d}"
            record = dict(common, clip=number, first_frame=ids[0], last_frame=ids[frames - 1], frames=frames)
            record.update(padded_frames=padded, shape=list(data.shape))
            samples.append((key, token_bytes(tokens), record))
        return samples, video
