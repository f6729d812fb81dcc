"""The video autoencoders of diffusers behind the interface the evaluation runs VidTok through, so that any of them is
measured by the same protocol: [`DiffusersTokenizer`][] (``encode`` / ``decode`` / a ``config`` that says the
factors, the latent channels and which clips and frame sizes the model takes).

One small [`Family`][] per model class: each reads its factors from the model's config where the config says them
(Wan's ``scale_factor_temporal`` / ``scale_factor_spatial``, others' ``temporal_compression_ratio`` /
``spatial_compression_ratio``, else the attribute the class computes), and states its frame rule, which is the
frame counts its ``decode(encode(x))`` gives back whole (measured on each class; ``tests/test_diffusers_vaes.py``
checks every family against the class's own ``forward``):

* Wan, HunyuanVideo, LTX-Video, Mochi, Cosmos, VidTok (causal): ``1 + k*f`` frames (others are cut short or, for
  Cosmos, padded, without an error);
* CogVideoX: ``1 + k*2f``: its decoder takes latents in pairs and turns an even count into ``f*t`` frames;
* Allegro: whole tiles only (``24 + k*16`` frames, sizes ``320 + k*200`` x ``320 + k*240`` for the released
  model): other inputs are silently wrong in diffusers, so they are refused here; one clip per call;
* VidTok non-causal: multiples of 16 frames (its chunk).

Encoding takes the posterior mode (``sample=True``: a draw from it) as the evaluation of a KL model does.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor, nn

from ..config import LengthRule
from ..errors import CheckpointError, ConfigError, WeightsNotFoundError

log = logging.getLogger("vidtok.diffusers")

#: How a ``tokenizers=[...]`` entry names a diffusers model.
PREFIX = "diffusers:"


@dataclass
class DiffusersVAEConfig:
    """What a diffusers video autoencoder is, as the jobs' checks and reports read it (the fields a VidTok
    [`TokenizerConfig`][vidtok.TokenizerConfig] offers them). ``causal``: the first latent frame depends on the
    first frame only (as measured on each class); ``switches``: the model's memory switches as they were set."""

    name: str
    family: str
    source: str
    causal: bool
    temporal_factor: int
    spatial_factor: int
    latent_channels: int
    frame_rule: LengthRule
    height_rule: LengthRule
    width_rule: LengthRule
    codebook_size: Optional[int] = None
    levels: Optional[list[int]] = None
    switches: dict[str, bool] = field(default_factory=dict)

    #: No vidtok causal streams or context passes (``mode=whole``, ``pad_gen_frames``).
    streams = False

    @property
    def label(self) -> str:
        return self.name

    @property
    def is_discrete(self) -> bool:
        return self.codebook_size is not None

    @property
    def size_rules(self) -> tuple[LengthRule, LengthRule]:
        return self.height_rule, self.width_rule


class Family:
    """How one diffusers class is run. The defaults are those of most classes: factors from the config (else the
    attribute the class computes), ``latent_channels``, ``1 + k*f`` frames, sizes a multiple of the spatial factor,
    ``encode(x).latent_dist`` and ``decode(z).sample`` on (B, C, T, H, W)."""

    causal = True
    #: Switches set when the model loads (the class cannot run without them).
    required: tuple[str, ...] = ()

    def temporal(self, vae: Any) -> int:
        return _factor(vae, "temporal")

    def spatial(self, vae: Any) -> int:
        return _factor(vae, "spatial")

    def channels(self, vae: Any) -> int:
        return int(vae.config.latent_channels)

    def frame_rule(self, vae: Any) -> LengthRule:
        return LengthRule(1, self.temporal(vae))

    def size_rules(self, vae: Any) -> tuple[LengthRule, LengthRule]:
        rule = LengthRule(0, self.spatial(vae))
        return rule, rule

    def is_causal(self, vae: Any) -> bool:
        return self.causal

    def levels(self, vae: Any) -> Optional[list[int]]:
        """FSQ levels per channel of a discrete model; None for a continuous one."""
        return None

    def encode(self, vae: Any, x: Tensor, sample: bool, generator: Optional[torch.Generator]) -> Tensor:
        dist = vae.encode(x).latent_dist
        return dist.sample(generator=generator) if sample else dist.mode()

    def decode(self, vae: Any, z: Tensor) -> Tensor:
        return vae.decode(z).sample

    def indices(self, vae: Any, z: Tensor) -> Tensor:
        raise ValueError(f"{type(vae).__name__} has continuous latents, no code indices")


class CogVideoX(Family):
    causal = False  # GroupNorm statistics span every frame

    def spatial(self, vae: Any) -> int:
        return 2 ** (len(vae.config.block_out_channels) - 1)  # as its pipelines compute it: no config key says it

    def frame_rule(self, vae: Any) -> LengthRule:
        return LengthRule(1, 2 * self.temporal(vae))  # an odd latent count: the decoder takes latents in pairs


class Wan(Family):
    def channels(self, vae: Any) -> int:
        return int(vae.config.z_dim)


class HunyuanVideo(Family):
    causal = False  # GroupNorm over frames, attention in the middle block


class LTXVideo(Family):
    def is_causal(self, vae: Any) -> bool:
        return bool(vae.config.encoder_causal and vae.config.decoder_causal)

    def decode(self, vae: Any, z: Tensor) -> Tensor:
        # a timestep-conditioned decoder takes its pipeline's default decode_timestep, 0 (and no noise)
        temb = z.new_zeros(z.shape[0]) if vae.config.timestep_conditioning else None
        return vae.decode(z, temb).sample


class Mochi(Family):
    pass


class Cosmos(Family):
    pass  # its IdentityDistribution gives the latents for mode() and sample() alike


class Allegro(Family):
    causal = False
    required = ("tiling",)  # diffusers implements its encoder and decoder by tiles only

    def frame_rule(self, vae: Any) -> LengthRule:
        return _tile_rule(vae.kernel[0], vae.stride[0])

    def size_rules(self, vae: Any) -> tuple[LengthRule, LengthRule]:
        return _tile_rule(vae.kernel[1], vae.stride[1]), _tile_rule(vae.kernel[2], vae.stride[2])

    # its tiled passes take one video at a time (a batch of several fails inside diffusers)
    def encode(self, vae: Any, x: Tensor, sample: bool, generator: Optional[torch.Generator]) -> Tensor:
        return torch.cat([super(Allegro, self).encode(vae, clip, sample, generator) for clip in x.split(1)])

    def decode(self, vae: Any, z: Tensor) -> Tensor:
        return torch.cat([vae.decode(part).sample.transpose(1, 2) for part in z.split(1)])  # (B, T, C, H, W) there


class VidTok(Family):
    def spatial(self, vae: Any) -> int:
        return 2 ** len(vae.encoder.spatial_ds)

    def channels(self, vae: Any) -> int:
        return int(vae.config.z_channels)

    def is_causal(self, vae: Any) -> bool:
        return bool(vae.config.is_causal)

    def frame_rule(self, vae: Any) -> LengthRule:
        if vae.config.is_causal:
            return LengthRule(1, self.temporal(vae))
        return LengthRule(0, vae.num_sample_frames_batch_size)  # its non-causal passes run in chunks of these

    def levels(self, vae: Any) -> Optional[list[int]]:
        return [int(v) for v in vae.regularization._levels] if vae.config.regularizer == "fsq" else None

    def encode(self, vae: Any, x: Tensor, sample: bool, generator: Optional[torch.Generator]) -> Tensor:
        if vae.config.is_causal:  # its forward's padding: f-1 copies of the first frame in front
            x = torch.cat([x[:, :, :1].expand(-1, -1, vae.temporal_compression_ratio - 1, -1, -1), x], dim=2)
        out = vae.encode(x)
        if vae.config.regularizer == "fsq":
            return out[0]
        return out.latent_dist.sample(generator=generator) if sample else out.latent_dist.mode()

    def decode(self, vae: Any, z: Tensor) -> Tensor:
        return vae.decode(z)

    def indices(self, vae: Any, z: Tensor) -> Tensor:
        if vae.config.regularizer != "fsq":
            return super().indices(vae, z)
        return vae.regularization.codes_to_indices(z.movedim(1, -1)).long()


#: Each supported class by its diffusers name.
FAMILIES: dict[str, Family] = {
    "AutoencoderKLCogVideoX": CogVideoX(),
    "AutoencoderKLWan": Wan(),
    "AutoencoderKLHunyuanVideo": HunyuanVideo(),
    "AutoencoderKLLTXVideo": LTXVideo(),
    "AutoencoderKLMochi": Mochi(),
    "AutoencoderKLCosmos": Cosmos(),
    "AutoencoderKLAllegro": Allegro(),
    "AutoencoderVidTok": VidTok(),
}


def _factor(vae: Any, kind: str) -> int:
    """A compression factor as the model's config says it, else as the class computed it in ``__init__``."""
    for key in (f"scale_factor_{kind}", f"{kind}_compression_ratio"):
        value = vae.config.get(key)
        if value:
            return int(value)
    value = vars(vae).get(f"{kind}_compression_ratio")  # not getattr: that falls back to the config, warning
    if value:
        return int(value)
    raise ConfigError(f"{type(vae).__name__}'s config says no {kind} compression factor")


def _tile_rule(kernel: int, stride: int) -> LengthRule:
    return LengthRule(int(kernel), int(stride) if stride > 0 else 0)


class DiffusersTokenizer(nn.Module):
    """A diffusers video autoencoder as the evaluation runs a tokenizer: ``encode(x, sample, generator)`` ->
    latents, ``decode(z)`` -> frames (B, 3, T, H, W), ``latents_to_indices`` for a discrete one, and ``config`` (a
    [`DiffusersVAEConfig`][]). ``options`` are accepted and unused: the model's own switches decide its tiling."""

    def __init__(self, vae: nn.Module, name: str, source: str):
        super().__init__()
        family_name = type(vae).__name__
        if family_name not in FAMILIES:
            raise ConfigError(f"{family_name} is not a supported video autoencoder; supported: {', '.join(FAMILIES)}")
        self.vae = vae.eval().requires_grad_(False)
        self.family = FAMILIES[family_name]
        family, levels = self.family, self.family.levels(vae)
        height, width = family.size_rules(vae)
        self.config = DiffusersVAEConfig(
            name=name,
            family=family_name,
            source=source,
            causal=family.is_causal(vae),
            temporal_factor=family.temporal(vae),
            spatial_factor=family.spatial(vae),
            latent_channels=family.channels(vae),
            frame_rule=family.frame_rule(vae),
            height_rule=height,
            width_rule=width,
            codebook_size=int(torch.tensor(levels).prod()) if levels else None,
            levels=levels,
            switches=self.switches(),
        )

    def switches(self) -> dict[str, bool]:
        """The memory switches the model has, as they are set."""
        names = ("use_tiling", "use_slicing", "use_framewise_encoding", "use_framewise_decoding")
        return {n: bool(getattr(self.vae, n)) for n in names if isinstance(getattr(self.vae, n, None), bool)}

    def encode(
        self, x: Tensor, sample: bool = False, generator: Optional[torch.Generator] = None, *, options: Any = None
    ) -> Tensor:
        return self.family.encode(self.vae, x.to(self.dtype), sample, generator)

    def decode(self, z: Tensor, *, options: Any = None) -> Tensor:
        return self.family.decode(self.vae, z.to(self.dtype))

    def forward(
        self, x: Tensor, sample: bool = False, *, options: Any = None, generator: Optional[torch.Generator] = None
    ) -> Tensor:
        """Encode then decode: the T frames of ``x`` back."""
        return self.decode(self.encode(x, sample, generator))[:, :, : x.shape[2]]

    def latents_to_indices(self, z: Tensor) -> Tensor:
        """Code indices (B, t, h, w) of a discrete model's latents."""
        return self.family.indices(self.vae, z)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype


@dataclass
class DiffusersSource:
    """Where a diffusers model is: ``path`` (a local folder) or ``repo`` (a Hub id), and the ``subfolder``."""

    path: Optional[Path]
    repo: Optional[str]
    subfolder: Optional[str]

    @property
    def text(self) -> str:
        where = str(self.path) if self.path is not None else self.repo
        return f"{where}/{self.subfolder}" if self.subfolder else str(where)


def parse_source(spec: str, subfolder: Optional[str] = None) -> DiffusersSource:
    """``spec`` (after ``diffusers:``): a local folder (a model, or a pipeline whose ``vae/`` holds one), or a Hub
    id ``owner/name``, whose further parts name the subfolder (``Wan-AI/Wan2.1-T2V-1.3B-Diffusers/vae``)."""
    if not spec:
        raise ConfigError(f"{PREFIX} must be followed by a Hub id or a local folder")
    path = Path(spec).expanduser()
    if path.exists() or spec.startswith((".", "/", "~")):
        if not path.is_dir():
            raise WeightsNotFoundError(f"{PREFIX}{spec}: no such folder")
        if subfolder is None and not (path / "config.json").is_file() and (path / "vae" / "config.json").is_file():
            subfolder = "vae"  # a pipeline folder: its autoencoder
        return DiffusersSource(path, None, subfolder)
    parts = spec.strip("/").split("/")
    if len(parts) < 2:
        raise WeightsNotFoundError(f"{PREFIX}{spec}: not a folder here, nor a Hub id owner/name")
    sub = "/".join(parts[2:]) or None
    if sub and subfolder and sub != subfolder:
        raise ConfigError(f"{PREFIX}{spec} names subfolder {sub!r}, and subfolder={subfolder!r} too")
    return DiffusersSource(None, "/".join(parts[:2]), sub or subfolder)


def model_class(source: DiffusersSource) -> str:
    """The ``_class_name`` in the model's ``config.json`` (from the Hub cache or the network for a Hub id)."""
    if source.path is not None:
        config = source.path / (source.subfolder or "") / "config.json"
        if not config.is_file():
            raise WeightsNotFoundError(f"{PREFIX}{source.text}: no config.json there (a diffusers model folder?)")
    else:
        from huggingface_hub import hf_hub_download

        try:
            config = Path(hf_hub_download(source.repo, "config.json", subfolder=source.subfolder))
        except Exception as err:  # offline, no such repository or subfolder: one line for the user
            raise WeightsNotFoundError(
                f"{PREFIX}{source.text}: its config.json could not be had from the Hub or its cache "
                f"({type(err).__name__}); name a local folder instead"
            ) from None
    try:
        name = json.loads(config.read_text()).get("_class_name")
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{config}: not a readable diffusers config ({err})") from None
    if name not in FAMILIES:
        raise ConfigError(
            f"{PREFIX}{source.text} holds a {name}, not a video autoencoder this runs ({', '.join(FAMILIES)})"
        )
    return name


def load_diffusers_tokenizer(
    spec: str,
    device: torch.device,
    *,
    subfolder: Optional[str] = None,
    tiling: Optional[bool] = None,
    slicing: Optional[bool] = None,
    dtype: Optional[torch.dtype] = None,
    name: Optional[str] = None,
) -> DiffusersTokenizer:
    """Load the diffusers video autoencoder ``spec`` names (see [`parse_source`][]) with ``from_pretrained``, its
    ``tiling`` / ``slicing`` switched as asked (None: the class's default; a class that only runs tiled is tiled),
    on ``device``. ``name``: the report's name for it (default: the id or folder)."""
    try:
        import diffusers
    except ImportError:
        raise ConfigError("diffusers models need diffusers: pip install 'vidtok[diffusers]'") from None
    source = parse_source(spec, subfolder)
    cls = getattr(diffusers, model_class(source))
    where = str(source.path) if source.path is not None else source.repo
    kwargs: dict[str, Any] = {"subfolder": source.subfolder} if source.subfolder else {}
    if dtype is not None:
        kwargs["torch_dtype"] = dtype
    try:
        vae = cls.from_pretrained(where, **kwargs)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{PREFIX}{source.text}: {cls.__name__}.from_pretrained failed: {err}") from None
    family = FAMILIES[cls.__name__]
    for switch, value in (("tiling", tiling), ("slicing", slicing)):
        if switch in family.required:
            if value is False:
                raise ConfigError(f"{cls.__name__} runs with {switch} only (diffusers has no other path)")
            value = True
        if value is not None:
            getattr(vae, f"{'enable' if value else 'disable'}_{switch}")()
    return DiffusersTokenizer(vae.to(device), name or source.text, source.text)
