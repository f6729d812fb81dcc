"""The per-process runner of an evaluation: reconstructs one video at a time by the protocol (clips or one causal
stream), scores every frame, collects the FVD features, writes the reconstruction, and makes the video's record.

A video's numbers never depend on which process runs it: clips are batched only with clips of the same video,
metrics are computed clip by clip, and a posterior sample draws from the video's own generator.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor

from ..data.dataset import READ_ERRORS
from ..data.sampling import padding_copies
from ..data.videos import Piece, VideoTask, prefetch, video_pieces
from ..inference.pipeline import reconstruct_stream
from ..io.video import VideoWriter, tensor_to_frames
from ..metrics import FrameScorer
from ..metrics.codes import CodeCounts
from ..metrics.drift import LatentDrift
from ..metrics.video import exact_mean
from ..models.options import InferenceOptions
from .config import EvalConfig

#: Where a video's time goes (its record's ``seconds``; the summary's ``time_share``).
TIMERS = ("read", "model", "metrics", "write")


class UnreadableVideo(Exception):
    """A video could not be read as the protocol needs (raised from the reader only: model errors propagate)."""


@contextmanager
def reading() -> Iterator[None]:
    """Around decoding and resizing only: whatever they raise (memory aside) is the video's, an
    [`UnreadableVideo`][] with the reason (the error's text, prefixed by its type where it is no read error)."""
    try:
        yield
    except MemoryError:
        raise
    except Exception as err:
        reason = str(err) if isinstance(err, READ_ERRORS) else f"{type(err).__name__}: {err}"
        raise UnreadableVideo(reason) from err


def failure(task: Any, reason: str, **extra: Any) -> dict[str, Any]:
    """The report's record of a video (or listing entry) that was not evaluated, and why."""
    return {"order": task.order, "video": task.key, "name": task.name, "reason": reason, **extra}


class VideoRunner:
    """Reconstructs and scores one video at a time."""

    def __init__(
        self,
        tok: Any,
        scorer: FrameScorer,
        cfg: EvalConfig,
        options: InferenceOptions,
        device: torch.device,
        out_dir: Optional[Path],
        real_features: Optional[dict] = None,
        reference: Any = None,
    ):
        """``options``: the tokenizer passes' checked options ([`EvalConfig.inference_options`][]);
        ``real_features``: FVD features of the input windows shared by the runners of one comparison (each window's
        computed once, by the first runner that needs it); ``reference``: a tokenizer whose latents of the same clips
        this one's are measured against ([`LatentDrift`][vidtok.metrics.drift.LatentDrift], clips mode)."""
        self.tok, self.scorer, self.cfg, self.device, self.out_dir = tok, scorer, cfg, device, out_dir
        self.options = options
        self.autocast = cfg.autocast(device)
        self.f = tok.config.temporal_factor
        self.cutting = cfg.cutting(tok.config.frame_rule.first == 1)
        self.real_features = real_features
        self.codes = CodeCounts(tok.config.codebook_size) if tok.config.is_discrete else None
        self.reference = reference
        self.warm = False
        self.drift = LatentDrift() if reference is not None else None

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def run(self, task: VideoTask, pieces: Optional[Iterator[Piece]] = None) -> tuple[dict[str, Any], list[tuple]]:
        """The video's record and its FVD features ``(order, window, real, fake)``; ``pieces``: the video already
        cut (default: read from its file as the cut says). A read error raises [`UnreadableVideo`][], and then
        nothing of the video is kept (a half-written reconstruction is removed)."""
        cfg = self.cfg
        state = _VideoState(task, self.scorer.metric_names)
        self.generator = None
        if cfg.sample_posterior:  # one stream per video: the draws do not depend on which process runs it
            self.generator = torch.Generator(self.device).manual_seed(cfg.seed * 1_000_003 + task.order)
        resident = 0
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            resident = torch.cuda.memory_allocated(self.device)
        writer: Optional[VideoWriter] = None
        reader = pieces if pieces is not None else prefetch(video_pieces(task, self.cutting))
        pairs = self._whole(reader, state) if cfg.mode == "whole" else self._clips(reader, state)
        try:
            while True:
                t0 = time.perf_counter()
                item = next(pairs, None)  # reads (in the reader thread) and runs the model
                self._sync()
                t1 = time.perf_counter()
                state.seconds["model"] += t1 - t0
                if item is None:
                    break
                x, recon, indices, clip_ids = item
                recon = recon.float().clamp(-1, 1)
                state.add(self.scorer.score(x, recon), indices, clip_ids)
                if self.scorer.detector is not None:
                    state.add_windows(self.scorer, x, recon, indices, cfg.mode == "clips", self.real_features)
                t2 = time.perf_counter()
                if self.out_dir is not None and cfg.output.reconstructions:
                    if writer is None:
                        writer = VideoWriter(self._video_path(task), state.fps)
                    _write(writer, x, recon, indices, cfg.output.side_by_side)
                t3 = time.perf_counter()
                state.seconds["metrics"] += t2 - t1
                state.seconds["write"] += t3 - t2
            if writer is not None:
                writer.close()
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        finally:
            pairs.close()
            reader.close()
        state.seconds["model"] -= state.seconds["read"]  # the generator's time less the waits for the reader
        if self.device.type == "cuda":  # this tokenizer's: its weights and the most its passes held above the rest
            weights = sum(p.numel() * p.element_size() for p in self.tok.parameters())
            state.peak_memory = weights + torch.cuda.max_memory_allocated(self.device) - resident
        return state.record(), state.features

    def _options(self) -> dict[str, Any]:
        """The keywords of every tokenizer pass: the options, and the video's posterior draws."""
        options: dict[str, Any] = {"options": self.options}
        if self.cfg.sample_posterior:
            options.update(sample=True, generator=self.generator)
        return options

    def _next_piece(self, reader, state: _VideoState) -> Optional[Piece]:
        t0 = time.perf_counter()
        with reading():  # the reader thread only decodes and resizes
            piece = next(reader, None)
        state.seconds["read"] += time.perf_counter() - t0
        if piece is not None:
            state.fps = piece.fps
        return piece

    def _clips(self, reader, state: _VideoState):
        """(inputs, reconstructions, source indices per clip, clip numbers) per piece of clips."""
        cfg, tok = self.cfg, self.tok
        context: Optional[Tensor] = None
        clip_no = 0
        while (piece := self._next_piece(reader, state)) is not None:
            x = piece.video.to(self.device)
            with self.autocast:
                if cfg.pad_gen_frames:
                    outs = []
                    for clip in x.split(1):
                        if context is None or self.f == 1:  # f = 1: no padding frames to replace
                            out = tok(clip, **self._options())
                        else:
                            out = tok.reconstruct_after(clip, context, **self._options())
                        out = out.clamp(-1, 1)
                        context = out[:, :, 1 - self.f :]
                        outs.append(out)
                    recon = torch.cat(outs)
                else:
                    recon = self._encode_decode(x, state)
            ids = [[clip_no + i] * len(clip) for i, clip in enumerate(piece.indices)]
            clip_no += x.shape[0]
            yield x, recon, piece.indices, ids

    def _encode_decode(self, x: Tensor, state: _VideoState) -> Tensor:
        """``tok(x)`` as its two passes, each timed (and a discrete tokenizer's codes counted)."""
        t0 = time.perf_counter()
        z = self.tok.encode(x, **self._options())
        self._sync()
        t1 = time.perf_counter()
        recon = self.tok.decode(z, options=self.options)[:, :, : x.shape[2]]
        self._sync()
        if self.warm:  # the first call (lazy set-up, autotuning, the allocator's growth) is not timed
            state.passes["encode"] += t1 - t0
            state.passes["decode"] += time.perf_counter() - t1
            state.passes["frames"] += x.shape[0] * x.shape[2]
        self.warm = True
        state.latent_shape = list(z.shape[1:])
        indices = self.tok.latents_to_indices(z) if self.codes is not None else None
        if indices is not None:
            self.codes.add(indices)
        if self.reference is not None:
            self._drift(x, z, indices)
        return recon

    def _drift(self, x: Tensor, z: Tensor, indices: Optional[Tensor]) -> None:
        """This tokenizer's latents of ``x`` against the reference's (posterior means: a draw is noise)."""
        if self.cfg.sample_posterior:
            z = self.tok.encode(x, options=self.options)
        self.drift.measure(self.tok, self.reference, x, z, indices, options=self.options)

    def _whole(self, reader, state: _VideoState):
        """(inputs, reconstructions, [source indices], [chunk numbers]) as the causal stream returns frames."""
        indices: deque[tuple[int, int]] = deque()

        def chunks():
            chunk_no = 0
            while (piece := self._next_piece(reader, state)) is not None:
                indices.extend((i, chunk_no) for i in piece.indices[0])
                chunk_no += 1
                yield piece.video.to(self.device)

        stream = reconstruct_stream(self.tok, chunks(), **self._options())
        try:
            while True:
                with self.autocast:  # around each step only: the consumer's code runs without it
                    item = next(stream, None)
                if item is None:
                    return
                x, recon = item
                taken = [indices.popleft() for _ in range(x.shape[2])]
                yield x, recon, [[i for i, _ in taken]], [[c for _, c in taken]]
        finally:
            stream.close()  # an aborted video releases the model's streaming state

    def _video_path(self, task: VideoTask) -> Path:
        """<out>/reconstructions/<the video's key, folders kept>[.mp4]: ``x.mp4`` -> ``x.mp4``, ``x.mkv`` ->
        ``x.mkv.mp4``, so that no two videos share a file."""
        parts = [p if p not in ("", ".", "..") else "_" for p in task.key.split("/")]
        name = parts[-1] if parts[-1].lower().endswith(".mp4") else parts[-1] + ".mp4"
        path = self.out_dir.joinpath("reconstructions", *parts[:-1], name)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


def _input_features(scorer: FrameScorer, windows: Tensor, keys: list, cache: Optional[dict]) -> list[Tensor]:
    """I3D features of input ``windows`` (B, 3, T, H, W), one per key: taken from ``cache`` where a runner computed
    them before, the others computed (together) and kept there; without a cache, all computed."""
    if cache is None:
        return list(scorer.features(windows))
    missing = [i for i, key in enumerate(keys) if key not in cache]
    if missing:
        for i, feature in zip(missing, scorer.features(windows[missing]), strict=True):
            cache[keys[i]] = feature
    return [cache[key] for key in keys]


def _write(writer: VideoWriter, x: Tensor, recon: Tensor, indices: list[list[int]], side_by_side: bool) -> None:
    """Append reconstructed frames, without the copies that complete a last clip."""
    for i, clip in enumerate(indices):
        keep = len(clip) - padding_copies(clip)
        frames = tensor_to_frames(recon[i : i + 1, :, :keep])
        if side_by_side:
            frames = torch.cat([tensor_to_frames(x[i : i + 1, :, :keep]), frames], dim=2)
        writer.write(frames)


class _VideoState:
    """Per-frame values of one video as they come, then its record."""

    def __init__(self, task: VideoTask, metrics: tuple[str, ...]):
        self.task = task
        self.metrics = metrics
        self.values: dict[str, list[float]] = {m: [] for m in metrics}
        self.source_frames: list[int] = []
        self.clip_of_frame: list[int] = []
        self.padded: list[bool] = []
        self.features: list[tuple] = []
        self.fps = 0.0
        self.seconds = dict.fromkeys(TIMERS, 0.0)
        self.passes = {"encode": 0.0, "decode": 0.0, "frames": 0}  # clips mode: the model's two passes timed
        self.peak_memory: Optional[int] = None
        self.latent_shape: Optional[list[int]] = None
        self._window: tuple[list[Tensor], list[Tensor]] = ([], [])

    def add(self, scores: dict[str, Tensor], indices: list[list[int]], clip_ids: list[list[int]]) -> None:
        """Per-frame scores (n, T) of n clips (or one chunk), their source frame indices and clip numbers."""
        for i, clip in enumerate(indices):
            pad = padding_copies(clip)
            for m in self.metrics:
                self.values[m].extend(scores[m][i].tolist())
            self.source_frames.extend(clip)
            self.clip_of_frame.extend(clip_ids[i])
            self.padded.extend([False] * (len(clip) - pad) + [True] * pad)

    def add_windows(
        self,
        scorer: FrameScorer,
        x: Tensor,
        recon: Tensor,
        indices: list[list[int]],
        clip_mode: bool,
        real_features: Optional[dict] = None,
    ) -> None:
        """FVD features: the first ``fvd_frames`` of every clip, or consecutive windows of a whole video;
        ``real_features``: those of the input windows already computed, by (video, source frames)."""
        n = scorer.fvd_frames
        if clip_mode:
            fake = scorer.features(recon)
            keys = [(self.task.order, tuple(clip[:n])) for clip in indices]
            real = _input_features(scorer, x, keys, real_features)
            for i in range(x.shape[0]):
                self._feature(real[i], fake[i])
            return
        self._window[0].append(x.float().cpu())
        self._window[1].append(recon.float().cpu())
        have = sum(v.shape[2] for v in self._window[0])
        if have < n:
            return
        real, fake = torch.cat(self._window[0], dim=2), torch.cat(self._window[1], dim=2)
        while real.shape[2] >= n:
            key = (self.task.order, "window", len(self.features))  # a whole video's windows are the same for all
            feature = _input_features(scorer, real[:, :, :n], [key], real_features)[0]
            self._feature(feature, scorer.features(fake[:, :, :n])[0])
            real, fake = real[:, :, n:], fake[:, :, n:]
        self._window = ([real], [fake]) if real.shape[2] else ([], [])

    def _feature(self, real: Tensor, fake: Tensor) -> None:
        self.features.append((self.task.order, len(self.features), real.numpy(), fake.numpy()))

    def record(self) -> dict[str, Any]:
        task = self.task
        clips: dict[int, list[int]] = {}
        for pos, c in enumerate(self.clip_of_frame):
            clips.setdefault(c, []).append(pos)
        clip_rows = []
        for c, positions in clips.items():
            row: dict[str, Any] = {
                "clip": c,
                "first_frame": self.source_frames[positions[0]],
                "last_frame": self.source_frames[positions[-1]],
                "frames": len(positions),
                "padded_frames": sum(self.padded[p] for p in positions),
            }
            row.update({m: exact_mean([self.values[m][p] for p in positions]) for m in self.metrics})
            clip_rows.append(row)
        rec: dict[str, Any] = {
            "order": task.order,
            "video": task.key,
            "name": task.name,
            "fps": self.fps,
            "frames": len(self.source_frames),
            "padded_frames": sum(self.padded),
            "clips": clip_rows,
            "fvd_windows": len(self.features),
            "seconds": dict(self.seconds),
            "passes": dict(self.passes),
            "peak_memory_bytes": self.peak_memory,
            "latent_shape": self.latent_shape,
        }
        rec.update({m: exact_mean(self.values[m]) for m in self.metrics})
        rec["per_frame"] = {
            "source_frame": self.source_frames,
            "clip": self.clip_of_frame,
            "padded": self.padded,
            **{m: self.values[m] for m in self.metrics},
        }
        return rec
