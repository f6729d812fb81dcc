"""Typed configuration of a training run (``conf/train.yaml`` and its groups).

A run config holds the tokenizer groups (``model``, ``compression``, ``regularizer`` or a
``tokenizer`` preset), the ``stage`` of the two-stage recipe, ``data`` / ``val_data``, ``optim``,
``loss``, ``logger`` and the loop settings below. [`load_run_config`][] validates all of it before
anything expensive starts, so a bad value fails at once with a message naming it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from ..config import TokenizerConfig
from ..config_loader import build_config
from ..data.config import DataConfig
from ..errors import ConfigError


def _demo_videos(split: str = "train") -> str:
    from ..demo import demo_dir

    return str(demo_dir(split))


# ${vidtok_demo:train} / ${vidtok_demo:val}: the demo clips installed with the package (experiment=demo)
OmegaConf.register_new_resolver("vidtok_demo", _demo_videos, replace=True)

MIXED_PRECISION = ("no", "bf16", "fp16")
LOGGERS = ("tensorboard", "wandb", "none")
WANDB_MODES = ("online", "offline", "disabled")


@dataclass
class StageConfig:
    """A stage of the two-stage training recipe: clip resolution and which parts train.

    ``lowres`` trains the whole model at 128x128; ``highres_decoder`` freezes the encoder and trains
    the decoder at 256x256, starting from the stage-1 checkpoint given as ``init_from``.
    """

    name: str = "lowres"
    resolution: int = 128
    freeze_encoder: bool = False
    init_from: Optional[str] = None

    def validate(self, spatial_factor: int = 1) -> StageConfig:
        """Raise ConfigError unless the resolution fits ``spatial_factor`` and a frozen encoder has ``init_from``."""
        if self.resolution < 1 or self.resolution % spatial_factor:
            raise ConfigError(
                f"stage.resolution must be a positive multiple of the spatial factor {spatial_factor}, "
                f"got {self.resolution}"
            )
        if self.freeze_encoder and not self.init_from:
            raise ConfigError(
                f"stage {self.name!r} freezes the encoder, so stage.init_from must name the checkpoint to start from"
            )
        return self


@dataclass
class OptimConfig:
    """Adam for the tokenizer and the discriminator (the original's defaults: lr 1e-5, betas 0.9/0.999).

    ``scale_lr`` multiplies both rates by processes x batch size x accumulation, as the original's
    ``--scale_lr``. ``disc_lr`` defaults to ``lr``.
    """

    lr: float = 1e-5
    disc_lr: Optional[float] = None
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0
    scale_lr: bool = False
    warmup_steps: int = 0

    def validate(self) -> OptimConfig:
        if self.lr <= 0 or (self.disc_lr is not None and self.disc_lr <= 0):
            raise ConfigError(f"optim.lr and optim.disc_lr must be > 0, got {self.lr} and {self.disc_lr}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"optim.betas must be two values in [0, 1), got {list(self.betas)}")
        if self.warmup_steps < 0:
            raise ConfigError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")
        return self


@dataclass
class LoggerConfig:
    """Where metrics go: ``tensorboard`` (``<run_dir>/tb``), ``wandb`` or ``none``; printing always happens."""

    kind: str = "tensorboard"
    every: int = 10
    wandb_mode: str = "offline"
    wandb_project: str = "vidtok"
    wandb_entity: Optional[str] = None
    run_name: Optional[str] = None

    def validate(self) -> LoggerConfig:
        if self.kind not in LOGGERS:
            raise ConfigError(f"logger.kind must be one of {LOGGERS}, got {self.kind!r}")
        if self.wandb_mode not in WANDB_MODES:
            raise ConfigError(f"logger.wandb_mode must be one of {WANDB_MODES}, got {self.wandb_mode!r}")
        if self.every < 1:
            raise ConfigError(f"logger.every must be >= 1, got {self.every}")
        return self


@dataclass
class CheckpointConfig:
    """Save the full training state every ``every`` steps (and at the end), keeping the newest ``keep``.

    ``resume``: ``auto`` continues from the newest complete checkpoint in the run directory if there
    is one, ``never`` refuses to start in a directory that has checkpoints, or a path to a checkpoint.
    """

    every: int = 1000
    keep: int = 3
    resume: str = "auto"

    def validate(self) -> CheckpointConfig:
        if self.every < 1 or self.keep < 1:
            raise ConfigError(f"checkpoint.every and checkpoint.keep must be >= 1, got {self.every} and {self.keep}")
        return self


@dataclass
class ValidationConfig:
    """Every ``every`` steps: PSNR / SSIM / LPIPS (and FVD with a detector) over ``val_data``, on at
    most ``max_clips`` clips per process (null: all), and ``samples`` side-by-side reconstructions. ``latent_drift``:
    in a run that starts from ``init_from``, also how far the encoder's latents of the validation clips have moved
    from those weights' (``latent_drift``: relative L2, ``latent_drift_ch<i>`` per channel, ``latent_changed_tokens``
    for FSQ), so that a fine-tuned tokenizer does not silently stop fitting a generator trained on the old latents."""

    every: int = 1000
    max_clips: Optional[int] = 16
    samples: int = 2
    lpips: bool = True
    fvd: bool = False
    detector_path: Optional[str] = None
    at_start: bool = True
    latent_drift: bool = True

    def validate(self) -> ValidationConfig:
        if self.every < 1:
            raise ConfigError(f"validation.every must be >= 1, got {self.every}")
        if self.max_clips is not None and self.max_clips < 1:
            raise ConfigError(f"validation.max_clips must be >= 1 or null, got {self.max_clips}")
        return self


@dataclass
class LoopConfig:
    """The training loop: steps, accumulation, clipping, precision, EMA and failure handling.

    ``data_epoch_steps``: the training clip stream is re-seeded every this many steps, so a resumed
    run replays at most that many batches to land exactly where it stopped.
    """

    max_steps: int = 100_000
    grad_accum: int = 1
    clip_grad: Optional[float] = 20.0
    mixed_precision: str = "no"
    ema_decay: Optional[float] = None
    seed: int = 0
    max_nonfinite: int = 20
    data_epoch_steps: int = 1000
    threads: Optional[int] = None

    def validate(self) -> LoopConfig:
        if self.max_steps < 1 or self.grad_accum < 1:
            raise ConfigError(
                f"train.max_steps and train.grad_accum must be >= 1, got {self.max_steps} and {self.grad_accum}"
            )
        if self.mixed_precision not in MIXED_PRECISION:
            raise ConfigError(f"train.mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ConfigError(f"train.ema_decay must be in (0, 1) or null, got {self.ema_decay}")
        if self.max_nonfinite < 1 or self.data_epoch_steps < 1:
            raise ConfigError("train.max_nonfinite and train.data_epoch_steps must be >= 1")
        return self


@dataclass
class RunConfig:
    """A whole training run, validated; ``tokenizer`` is built from the composed tokenizer groups."""

    tokenizer: TokenizerConfig
    stage: StageConfig
    data: DataConfig
    val_data: Optional[DataConfig]
    optim: OptimConfig
    loss: Any  # vidtok.losses.LossConfig
    logger: LoggerConfig
    checkpoint: CheckpointConfig
    validation: ValidationConfig
    train: LoopConfig
    run_dir: str
    init_from: Optional[str] = None
    dry_run: bool = False  # validate and describe the run, train nothing
    raw: Optional[dict] = None  # the resolved composed config, saved in the run

    @property
    def resolution(self) -> tuple[int, int]:
        return (self.data.height or self.stage.resolution, self.data.width or self.stage.resolution)


def check_clip_fits(tokenizer: TokenizerConfig, num_frames: int, size: tuple[int, int], what: str) -> None:
    """Raise ConfigError when clips of ``num_frames`` x ``size`` do not fit the compression factors."""
    f, s = tokenizer.temporal_factor, tokenizer.spatial_factor
    if tokenizer.causal:
        ok, need = (num_frames - 1) % f == 0, f"1 + {f}k frames (e.g. {f + 1}, {2 * f + 1}, {4 * f + 1})"
    else:
        ok, need = num_frames % f == 0, f"a multiple of {f} frames (e.g. {f}, {2 * f}, {4 * f})"
    if not ok:
        raise ConfigError(
            f"{what}.num_frames={num_frames} does not fit {tokenizer.name or 'this tokenizer'} "
            f"(temporal factor {f}, {'causal' if tokenizer.causal else 'non-causal'}): use {need}"
        )
    for axis, value in zip(("height", "width"), size, strict=True):
        if value % s:
            raise ConfigError(
                f"{what} {axis} {value} is not divisible by the spatial factor {s}: use a multiple of {s} "
                f"(e.g. {s * max(1, value // s)})"
            )


def load_run_config(cfg: Any) -> RunConfig:
    """Validate a composed run config (DictConfig or dict) into a [`RunConfig`][]."""
    from ..losses import LossConfig

    if isinstance(cfg, DictConfig):
        missing = sorted(k for k in OmegaConf.missing_keys(cfg) if not k.startswith("hydra"))
        if missing:
            raise ConfigError(f"required value(s) not set: {missing} (e.g. data.path=/path/to/videos)")
        try:
            data = OmegaConf.to_container(cfg, resolve=True)
        except Exception as err:  # an interpolation that cannot resolve, e.g. run_dir outside a Hydra app
            raise ConfigError(f"cannot resolve the config: {err}") from None
    else:
        data = dict(cfg)
    data.pop("hydra", None)
    tokenizer_keys = {f.name for f in dataclasses.fields(TokenizerConfig)}
    tokenizer = TokenizerConfig.from_any({k: data[k] for k in tokenizer_keys if k in data})
    stage = build_config(StageConfig, data.get("stage"), "stage", validate=False)  # needs init_from first
    init_from = data.get("init_from") or stage.init_from
    stage.init_from = init_from
    stage.validate(tokenizer.spatial_factor)
    train_data = DataConfig.from_any(data.get("data") or {})
    val = data.get("val_data") or {}
    val_data = DataConfig.from_any(val) if val.get("path") else None
    run = RunConfig(
        tokenizer=tokenizer,
        stage=stage,
        data=train_data,
        val_data=val_data,
        optim=build_config(OptimConfig, data.get("optim"), "optim"),
        loss=build_config(LossConfig, data.get("loss"), "loss"),
        logger=build_config(LoggerConfig, data.get("logger"), "logger"),
        checkpoint=build_config(CheckpointConfig, data.get("checkpoint"), "checkpoint"),
        validation=build_config(ValidationConfig, data.get("validation"), "validation"),
        train=build_config(LoopConfig, data.get("train"), "train"),
        run_dir=str(data.get("run_dir") or "runs/train"),
        init_from=init_from,
        dry_run=bool(data.get("dry_run", False)),
        raw=data,
    )
    check_clip_fits(tokenizer, run.data.num_frames, run.resolution, "data")
    if val_data is not None:
        size = (val_data.height or run.resolution[0], val_data.width or run.resolution[1])
        check_clip_fits(tokenizer, val_data.num_frames, size, "val_data")
        if run.validation.fvd and val_data.num_frames < 16:
            raise ConfigError(
                f"validation.fvd needs clips of at least 16 frames (the I3D detector's input), "
                f"val_data.num_frames is {val_data.num_frames}"
            )
    return run


def describe_run(run: RunConfig) -> str:
    """One line saying what a run would train, on what, and where it would write."""
    tok = run.tokenizer
    t, s, _ = tok.factors
    model = tok.name or f"{'causal' if tok.causal else 'non-causal'} {tok.version}"
    latent = f"FSQ {tok.codebook_size}" if tok.is_discrete else f"KL {tok.latent_channels} ch"
    val = f", validation on {run.val_data.source} {run.val_data.path}" if run.val_data else ""
    height, width = run.resolution
    return (
        f"{model} {t}x{s}x{s} {latent}, width {tok.model.ch}, stage {run.stage.name}, {run.train.max_steps} steps "
        f"on {run.data.source} {run.data.path} ({run.data.num_frames}x{height}x{width} clips){val}; "
        f"run_dir {run.run_dir}"
    )
