"""Typed config of a dataset encoding run (``conf/encode.yaml``): the shared job keys plus where and how the
latent shards are written."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

from ..config import TokenizerConfig
from ..data.sizing import FrameSizing, parse_size
from ..data.transforms import uint8_resized_clip
from ..data.videos import Cutting
from ..errors import ConfigError
from ..inference.job import VideoJobConfig


@dataclass
class EncodeOutputConfig:
    """Where the shards go (``dir``, required) and their limits: at most ``max_count`` samples and about
    ``max_bytes`` per shard (a video's samples never straddle two shards). ``indices``: FSQ models store integer
    indices (the smallest integer type of the codebook) instead of latents. ``posterior``: KL models store the
    posterior's log-variance (``logvar``) beside its mean, so that a trainer can draw latents from it.
    ``stats_only``: encode and commit the statistics (``stats.json``) without writing any sample (with
    ``data.limit``: the statistics of a sample of a dataset)."""

    dir: Optional[str] = None
    max_count: int = 1000
    max_bytes: int = 1 << 30
    indices: bool = False
    posterior: bool = False
    stats_only: bool = False
    progress: bool = True


@dataclass
class EncodeConfig(VideoJobConfig):
    """A dataset encoding run: every video of ``data`` into latents (or FSQ indices), one sample per clip
    (``mode: clips``) or per video (``mode: whole``, one causal stream: v1.1 models for any length).
    ``batch_size`` clips per model call, from several videos where one has fewer. ``workers``: DataLoader
    processes decoding and resizing videos beside the model (0: a background thread).
    ``last_clip`` defaults to ``drop`` here: a generative model should not learn from repeated frames.

    ``resize``: ``crop`` (every video covers ``height`` x ``width``, centre-cropped), ``aspect`` (the shorter side
    becomes ``short_side``, the longer one keeps the aspect ratio rounded down to the model's spatial factor) or
    ``buckets`` (the nearest aspect ratio of ``buckets``, sizes as ``256x448``); see
    [`FrameSizing`][vidtok.data.sizing.FrameSizing]. ``max_frames``: at most that many sampled frames per video."""

    last_clip: str = "drop"
    resize: str = "crop"
    short_side: Optional[int] = None
    buckets: list = field(default_factory=list)
    max_frames: Optional[int] = None
    batch_size: int = 8
    workers: int = 0
    output: EncodeOutputConfig = field(default_factory=EncodeOutputConfig)

    def validate(self) -> EncodeConfig:
        super().validate()
        if not self.output.dir:
            raise ConfigError("output.dir must name the folder the shards are written to (output.dir=...)")
        if self.output.max_count < 1 or self.output.max_bytes < 1:
            raise ConfigError(
                f"output.max_count and output.max_bytes must be >= 1, got {self.output.max_count} and "
                f"{self.output.max_bytes}"
            )
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"max_frames must be >= 1 or null (every frame), got {self.max_frames}")
        self.buckets = [list(parse_size(size, "each of buckets")) for size in self.buckets]
        self.sizing(1)
        return self

    def sizing(self, multiple: int) -> FrameSizing:
        """How each video's size is chosen, checked for a model of spatial factor ``multiple``."""
        buckets = tuple(tuple(size) for size in self.buckets)
        return FrameSizing(self.resize, (self.height, self.width), self.short_side, multiple, buckets).checked()

    def cutting(self, causal: bool, multiple: int = 1) -> Cutting:
        """The shared cut, frames resized on uint8 as ``vidtok encode`` reads a file (so that a sample equals
        ``vidtok encode`` of the same video), each video sized as ``resize`` says."""
        cut = super().cutting(causal)
        return replace(cut, to_clip=uint8_resized_clip, sizing=self.sizing(multiple), max_frames=self.max_frames)

    def check_for(self, config: TokenizerConfig) -> None:
        super().check_for(config)
        if self.output.indices and not config.is_discrete:
            raise ConfigError(f"output.indices stores FSQ indices; {config.label} is a KL model (use latents)")
        try:
            self.sizing(config.spatial_factor)
        except ConfigError as err:
            raise ConfigError(f"{err} for {config.label}") from None
        if self.mode == "clips" and self.max_frames is not None and self.max_frames < self.clip_length(config.causal):
            raise ConfigError(
                f"max_frames={self.max_frames} leaves no clip of {self.clip_length(config.causal)} frames (mode=clips)"
            )
        if self.output.posterior and config.is_discrete:
            raise ConfigError(
                f"output.posterior stores a KL posterior's log-variance; {config.label} is an FSQ model (deterministic)"
            )

    def job_keys(self) -> dict:
        """What decides the samples' content (compared when a run resumes into an existing output.dir)."""
        keys = self.to_dict()
        for name in ("device", "threads", "workers", "batch_size"):
            keys.pop(name)
        keys["output"] = {"indices": self.output.indices}
        for name in ("posterior", "stats_only"):  # (absent when off: outputs of earlier versions resume)
            if getattr(self.output, name):
                keys["output"][name] = True
        defaults = {"resize": "crop", "short_side": None, "buckets": [], "max_frames": None}
        for name, default in defaults.items():  # (absent when unused: outputs of earlier versions resume)
            if keys[name] == default:
                keys.pop(name)
        keys.pop("ckpt")  # the checkpoint is compared by its SHA-256 (the identity)
        return keys
