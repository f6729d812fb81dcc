"""Evaluate a tokenizer on a set of videos: reconstruct them by the paper's protocol, score every frame, gather.

:func:`evaluate` is what ``evaluate.py`` runs; it works the same from Python (``evaluate({"ckpt": ..., "data":
{"dir": ...}})``) and under ``accelerate launch``, where every process takes every n-th video and the results are
gathered once at the end. A video's numbers never depend on the process count: clips are batched only with clips
of the same video, metrics are computed clip by clip, summary means use exactly rounded sums, and the FVD
statistics are accumulated in the videos' order.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from collections import deque
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..config import ConfigError, TokenizerConfig, official_names
from ..data.dataset import READ_ERRORS
from ..distributed import make_accelerator
from ..hub import pretrained_file
from ..inference.pipeline import reconstruct_stream
from ..io.auxiliary_weights import sha256_of
from ..io.video import VideoWriter, tensor_to_frames
from ..metrics import FeatureStats, FrameScorer, fvd_from_stats
from ..metrics.video import exact_mean, gather_objects
from ..models.loading import load_tokenizer
from .config import EvalConfig
from .videos import ListingFailure, Piece, VideoTask, clip_pieces, list_videos, prefetch, whole_pieces

log = logging.getLogger("vidtok.evaluate")

TIMERS = ("read", "model", "metrics", "write")


@dataclass
class EvalResult:
    """Everything an evaluation produced, identical on every process.

    ``summary``: means over every evaluated frame (``psnr``, ``ssim``, ``lpips``), ``fvd``, counts and throughput;
    ``videos`` / ``clips``: one record per video / clip, in the listing's order (videos carry their per-frame
    values); ``failed``: the videos that could not be evaluated and why; ``tokenizer``: what was evaluated.
    """

    summary: dict[str, Any]
    videos: list[dict[str, Any]]
    clips: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    tokenizer: dict[str, Any]
    config: dict[str, Any]
    output_dir: Optional[Path] = None
    files: list[Path] = field(default_factory=list)


def evaluate(
    config: Union[EvalConfig, dict, Any], *, accelerator: Any = None, write: bool = True, tokenizer: Any = None
) -> EvalResult:
    """Run an evaluation as ``config`` (an :class:`EvalConfig`, a dict or an OmegaConf node) says.

    Writes the reports to ``config.output.dir`` (on the main process) when ``write`` and a directory is set.
    ``tokenizer``: an already loaded tokenizer to evaluate instead of loading ``ckpt`` (its identity is then the
    config's). Raises ConfigError / CheckpointError / WeightsError / DataSourceError before any video is read.
    """
    cfg = EvalConfig.from_any(config)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    acc = accelerator or make_accelerator()
    device = torch.device(cfg.device) if cfg.device else acc.device
    if cfg.precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"precision=fp16 needs a CUDA device; found {device} (use bf16 or full)")
    tokenizer_given = tokenizer
    composed = TokenizerConfig.from_any(cfg.tokenizer_config) if cfg.tokenizer_config else None
    official = composed.name if composed is not None else cfg.tokenizer
    if tokenizer is None and not cfg.ckpt and official not in official_names():
        raise ConfigError(
            "ckpt must name the checkpoint to evaluate, or tokenizer=<official name> its published weights"
        )
    listing = list_videos(cfg.data, acc.process_index, acc.num_processes)
    if cfg.data.resolved_source() != "shards":  # listed before the model loads: a wrong path fails at once
        listing = list(listing)
    if tokenizer is None:
        if not cfg.ckpt:
            cfg.ckpt = str(pretrained_file(official))  # the file is then identified (SHA-256) like any other
        tokenizer = load_tokenizer(cfg.tokenizer, cfg.ckpt, cfg.overrides, device=device, config=composed)
    tok = tokenizer.to(device).eval()
    tc = tok.config
    cfg.check_for(tc.causal, tc.temporal_factor, tc.spatial_factor, tok._label(), kl=not tc.is_discrete)
    try:
        tok._tile_args(cfg.tile, cfg.tile_overlap)
    except ValueError as err:  # InputError included: refused now, not at the first video
        raise ConfigError(str(err)) from None
    scorer = FrameScorer(
        lpips=cfg.metrics.lpips,
        vgg_path=cfg.metrics.vgg_path,
        fvd=cfg.metrics.fvd,
        detector_path=cfg.metrics.detector_path,
        device=device,
        detector_sha256=cfg.metrics.detector_sha256,
        fvd_frames=cfg.metrics.fvd_frames,
        ssim_downsample=True,
    )
    out_dir = _output_dir(cfg, acc) if write else None
    identity = tokenizer_identity(tok, cfg, from_file=tokenizer_given is None)
    runner = _VideoRunner(tok, scorer, cfg, device, out_dir)

    start = time.perf_counter()
    bar = tqdm(
        listing,
        total=len(listing) if isinstance(listing, list) else None,
        desc=f"evaluate [{acc.process_index}]" if acc.num_processes > 1 else "evaluate",
        unit="video",
        disable=not cfg.output.progress,
        position=acc.process_index,
    )
    records, failed, features = [], [], []
    with torch.inference_mode():
        for task in bar:
            if isinstance(task, ListingFailure):
                failed.append({"order": task.order, "video": task.key, "name": task.name, "reason": task.reason})
                continue
            try:
                record, feats = runner.run(task)
            except UnreadableVideo as err:
                log.warning("skipping %s: %s", task.name, err)
                failed.append({"order": task.order, "video": task.key, "name": task.name, "reason": str(err)})
                continue
            records.append(record)
            features.extend(feats)
            bar.set_postfix(psnr=f"{record['psnr']:.2f}")
    bar.close()
    elapsed = time.perf_counter() - start

    parts = gather_objects((records, failed, features, elapsed))
    records = sorted((r for p in parts for r in p[0]), key=lambda r: r["order"])
    failed = sorted((f for p in parts for f in p[1]), key=lambda f: f["order"])
    features = sorted((f for p in parts for f in p[2]), key=lambda f: f[:2])
    wall = max(p[3] for p in parts)
    summary = summarize(records, failed, features, scorer, wall, acc.num_processes)
    clips = [dict(c, video=r["video"]) for r in records for c in r["clips"]]
    result = EvalResult(summary, records, clips, failed, identity, cfg.to_dict(), out_dir)
    if out_dir is not None and acc.is_main_process:
        from .report import write_reports

        result.files = write_reports(result, out_dir, figure=cfg.output.figure, figure_videos=cfg.output.figure_videos)
    acc.wait_for_everyone()
    return result


class UnreadableVideo(Exception):
    """A video could not be read as the protocol needs (raised from the reader only: model errors propagate)."""


class _VideoRunner:
    """Reconstructs and scores one video at a time."""

    def __init__(self, tok: Any, scorer: FrameScorer, cfg: EvalConfig, device: torch.device, out_dir: Optional[Path]):
        self.tok, self.scorer, self.cfg, self.device, self.out_dir = tok, scorer, cfg, device, out_dir
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
        self.autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
        self.f = tok.config.temporal_factor

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def run(self, task: VideoTask) -> tuple[dict[str, Any], list[tuple]]:
        """The video's record and its FVD features ``(order, window, real, fake)``. A read error raises
        :class:`UnreadableVideo`, and then nothing of the video is kept (a half-written reconstruction is removed)."""
        cfg = self.cfg
        size = (cfg.height, cfg.width)
        if cfg.mode == "whole":
            pieces = whole_pieces(
                task, sample_fps=cfg.sample_fps, size=size, chunk_frames=cfg.chunk_frames, trim=cfg.trim
            )
        else:
            group = 1 if cfg.pad_gen_frames else cfg.batch_size
            clip = cfg.clip_length(self.tok.config.causal)
            pieces = clip_pieces(
                task, sample_fps=cfg.sample_fps, size=size, clip_frames=clip, last=cfg.last_clip, group=group
            )
        state = _VideoState(task, self.scorer.metric_names)
        self.generator = None
        if cfg.sample_posterior:  # one stream per video: the draws do not depend on which process runs it
            self.generator = torch.Generator(self.device).manual_seed(cfg.seed * 1_000_003 + task.order)
        writer: Optional[VideoWriter] = None
        reader = prefetch(pieces)
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
                    state.add_windows(self.scorer, x, recon, clip_mode=cfg.mode == "clips")
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
        return state.record(), state.features

    def _options(self) -> dict[str, Any]:
        cfg = self.cfg
        options: dict[str, Any] = {"tile": cfg.tile, "tile_overlap": cfg.tile_overlap}
        if cfg.sample_posterior:
            options.update(sample=True, generator=self.generator)
        return options

    def _next_piece(self, reader, state: _VideoState) -> Optional[Piece]:
        t0 = time.perf_counter()
        try:
            piece = next(reader, None)
        except MemoryError:
            raise
        except Exception as err:  # the reader thread only decodes and resizes: whatever it raises is the video's
            reason = str(err) if isinstance(err, READ_ERRORS) else f"{type(err).__name__}: {err}"
            raise UnreadableVideo(reason) from err
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
                    recon = tok(x, **self._options())
            ids = [[clip_no + i] * len(clip) for i, clip in enumerate(piece.indices)]
            clip_no += x.shape[0]
            yield x, recon, piece.indices, ids

    def _whole(self, reader, state: _VideoState):
        """(inputs, reconstructions, [source indices], [chunk numbers]) as the causal stream returns frames."""
        cfg = self.cfg
        indices: deque[tuple[int, int]] = deque()

        def chunks():
            chunk_no = 0
            while (piece := self._next_piece(reader, state)) is not None:
                indices.extend((i, chunk_no) for i in piece.indices[0])
                chunk_no += 1
                yield piece.video.to(self.device)

        stream = reconstruct_stream(
            self.tok,
            chunks(),
            chunk_frames=cfg.chunk_frames,
            chunk_latents=cfg.chunk_frames // self.f,
            **self._options(),
        )
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


def _write(writer: VideoWriter, x: Tensor, recon: Tensor, indices: list[list[int]], side_by_side: bool) -> None:
    """Append reconstructed frames, without the copies that complete a last clip."""
    for i, clip in enumerate(indices):
        keep = len(clip) - _padding(clip)
        frames = tensor_to_frames(recon[i : i + 1, :, :keep])
        if side_by_side:
            frames = torch.cat([tensor_to_frames(x[i : i + 1, :, :keep]), frames], dim=2)
        writer.write(frames)


def _padding(indices: list[int]) -> int:
    """How many trailing entries repeat the one before them (copies completing a last clip)."""
    n = 0
    while n + 1 < len(indices) and indices[-1 - n] == indices[-2 - n]:
        n += 1
    return n


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
        self._window: tuple[list[Tensor], list[Tensor]] = ([], [])

    def add(self, scores: dict[str, Tensor], indices: list[list[int]], clip_ids: list[list[int]]) -> None:
        """Per-frame scores (n, T) of n clips (or one chunk), their source frame indices and clip numbers."""
        for i, clip in enumerate(indices):
            pad = _padding(clip)
            for m in self.metrics:
                self.values[m].extend(scores[m][i].tolist())
            self.source_frames.extend(clip)
            self.clip_of_frame.extend(clip_ids[i])
            self.padded.extend([False] * (len(clip) - pad) + [True] * pad)

    def add_windows(self, scorer: FrameScorer, x: Tensor, recon: Tensor, clip_mode: bool) -> None:
        """FVD features: the first ``fvd_frames`` of every clip, or consecutive windows of a whole video."""
        n = scorer.fvd_frames
        if clip_mode:
            real, fake = scorer.features(x), scorer.features(recon)
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
            self._feature(scorer.features(real[:, :, :n])[0], scorer.features(fake[:, :, :n])[0])
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
        }
        rec.update({m: exact_mean(self.values[m]) for m in self.metrics})
        rec["per_frame"] = {
            "source_frame": self.source_frames,
            "clip": self.clip_of_frame,
            "padded": self.padded,
            **{m: self.values[m] for m in self.metrics},
        }
        return rec


def summarize(
    records: list[dict], failed: list[dict], features: list[tuple], scorer: FrameScorer, wall: float, processes: int
) -> dict[str, Any]:
    """The headline numbers: every metric's mean over all evaluated frames (each frame weighs the same, as in the
    original's evaluation), FVD over all windows, counts, and where the time went."""
    summary: dict[str, Any] = {
        "videos": len(records),
        "failed": len(failed),
        "clips": sum(len(r["clips"]) for r in records),
        "frames": sum(r["frames"] for r in records),
    }
    for m in scorer.metric_names:
        summary[m] = exact_mean([v for r in records for v in r["per_frame"][m]])
    if scorer.detector is not None:
        real, fake = FeatureStats(), FeatureStats()
        for _, _, fr, ff in features:
            real.update(fr[None])
            fake.update(ff[None])
        summary["fvd"] = fvd_from_stats(real, fake)
        summary["fvd_clips"] = len(features)
    seconds = {k: math.fsum(r["seconds"][k] for r in records) for k in TIMERS}
    busy = math.fsum(seconds.values())
    summary["seconds"] = wall
    summary["processes"] = processes
    summary["videos_per_second"] = len(records) / wall if wall > 0 else math.nan
    summary["time_share"] = {k: (v / busy if busy > 0 else math.nan) for k, v in seconds.items()}
    return summary


def tokenizer_identity(tok: Any, cfg: EvalConfig, from_file: bool = True) -> dict[str, Any]:
    """What was evaluated: the tokenizer's name and full config, the checkpoint file and its SHA-256 (for a
    tokenizer passed in from Python, ``from_file=False``: a SHA-256 of its weights instead)."""
    import vidtok

    info: dict[str, Any] = {
        "name": tok.config.name,
        "causal": tok.config.causal,
        "compression": f"{tok.config.temporal_factor}x{tok.config.spatial_factor}x{tok.config.spatial_factor}",
        "regularizer": tok.config.regularizer.kind,
        "latent_channels": tok.config.latent_channels,
        "parameters": sum(p.numel() for p in tok.parameters()),
        "vidtok_version": vidtok.__version__,
        "torch_version": torch.__version__,
    }
    if not from_file:
        digest = hashlib.sha256()
        for key, value in sorted(tok.state_dict().items()):
            digest.update(key.encode())
            digest.update(value.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        info["ckpt"] = None
        info["weights_sha256"] = digest.hexdigest()
    elif cfg.ckpt:
        path = Path(cfg.ckpt)
        info["ckpt"] = str(path.resolve())
        if path.is_file():
            info["ckpt_bytes"] = path.stat().st_size
            info["ckpt_sha256"] = sha256_of(path)
    from dataclasses import asdict

    info["config"] = asdict(tok.config)
    return info


def _output_dir(cfg: EvalConfig, acc: Any) -> Optional[Path]:
    """The main process's output directory, the same on every process."""
    out = [cfg.output.dir]
    if acc.num_processes > 1:
        torch.distributed.broadcast_object_list(out, src=0)
    if out[0] is None:
        return None
    path = Path(out[0])
    path.mkdir(parents=True, exist_ok=True)
    return path


def evaluate_from_hydra(cfg: Any) -> float:
    """Entry point of evaluate.py: runs :func:`evaluate`, prints the summary table, exits with one line on a
    config, checkpoint, weights or data error. Returns the PSNR."""
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    from ..data import DataSourceError
    from ..distributed import LaunchError, drop_stray_hydra_dir, hydra_output_dir, reset_accelerate_state
    from ..errors import InputError
    from ..io.auxiliary_weights import WeightsError
    from ..io.weight_files import CheckpointError
    from .report import format_summary

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    hydra_dir = hydra_output_dir()
    try:
        try:
            raw = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        except MissingMandatoryValue as err:
            raise ConfigError(f"{err.full_key} must be given (e.g. ckpt=model.ckpt data.dir=videos/)") from None
        except OmegaConfBaseException as err:
            raise ConfigError(str(err).splitlines()[0]) from None
        if raw.get("output", {}).get("dir") is None and hydra_dir is not None:
            raw.setdefault("output", {})["dir"] = str(hydra_dir)
        result = evaluate(raw)
    except (ConfigError, CheckpointError, WeightsError, DataSourceError, InputError, LaunchError) as err:
        raise SystemExit(f"cannot evaluate: {err}") from None
    finally:
        reset_accelerate_state()  # several jobs of a -m sweep run in one process: each sets up afresh
    if result.output_dir is not None:
        drop_stray_hydra_dir(hydra_dir, result.output_dir)
    if int(os.environ.get("RANK", "0")) == 0:
        print(format_summary(result))
    return float(result.summary.get("psnr", math.nan))
