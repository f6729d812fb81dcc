"""Typed config of an evaluation run (``conf/eval.yaml``): what to load, which videos, which protocol, which metrics."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Optional

from ..composition import official_names
from ..config import TokenizerConfig
from ..data.videos import Cutting, VideoListConfig
from ..errors import ConfigError
from ..inference.diffusers_vaes import PREFIX as DIFFUSERS_PREFIX
from ..inference.job import TokenizerJobConfig, VideoJobConfig
from ..metrics import I3D_FRAMES, I3D_SHA256

#: The ``data`` section of an evaluation (the same as an encoding job's).
EvalDataConfig = VideoListConfig


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
class TokenizerEntry:
    """One tokenizer of a comparison (an item of ``tokenizers=[...]``): a VidTok ``tokenizer`` (an official name or
    a config file) and/or ``ckpt`` (what ``vidtok.load_tokenizer`` takes), or a ``diffusers`` model (a Hub id or a
    local folder; ``subfolder`` where it sits in a pipeline repository; ``tiling`` / ``slicing`` switch the model's
    own memory savers, null: the class's default). ``name``: its row in the report (default: what names it)."""

    tokenizer: Optional[str] = None
    ckpt: Optional[str] = None
    overrides: list[str] = field(default_factory=list)
    diffusers: Optional[str] = None
    subfolder: Optional[str] = None
    tiling: Optional[bool] = None
    slicing: Optional[bool] = None
    name: Optional[str] = None

    @classmethod
    def parse(cls, item: Any) -> TokenizerEntry:
        """An item as written: ``diffusers:<id or folder>``, an official name, a checkpoint (file, folder, Hub id),
        or a mapping of the fields."""
        if isinstance(item, str):
            if item.startswith(DIFFUSERS_PREFIX):
                return cls(diffusers=item[len(DIFFUSERS_PREFIX) :])
            return cls(tokenizer=item) if item in official_names() else cls(ckpt=item)
        if not isinstance(item, dict):
            raise ConfigError(
                f"tokenizers: each item is a name, a checkpoint, diffusers:<id> or a mapping; got {item!r}"
            )
        from ..config_loader import build_config

        entry = build_config(cls, item, "tokenizers[]")
        if entry.diffusers is not None and (entry.tokenizer or entry.ckpt or entry.overrides):
            raise ConfigError(f"tokenizers: {item} names a diffusers model and VidTok keys together")
        if entry.diffusers is None and (entry.subfolder or entry.tiling is not None or entry.slicing is not None):
            raise ConfigError(f"tokenizers: {item}: subfolder / tiling / slicing apply to diffusers models")
        if entry.diffusers is None and not (entry.tokenizer or entry.ckpt):
            raise ConfigError(f"tokenizers: {item} names no tokenizer (tokenizer, ckpt or diffusers)")
        return entry

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.diffusers is not None:
            return self.diffusers.rstrip("/")
        return str(self.ckpt or self.tokenizer)

    def load(self, device: Any) -> tuple[Any, Optional[str]]:
        """The model on ``device``, in eval mode, and for VidTok the weights file it was read from (None: a
        diffusers model, loaded in float32 like VidTok's: ``precision`` is autocast around the passes)."""
        if self.diffusers is not None:
            from ..inference.diffusers_vaes import load_diffusers_tokenizer

            tok = load_diffusers_tokenizer(
                self.diffusers, device, subfolder=self.subfolder, tiling=self.tiling, slicing=self.slicing,
                name=self.label,
            )  # fmt: skip
            return tok, None
        job = TokenizerJobConfig(ckpt=self.ckpt, tokenizer=self.tokenizer, overrides=list(self.overrides))
        tok = job.load_tokenizer(device, "evaluate")
        return tok, job.ckpt


@dataclass
class EvalConfig(VideoJobConfig):
    """An evaluation run; every field has the default of the paper's protocol where one exists.

    The shared keys (tokenizer, ``data``, frames, ``mode``, clips and chunks, precision, tiles) are
    [`VideoJobConfig`][vidtok.inference.job.VideoJobConfig]'s; ``whole`` mode is the v1.1 long-video protocol,
    trimmed to ``1 + k * chunk_frames`` frames as the original does unless ``trim: false``. ``pad_gen_frames``:
    causal clips led by the previous clip's last f-1 generated frames; ``sample_posterior`` / ``seed``: KL models
    decode draws from the posterior (one generator per video).

    ``tokenizers``: several tokenizers side by side ([`compare`][vidtok.evaluation.compare]; items as
    [`TokenizerEntry.parse`][] takes them) instead of ``ckpt`` / ``tokenizer``; ``reference``: a tokenizer (an item
    of the same kind) whose latents of every clip each evaluated tokenizer's are measured against (latent drift);
    ``benchmark``: a named set (``conf/benchmark/``) whose files ``data.dir`` must hold as listed.
    """

    trim: bool = True
    pad_gen_frames: bool = False
    sample_posterior: bool = False
    seed: int = 42
    tokenizers: list[Any] = field(default_factory=list)
    reference: Optional[Any] = None
    benchmark: Optional[str] = None
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def validate(self) -> EvalConfig:
        """Checks that need no model; [`check_for`][] adds those that do. Returns self."""
        if self.metrics.detector_sha256 == "default":
            self.metrics.detector_sha256 = I3D_SHA256
        super().validate()
        if self.tokenizers:
            if self.ckpt or self.tokenizer or self.tokenizer_config or self.overrides:
                raise ConfigError(
                    "give tokenizers=[...] (a comparison) or ckpt= / tokenizer= (one tokenizer), not both"
                )
            labels = [e.label for e in self.entries()]
            twice = sorted({x for x in labels if labels.count(x) > 1})
            if twice:
                raise ConfigError(f"tokenizers: {', '.join(twice)} named twice (give each a name: {{..., name: X}})")
        if self.benchmark is not None:
            from .benchmarks import load_benchmark

            load_benchmark(self.benchmark)
            if self.data.meta or self.data.resolved_source() != "folder":
                raise ConfigError(f"benchmark={self.benchmark} reads the set's folder: data.dir only (no CSV, shards)")
        if self.reference is not None:
            self.reference_entry()
            if self.mode != "clips" or self.pad_gen_frames:
                raise ConfigError("reference= measures latent drift clip by clip: mode=clips without pad_gen_frames")
        if self.pad_gen_frames and self.mode != "clips":
            raise ConfigError("pad_gen_frames applies to mode=clips (whole videos are one causal stream already)")
        if self.metrics.fvd and self.metrics.fvd_frames < 1:
            raise ConfigError(f"metrics.fvd_frames must be >= 1, got {self.metrics.fvd_frames}")
        if self.output.figure_videos < 0:
            raise ConfigError(f"output.figure_videos must be >= 0, got {self.output.figure_videos}")
        return self

    def listed_files(self) -> None:
        """With ``benchmark``: check ``data.dir`` against the set's list (DataSourceError naming every missing or
        different file) and take exactly its files."""
        if self.benchmark is not None:
            from .benchmarks import check_benchmark, load_benchmark

            self.data.files = check_benchmark(load_benchmark(self.benchmark), self.data.dir)

    def reference_entry(self) -> Optional[TokenizerEntry]:
        """The tokenizer whose latents every evaluated one is measured against (``reference``), parsed."""
        return TokenizerEntry.parse(self.reference) if self.reference is not None else None

    @property
    def reference_label(self) -> Optional[str]:
        entry = self.reference_entry()
        return entry.label if entry is not None else None

    def check_reference(self, config: Any, reference: Any, label: str) -> None:
        """A tokenizer (``config``) and the reference's latents must have one shape for every clip."""

        def described(c: Any) -> dict[str, str]:
            return {
                "compression": f"{c.temporal_factor}x{c.spatial_factor}x{c.spatial_factor}",
                "channels": str(c.latent_channels),
                "clips": c.frame_rule.describe() + " frames",
                "latents": "discrete codes" if c.is_discrete else "continuous",
            }

        mine, theirs = described(config), described(reference)
        differ = [f"{k} {theirs[k]} vs {mine[k]}" for k in mine if mine[k] != theirs[k]]
        if differ:
            raise ConfigError(
                f"reference {reference.label}'s latents cannot be compared with {label}'s: {'; '.join(differ)}"
            )

    def entries(self) -> list[TokenizerEntry]:
        """The tokenizers of a comparison, parsed."""
        return [TokenizerEntry.parse(item) for item in self.tokenizers]

    def cutting(self, causal: bool) -> Cutting:
        """The shared cut with ``trim``; one clip per piece with ``pad_gen_frames`` (each clip is led by the
        reconstruction of the one before)."""
        group = 1 if self.pad_gen_frames else self.batch_size
        return replace(super().cutting(causal), group=group, trim=self.trim)

    def check_for(self, config: TokenizerConfig) -> None:
        """Checks against the model being evaluated (ConfigError naming the model)."""
        label = config.label
        if self.sample_posterior and config.is_discrete:
            raise ConfigError(f"sample_posterior draws KL latents; {label} is an FSQ model (its latents are exact)")
        if self.pad_gen_frames and not config.causal:
            raise ConfigError(f"pad_gen_frames leads each clip with generated frames of a causal model; {label} is not")
        if self.pad_gen_frames and not getattr(config, "streams", True):
            raise ConfigError(f"pad_gen_frames needs vidtok's context pass; {label} is a diffusers model")
        super().check_for(config)
        clip = self.clip_length(config.frame_rule.first == 1)
        if self.mode == "clips" and self.metrics.fvd and clip < self.metrics.fvd_frames:
            raise ConfigError(
                f"FVD takes the first {self.metrics.fvd_frames} frames of each clip; clips have {clip} "
                "(raise clip_frames or lower metrics.fvd_frames)"
            )
