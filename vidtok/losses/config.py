"""Typed, validated settings of the training loss ([`VidTokLoss`][vidtok.losses.VidTokLoss]).

Defaults are those of the official VidTok training configs (``loss_config`` and the FSQ
``regularizer_config`` of ``configs/vidtok_*.yaml``), so ``LossConfig()`` trains like the original.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from typing import Optional

from ..errors import ConfigError

DISC_TYPES = ("2d", "3d")
DISC_LOSSES = ("hinge", "vanilla")
GEN_LOSSES = ("non_saturating", "hinge")


@dataclass
class LossConfig:
    """Weights and schedules of the reconstruction, adversarial and latent-regularisation terms.

    Steps (``disc_start``) are in the units the caller passes as ``step``; see
    [`original_steps`][vidtok.losses.original_steps] for the original's convention.
    """

    # reconstruction: |x - x_hat| * pixel_weight + perceptual_weight * LPIPS, as a learned-variance NLL
    pixel_weight: float = 1.0
    perceptual_weight: float = 1.0
    logvar_init: float = 0.0
    learn_logvar: bool = True
    # adversarial
    disc_start: int = 10001  # the original's 20001 counts 2 optimiser steps per batch; we count batches
    disc_weight: float = 0.2
    disc_factor: float = 1.0
    disc_type: str = "2d"
    disc_num_layers: int = 3
    disc_channels: int = 64
    disc_in_channels: int = 3
    disc_loss: str = "hinge"
    gen_loss: str = "non_saturating"
    lecam_weight: float = 0.005
    lecam_decay: float = 0.999
    # latent regularisation: KL models
    kl_weight: float = 1e-6
    # latent regularisation: FSQ models (aux_loss = annealed entropy weight * entropy + commitment)
    aux_weight: float = 1.0
    entropy_weight: float = 0.1
    entropy_annealing_steps: int = 2000
    entropy_annealing_factor: float = 3.0
    commitment_weight: float = 0.25
    diversity_gamma: float = 1.0
    inv_temperature: float = 100.0
    # memory bounds: probabilities per chunk of the FSQ entropy; frames per LPIPS backbone pass, and whether
    # backward recomputes each pass instead of storing its activations
    entropy_chunk_size: int = 2**24
    lpips_frames_per_pass: Optional[int] = 32
    lpips_checkpoint: bool = False
    # VGG16 backbone file for LPIPS (else $VIDTOK_VGG16, the torch hub cache, or a download)
    vgg_path: Optional[str] = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> LossConfig:
        """Raise [`ConfigError`][vidtok.config.ConfigError] naming the first bad field; returns self."""
        choices = {"disc_type": DISC_TYPES, "disc_loss": DISC_LOSSES, "gen_loss": GEN_LOSSES}
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"loss.{name} must be one of {allowed}, got {value!r}")
        for name in ("learn_logvar", "lpips_checkpoint"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"loss.{name} must be true or false, got {getattr(self, name)!r}")
        if self.vgg_path is not None:
            if not isinstance(self.vgg_path, (str, os.PathLike)):
                raise ConfigError(f"loss.vgg_path must be a path or None, got {self.vgg_path!r}")
            self.vgg_path = os.fspath(self.vgg_path)
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in choices or f.name in ("learn_logvar", "lpips_checkpoint", "vgg_path"):
                continue
            if value is None and f.name == "lpips_frames_per_pass":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"loss.{f.name} must be a finite number, got {value!r}")
        nonnegative = (
            "pixel_weight",
            "perceptual_weight",
            "disc_start",
            "disc_weight",
            "disc_factor",
            "lecam_weight",
            "kl_weight",
            "aux_weight",
            "entropy_weight",
            "entropy_annealing_steps",
            "commitment_weight",
            "diversity_gamma",
        )
        for name in nonnegative:
            if getattr(self, name) < 0:
                raise ConfigError(f"loss.{name} must be >= 0, got {getattr(self, name)}")
        integers = ("disc_start", "disc_num_layers", "disc_channels", "disc_in_channels", "entropy_annealing_steps")
        for name in integers + ("entropy_chunk_size",):
            value = getattr(self, name)
            if isinstance(value, float) and not value.is_integer():
                raise ConfigError(f"loss.{name} must be an integer, got {value}")
            setattr(self, name, int(value))
        for name in ("disc_num_layers", "disc_channels", "disc_in_channels", "entropy_chunk_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"loss.{name} must be >= 1, got {getattr(self, name)}")
        if self.lpips_frames_per_pass is not None:
            if float(self.lpips_frames_per_pass) != int(self.lpips_frames_per_pass) or self.lpips_frames_per_pass < 1:
                raise ConfigError(
                    f"loss.lpips_frames_per_pass must be a positive integer or None, got {self.lpips_frames_per_pass}"
                )
            self.lpips_frames_per_pass = int(self.lpips_frames_per_pass)
        if not 0.0 <= self.lecam_decay < 1.0:
            raise ConfigError(f"loss.lecam_decay must be in [0, 1), got {self.lecam_decay}")
        if self.entropy_annealing_factor <= 0:
            raise ConfigError(f"loss.entropy_annealing_factor must be > 0, got {self.entropy_annealing_factor}")
        if self.inv_temperature <= 0:
            raise ConfigError(f"loss.inv_temperature must be > 0, got {self.inv_temperature}")
        return self
