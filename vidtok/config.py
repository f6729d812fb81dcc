"""Typed configuration of a tokenizer (composed from the Hydra groups in ``conf/`` by [`vidtok.composition`][]).

A tokenizer is described by three independent choices plus an optional preset name:

* ``model``: causal or not, the temporal padding and upsampling flavour (v1.0 vs v1.1) and widths;
* ``compression``: the temporal and spatial factors and the levels of the U-shaped network that resample;
* ``regularizer``: KL (continuous, ``channels`` latent channels) or FSQ (discrete, ``levels``).

Every field is validated by [`TokenizerConfig.validate`][], so a bad combination fails when the
config is built, with a message that names the field, not deep inside a forward pass.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import DictConfig

from .config_loader import build_config
from .errors import ConfigError

TEMPORAL_PADS = ("zeros", "replicate")
TEMPORAL_UPSAMPLES = ("nearest", "linear")
REGULARIZERS = ("kl", "fsq")


@dataclass(frozen=True)
class LengthRule:
    """Which lengths (frames, or pixels of a side) a tokenizer takes: ``first + k * step`` for k >= 0 (``first`` 0:
    the positive multiples of ``step``; ``step`` 0: exactly ``first``)."""

    first: int
    step: int

    def accepts(self, n: int) -> bool:
        if self.step == 0:
            return n == self.first
        if self.first == 0:
            return n > 0 and n % self.step == 0
        return n >= self.first and (n - self.first) % self.step == 0

    def describe(self) -> str:
        if self.step == 0:
            return f"exactly {self.first}"
        return f"a multiple of {self.step}" if self.first == 0 else f"{self.first} + k*{self.step}"

    def near(self, n: int) -> list[int]:
        """The accepted lengths next to ``n`` (below and above), for messages."""
        if self.step == 0:
            return [self.first]
        base = self.first if self.first else self.step
        k = max(0, (n - base) // self.step)
        return [v for v in (base + k * self.step, base + (k + 1) * self.step) if v > 0 and v != n]


@dataclass
class ModelConfig:
    """Architecture switches shared by encoder and decoder.

    ``temporal_pad`` is how causal convolutions fill the frames before the first one: ``zeros``
    (VidTok v1.0) or copies of the first frame, ``replicate`` (v1.1). ``temporal_upsample`` is how the
    decoder doubles the frame rate: ``nearest`` (v1.0) or ``linear`` interpolation that keeps the
    first frame group apart (v1.1, the original's ``trilinear``).
    """

    causal: bool = True
    temporal_pad: str = "zeros"
    temporal_upsample: str = "nearest"
    ch: int = 128
    num_res_blocks: int = 2
    in_channels: int = 3
    dropout: float = 0.0
    gradient_checkpointing: bool = False


@dataclass
class CompressionConfig:
    """Compression factors and where in the network they happen.

    Levels index ``ch_mult``: the encoder halves H and W after level ``i`` for ``i`` in
    ``spatial_down`` and halves T there too for ``i`` in ``temporal_down``; the decoder mirrors it
    with ``spatial_up`` / ``temporal_up`` (visited from the deepest level up).
    """

    temporal: int = 4
    spatial: int = 8
    ch_mult: list[int] = field(default_factory=lambda: [1, 2, 4, 4])
    spatial_down: list[int] = field(default_factory=lambda: [0, 1, 2])
    temporal_down: list[int] = field(default_factory=lambda: [1, 2])
    spatial_up: list[int] = field(default_factory=lambda: [1, 2, 3])
    temporal_up: list[int] = field(default_factory=lambda: [1, 2])


@dataclass
class RegularizerConfig:
    """``kind: kl`` with ``channels`` latent channels, or ``kind: fsq`` with one level count per channel."""

    kind: str = "kl"
    channels: Optional[int] = 4
    levels: Optional[list[int]] = None


@dataclass
class TokenizerConfig:
    """Everything needed to build a tokenizer; ``name`` is the preset it came from, if any."""

    name: Optional[str] = None
    model: ModelConfig = field(default_factory=ModelConfig)
    compression: CompressionConfig = field(default_factory=CompressionConfig)
    regularizer: RegularizerConfig = field(default_factory=RegularizerConfig)

    # ---- derived facts -------------------------------------------------------------------------
    @property
    def label(self) -> str:
        """How messages name this tokenizer: its preset name, else "this tokenizer"."""
        return self.name or "this tokenizer"

    @property
    def causal(self) -> bool:
        return self.model.causal

    @property
    def version(self) -> str:
        """``v1.1`` for the replicate-padded, linearly upsampled causal models, else ``v1.0``."""
        return "v1.1" if self.model.temporal_pad == "replicate" else "v1.0"

    @property
    def temporal_factor(self) -> int:
        return self.compression.temporal

    @property
    def spatial_factor(self) -> int:
        return self.compression.spatial

    @property
    def factors(self) -> tuple[int, int, int]:
        """(temporal, height, width) compression factors, e.g. (4, 8, 8)."""
        return (self.compression.temporal, self.compression.spatial, self.compression.spatial)

    @property
    def is_discrete(self) -> bool:
        return self.regularizer.kind == "fsq"

    @property
    def latent_channels(self) -> int:
        reg = self.regularizer
        return len(reg.levels) if reg.kind == "fsq" else int(reg.channels)

    @property
    def levels(self) -> Optional[list[int]]:
        """FSQ levels per latent channel; ``None`` for KL models (as a diffusers model's config says them)."""
        return list(self.regularizer.levels) if self.is_discrete else None

    @property
    def codebook_size(self) -> Optional[int]:
        """Number of FSQ codes (product of the levels); ``None`` for KL models."""
        return math.prod(self.regularizer.levels) if self.is_discrete else None

    @property
    def frame_rule(self) -> LengthRule:
        """The frame counts a clip may have: causal ``1 + k*f``, non-causal a multiple of f."""
        return LengthRule(1, self.temporal_factor) if self.causal else LengthRule(0, self.temporal_factor)

    @property
    def size_rules(self) -> tuple[LengthRule, LengthRule]:
        """The heights and widths a frame may have: multiples of the spatial factor."""
        rule = LengthRule(0, self.spatial_factor)
        return rule, rule

    # ---- frame counts --------------------------------------------------------------------------
    def latent_frames(self, num_frames: int) -> int:
        """Latent frames that encode ``num_frames`` frames, the last group of f completed with copies: causal
        ``1 + ceil((T - 1) / f)``, non-causal ``ceil(T / f)``."""
        f = self.temporal_factor
        return 1 + math.ceil((num_frames - 1) / f) if self.causal else math.ceil(num_frames / f)

    def decoded_frames(self, latent_frames: int) -> int:
        """Frames that ``latent_frames`` latents decode to: causal ``1 + f * (t - 1)``, non-causal ``f * t``."""
        f = self.temporal_factor
        return 1 + f * (latent_frames - 1) if self.causal else f * latent_frames

    # ---- validation ----------------------------------------------------------------------------
    def validate(self) -> TokenizerConfig:
        """Raise [`ConfigError`][] naming the first inconsistent field; return self."""
        m, c, r = self.model, self.compression, self.regularizer
        if m.temporal_pad not in TEMPORAL_PADS:
            raise ConfigError(f"model.temporal_pad must be one of {TEMPORAL_PADS}, got {m.temporal_pad!r}")
        if m.temporal_upsample not in TEMPORAL_UPSAMPLES:
            raise ConfigError(
                f"model.temporal_upsample must be one of {TEMPORAL_UPSAMPLES}, got {m.temporal_upsample!r}"
            )
        if not m.causal and (m.temporal_pad != "zeros" or m.temporal_upsample != "nearest"):
            raise ConfigError(
                "model.temporal_pad / model.temporal_upsample only apply to causal models; a non-causal model "
                f"needs 'zeros' / 'nearest', got {m.temporal_pad!r} / {m.temporal_upsample!r}"
            )
        for key in ("ch", "num_res_blocks", "in_channels"):
            if getattr(m, key) < 1:
                raise ConfigError(f"model.{key} must be >= 1, got {getattr(m, key)}")
        if not 0.0 <= m.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {m.dropout}")

        n_levels = len(c.ch_mult)
        if n_levels < 1 or any(k < 1 for k in c.ch_mult):
            raise ConfigError(f"compression.ch_mult must be a non-empty list of positive ints, got {list(c.ch_mult)}")
        for key in ("spatial_down", "temporal_down", "spatial_up", "temporal_up"):
            levels = list(getattr(c, key))
            bad = [i for i in levels if not 0 <= i < n_levels]
            if bad or len(set(levels)) != len(levels):
                raise ConfigError(
                    f"compression.{key} must list distinct levels in 0..{n_levels - 1} "
                    f"(len(ch_mult)={n_levels}), got {levels}"
                )
        if not set(c.temporal_down) <= set(c.spatial_down):
            raise ConfigError(
                f"compression.temporal_down {list(c.temporal_down)} must be a subset of "
                f"compression.spatial_down {list(c.spatial_down)}: temporal downsampling follows a spatial one"
            )
        if not set(c.temporal_up) <= set(c.spatial_up):
            raise ConfigError(
                f"compression.temporal_up {list(c.temporal_up)} must be a subset of "
                f"compression.spatial_up {list(c.spatial_up)}: temporal upsampling follows a spatial one"
            )
        checks = (
            ("temporal", c.temporal, "temporal_down", c.temporal_down),
            ("temporal", c.temporal, "temporal_up", c.temporal_up),
            ("spatial", c.spatial, "spatial_down", c.spatial_down),
            ("spatial", c.spatial, "spatial_up", c.spatial_up),
        )
        for fname, factor, lname, levels in checks:
            if factor != 2 ** len(levels):
                raise ConfigError(
                    f"compression.{fname}={factor} does not match compression.{lname}={list(levels)}: "
                    f"{len(levels)} resampling levels give a factor of {2 ** len(levels)}"
                )

        if r.kind not in REGULARIZERS:
            raise ConfigError(f"regularizer.kind must be one of {REGULARIZERS}, got {r.kind!r}")
        if r.kind == "kl":
            if r.channels is None or r.channels < 1:
                raise ConfigError(f"regularizer.channels must be >= 1 for a KL regularizer, got {r.channels}")
            if r.levels:
                raise ConfigError(f"regularizer.levels only applies to FSQ, got levels={list(r.levels)} with kind=kl")
        else:
            if not r.levels or any(level < 2 for level in r.levels):
                raise ConfigError(f"regularizer.levels must list FSQ levels >= 2, got {r.levels}")
            if r.channels is not None and r.channels != len(r.levels):
                raise ConfigError(
                    f"an FSQ regularizer has one latent channel per level: regularizer.channels={r.channels} "
                    f"but regularizer.levels={list(r.levels)} has {len(r.levels)} entries (leave channels null)"
                )
        return self

    # ---- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_any(cls, data: Any) -> TokenizerConfig:
        """Build and validate from a dict, DictConfig or JSON string; unknown keys and wrong types are errors."""
        if not isinstance(data, (cls, dict, DictConfig, str)):
            raise ConfigError(f"a tokenizer config must be a mapping, got {type(data).__name__}")
        return build_config(cls, data, "tokenizer", typed=True)

    def differences(self, other: TokenizerConfig) -> list[str]:
        """Dotted keys whose values differ between two configs, as ``key: a != b`` strings."""
        out: list[str] = []

        def walk(a: Any, b: Any, prefix: str) -> None:
            if isinstance(a, dict) and isinstance(b, dict):
                for key in sorted(set(a) | set(b)):
                    walk(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key)
            elif a != b:
                out.append(f"{prefix}: {a!r} != {b!r}")

        mine, theirs = self.to_dict(), other.to_dict()
        mine.pop("name", None)
        theirs.pop("name", None)
        walk(mine, theirs, "")
        return out
