"""Typed config of an evaluation run (``conf/eval.yaml``): what to load, which videos, which protocol, which metrics."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from ..config import ConfigError, TokenizerConfig, build_config
from ..errors import InputError
from ..metrics import I3D_FRAMES, I3D_SHA256
from ..models.options import InferenceOptions

MODES = ("clips", "whole")
TOKENIZER_KEYS = ("name", "model", "compression", "regularizer")
SOURCES = ("auto", "folder", "csv", "shards")
PRECISIONS = ("full", "bf16", "fp16")
#: The paper's clip lengths: 17 frames for causal models, 16 for non-causal ones.
PROTOCOL_CLIP_FRAMES = {True: 17, False: 16}


@dataclass
class EvalDataConfig:
    """Which videos: ``dir`` is a folder (searched recursively), a CSV file (paths relative to its folder, or to
    ``root``), or tar shards (``data/test-{000..009}.tar``, ``pipe:...``); ``meta`` is the original's layout: a
    CSV of paths relative to ``dir``. ``source: auto`` tells them apart by what ``dir`` and ``meta`` look like."""

    dir: Optional[str] = None
    meta: Optional[str] = None
    column: str = "videos"
    source: str = "auto"
    limit: Optional[int] = None

    def resolved_source(self) -> str:
        from ..data.sources import source_kind

        return source_kind(self.dir, self.meta, self.source)


@dataclass
class MetricsConfig:
    """Which metrics. LPIPS needs the VGG16 ImageNet weights (``vgg_path``, ``$VIDTOK_VGG16`` or the torch hub
    cache); FVD the I3D TorchScript detector (``detector_path``, ``$VIDTOK_I3D`` or the hub cache), checked
    against ``detector_sha256`` (null skips the check, e.g. for a stand-in detector)."""

    lpips: bool = True
    vgg_path: Optional[str] = None
    fvd: bool = False
    detector_path: Optional[str] = None
    detector_sha256: Optional[str] = I3D_SHA256
    fvd_frames: int = I3D_FRAMES


@dataclass
class OutputConfig:
    """What is written to ``dir``: reports always; ``reconstructions`` (mp4 per video, ``side_by_side`` puts the
    input on the left); ``figure`` (PNG) with the per-frame PSNR of up to ``figure_videos`` videos."""

    dir: Optional[str] = None
    reconstructions: bool = False
    side_by_side: bool = False
    figure: bool = True
    figure_videos: int = 8
    progress: bool = True


@dataclass
class EvalConfig:
    """An evaluation run; every field has the default of the paper's protocol where one exists.

    ``mode``: ``clips`` cuts each video (sampled at ``sample_fps``) into consecutive clips of ``clip_frames``
    frames (default 17 for causal models, 16 for non-causal ones), the last completed with copies of its final
    frame (``last_clip: repeat``) or dropped; ``whole`` reconstructs each complete video in one causal stream of
    ``chunk_frames``-frame chunks (the v1.1 long-video protocol), trimmed to ``1 + k * chunk_frames`` frames as
    the original does unless ``trim: false``. ``tile`` / ``tile_overlap``: see :class:`~vidtok.InferenceOptions`.
    """

    ckpt: Optional[str] = None
    tokenizer: Optional[str] = None
    overrides: list[str] = field(default_factory=list)
    tokenizer_config: Optional[dict] = None
    data: EvalDataConfig = field(default_factory=EvalDataConfig)
    height: int = 256
    width: int = 256
    sample_fps: Optional[float] = 30.0
    mode: str = "clips"
    chunk_frames: int = 16
    clip_frames: Optional[int] = None
    last_clip: str = "repeat"
    trim: bool = True
    pad_gen_frames: bool = False
    sample_posterior: bool = False
    seed: int = 42
    batch_size: int = 4
    precision: str = "full"
    device: Optional[str] = None
    tile: Optional[int] = None
    tile_overlap: Optional[int] = None
    threads: Optional[int] = None
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def validate(self) -> EvalConfig:
        """Checks that need no model; :meth:`check_for` adds those that do. Returns self."""
        if self.metrics.detector_sha256 == "default":
            self.metrics.detector_sha256 = I3D_SHA256
        if self.tokenizer is not None and self.tokenizer_config is not None:
            raise ConfigError("give tokenizer (a name or config file) or tokenizer_config, not both")
        if not self.data.dir:
            raise ConfigError("data.dir must name the videos: a folder, a CSV file, or tar shards (data.dir=...)")
        if self.data.source not in SOURCES:
            raise ConfigError(f"data.source must be one of {', '.join(SOURCES)}, got {self.data.source!r}")
        if self.data.limit is not None and self.data.limit < 1:
            raise ConfigError(f"data.limit must be >= 1 or null (every video), got {self.data.limit}")
        if self.mode not in MODES:
            raise ConfigError(f"mode must be 'clips' or 'whole', got {self.mode!r}")
        if self.last_clip not in ("repeat", "drop"):
            raise ConfigError(f"last_clip must be 'repeat' or 'drop', got {self.last_clip!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1 or null (torch's default), got {self.threads}")
        for name in ("height", "width", "chunk_frames", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.clip_frames is not None and self.clip_frames < 1:
            raise ConfigError(f"clip_frames must be >= 1 or null (the protocol's default), got {self.clip_frames}")
        if self.sample_fps is not None and self.sample_fps <= 0:
            raise ConfigError(f"sample_fps must be positive or null (every frame), got {self.sample_fps}")
        if self.pad_gen_frames and self.mode != "clips":
            raise ConfigError("pad_gen_frames applies to mode=clips (whole videos are one causal stream already)")
        if self.metrics.fvd and self.metrics.fvd_frames < 1:
            raise ConfigError(f"metrics.fvd_frames must be >= 1, got {self.metrics.fvd_frames}")
        if self.output.figure_videos < 0:
            raise ConfigError(f"output.figure_videos must be >= 0, got {self.output.figure_videos}")
        return self

    def clip_length(self, causal: bool) -> int:
        """Frames per clip in ``clips`` mode: ``clip_frames``, else the protocol's 17 (causal) / 16 (non-causal)."""
        return self.clip_frames if self.clip_frames is not None else PROTOCOL_CLIP_FRAMES[causal]

    def inference_options(self, config: TokenizerConfig) -> InferenceOptions:
        """The options of the tokenizer passes, checked against ``config`` (a ConfigError otherwise): the tiles,
        and in ``whole`` mode the stream's chunks (``chunk_frames`` frames, ``chunk_frames / f`` latents)."""
        options = InferenceOptions(tile=self.tile, tile_overlap=self.tile_overlap)
        if self.mode == "whole" and config.causal:
            options = options.replace(
                chunk_frames=self.chunk_frames, chunk_latents=max(1, self.chunk_frames // config.temporal_factor)
            )
        try:
            return options.checked(config)
        except InputError as err:  # refused before the first video, with the config's words
            raise ConfigError(str(err)) from None

    def check_for(self, causal: bool, temporal_factor: int, spatial_factor: int, label: str, kl: bool = True) -> None:
        """Checks against the model being evaluated (ConfigError naming the model)."""
        if self.mode == "whole" and not causal:
            raise ConfigError(
                f"mode=whole streams a whole video through a causal model; {label} is non-causal: use mode=clips "
                f"(clips of {self.clip_length(False)} frames, as the paper evaluates non-causal models)"
            )
        if self.sample_posterior and not kl:
            raise ConfigError(f"sample_posterior draws KL latents; {label} is an FSQ model (its latents are exact)")
        if self.pad_gen_frames and not causal:
            raise ConfigError(f"pad_gen_frames leads each clip with generated frames of a causal model; {label} is not")
        if self.mode == "whole" and self.chunk_frames % temporal_factor:
            raise ConfigError(
                f"chunk_frames must be a multiple of {temporal_factor} for {label}, got {self.chunk_frames}"
            )
        clip = self.clip_length(causal)
        if self.mode == "clips":
            if causal and (clip - 1) % temporal_factor:
                raise ConfigError(f"clip_frames must be 1 + k*{temporal_factor} for causal {label}, got {clip}")
            if not causal and clip % temporal_factor:
                raise ConfigError(f"clip_frames must be a multiple of {temporal_factor} for {label}, got {clip}")
            if self.metrics.fvd and clip < self.metrics.fvd_frames:
                raise ConfigError(
                    f"FVD takes the first {self.metrics.fvd_frames} frames of each clip; clips have {clip} "
                    "(raise clip_frames or lower metrics.fvd_frames)"
                )
        for name in ("height", "width"):
            if getattr(self, name) % spatial_factor:
                raise ConfigError(
                    f"{name} must be a multiple of {spatial_factor} for {label}, got {getattr(self, name)}"
                )

    @classmethod
    def from_any(cls, cfg: Any) -> EvalConfig:
        """From an EvalConfig, a dict or an OmegaConf node (``hydra`` and ``defaults`` keys ignored); unknown keys
        are refused by name."""
        if isinstance(cfg, cls):
            return cfg.validate()
        if not isinstance(cfg, dict):
            from omegaconf import OmegaConf

            cfg = OmegaConf.to_container(cfg, resolve=True)
        if not isinstance(cfg, dict):
            raise ConfigError(f"an evaluation config must be a mapping, got {cfg!r}")
        values = {k: v for k, v in cfg.items() if k not in ("hydra", "defaults")}
        # Hydra composes tokenizer=NAME (or model=/compression=/regularizer=) into top-level tokenizer keys
        composed = {k: values.pop(k) for k in TOKENIZER_KEYS if k in values and values[k] is not None}
        if composed:
            if values.get("tokenizer_config") is not None:
                raise ConfigError(f"tokenizer_config given twice: as a mapping and as composed keys {sorted(composed)}")
            values["tokenizer_config"] = composed
        if values.get("overrides") is not None:
            values["overrides"] = list(values["overrides"])
        return build_config(cls, values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
