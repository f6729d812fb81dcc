"""Typed config of a decoding run (``conf/decode.yaml``): the tokenizer keys every job shares, what to decode, and
where the videos go."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..config import TokenizerConfig
from ..defaults import CHUNK_LATENTS, protocol_clip_frames
from ..errors import ConfigError, InputError
from ..inference.job import TokenizerJobConfig
from ..models.options import InferenceOptions
from .inputs import KINDS, RawTensors

#: Frames per second of videos decoded from raw tensors that say nothing of their rate (``fps`` unset).
RAW_FPS = 24.0


@dataclass
class DecodeInputConfig:
    """What to decode: ``dir`` is an ``encode.py`` output folder, tar shards (``latents/part-{...}.tar``), a folder
    of tensor files (searched recursively) or one file; ``limit``: only the first N entries. Raw tensors (no token
    file metadata): ``kind`` (``auto``: integer tensors are FSQ indices, floating ones latents) and ``key`` (the
    tensor's name in a file of several; default ``latents`` / ``indices`` / ``z`` / ``samples`` / the only one)."""

    dir: Optional[str] = None
    limit: Optional[int] = None
    kind: str = "auto"
    key: Optional[str] = None

    def check(self) -> None:
        if not self.dir:
            raise ConfigError("data.dir must name the latents: an encode.py output, tar shards or tensor files")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"data.limit must be >= 1 or null (every entry), got {self.limit}")
        if self.kind not in KINDS:
            raise ConfigError(f"data.kind must be one of {', '.join(KINDS)}, got {self.kind!r}")


@dataclass
class DecodeOutputConfig:
    """``dir``: one mp4 per sample, named by its key (``b/v1_mp4/00000`` -> ``b/v1_mp4/00000.mp4``), with
    ``failed.jsonl`` (entries that gave no video, with the reason) and ``run.json``."""

    dir: Optional[str] = None
    progress: bool = True


@dataclass
class DecodeConfig(TokenizerJobConfig):
    """A decoding run: every entry of ``data`` into an mp4 in ``output.dir``, resumable, split over processes.

    The tokenizer: ``ckpt`` / ``tokenizer`` / ``model.*`` as in ``encode.py``; with none, the one the inputs name
    (an ``encode.py`` output's checkpoint, or a token file's official name: its published weights). ``stats``: a
    ``stats.json`` (or the folder holding it) whose moments undo the latents' normalization, per channel or with
    the global figures (``normalize``). ``fps``: the videos' rate (default: each input's own; raw tensors
    ``RAW_FPS``). ``clip_frames``: frames of each independent clip of a non-causal model for raw tensors (default
    the paper's 16). ``chunk_latents``: latent frames per decoder pass of a causal stream (memory is bounded by it,
    whatever the length).
    """

    data: DecodeInputConfig = field(default_factory=DecodeInputConfig)
    stats: Optional[str] = None
    normalize: str = "channel"
    fps: Optional[float] = None
    clip_frames: Optional[int] = None
    chunk_latents: int = CHUNK_LATENTS
    output: DecodeOutputConfig = field(default_factory=DecodeOutputConfig)

    def validate(self) -> DecodeConfig:
        super().validate()
        self.data.check()
        if not self.output.dir:
            raise ConfigError("output.dir must name the folder the videos are written to (output.dir=...)")
        if self.normalize not in ("channel", "global"):
            raise ConfigError(
                f"normalize must be 'channel' or 'global' (how stats were applied), got {self.normalize!r}"
            )
        if self.fps is not None and self.fps <= 0:
            raise ConfigError(f"fps must be positive or null (each input's own), got {self.fps}")
        for name in ("clip_frames", "chunk_latents"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")
        return self

    def names_tokenizer(self) -> bool:
        """Whether the keys name the tokenizer (else the inputs do)."""
        return bool(self.ckpt or self.tokenizer or self.tokenizer_config)

    def raw_tensors(self, config: Optional[TokenizerConfig] = None) -> RawTensors:
        """How raw tensors are read (the clip length checked against ``config`` when given)."""
        clip = self.clip_frames or protocol_clip_frames(False)
        if config is not None and not config.causal and clip % config.temporal_factor:
            raise ConfigError(
                f"clip_frames must be a multiple of {config.temporal_factor} for {config.label}, got {clip}"
            )
        return RawTensors(self.data.kind, self.data.key, self.fps or RAW_FPS, clip)

    def inference_options(self, config: TokenizerConfig) -> InferenceOptions:
        """The decoder's options, checked against ``config`` (a ConfigError otherwise)."""
        chunks = self.chunk_latents if config.causal else None  # non-causal models decode whole clips
        options = InferenceOptions(tile=self.tile, tile_overlap=self.tile_overlap, chunk_latents=chunks)
        try:
            return options.checked(config)
        except InputError as err:
            raise ConfigError(str(err)) from None

    def job_keys(self) -> dict:
        """What decides the videos' content (compared when a run resumes into an existing output.dir)."""
        keys = self.to_dict()
        for name in ("device", "threads", "ckpt", "output"):
            keys.pop(name)
        keys["data"].pop("limit")
        return keys
