"""Typed config of a dataset encoding run (``conf/encode.yaml``): the shared job keys plus where and how the
latent shards are written."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

from ..config import TokenizerConfig
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
    ``last_clip`` defaults to ``drop`` here: a generative model should not learn from repeated frames."""

    last_clip: str = "drop"
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
        return self

    def cutting(self, causal: bool) -> Cutting:
        """The shared cut, frames resized on uint8 as ``vidtok encode`` reads a file (so that a sample equals
        ``vidtok encode`` of the same video)."""
        return replace(super().cutting(causal), to_clip=uint8_resized_clip)

    def check_for(self, config: TokenizerConfig) -> None:
        super().check_for(config)
        if self.output.indices and not config.is_discrete:
            raise ConfigError(f"output.indices stores FSQ indices; {config.label} is a KL model (use latents)")
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
        keys.pop("ckpt")  # the checkpoint is compared by its SHA-256 (the identity)
        return keys
