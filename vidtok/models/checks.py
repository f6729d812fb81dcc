"""Input checks of a tokenizer: videos, latents and code indices against its config (InputError saying
what was expected and what was found). Shared by [`Tokenizer`][vidtok.Tokenizer] and its streams."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch._subclasses.fake_tensor import is_fake

from ..config import TokenizerConfig
from ..errors import InputError

# Inputs are checked to lie in [-1, 1] up to this slack (resampling can overshoot slightly).
RANGE_TOLERANCE = 1e-3


def holds_values(t: Tensor) -> bool:
    """Whether ``t`` has values to check: not empty, not on the meta device, not a fake tensor (shape-only
    tracing: ``torch._subclasses.FakeTensorMode``, e.g. to check device handling without the device)."""
    return t.numel() > 0 and not t.is_meta and not is_fake(t)


def require_discrete(config: TokenizerConfig, what: str) -> None:
    """TypeError unless ``config`` is an FSQ model (``what`` names the operation that needs one)."""
    if not config.is_discrete:
        raise TypeError(f"{what} needs an FSQ (discrete) tokenizer; {config.label} is a KL model")


def check_num_frames(config: TokenizerConfig, num_frames: int) -> None:
    """Causal models take T >= 1 frames, non-causal ones a positive multiple of the temporal factor."""
    f = config.temporal_factor
    if config.causal:
        if num_frames < 1:
            raise InputError(f"{config.label} takes T >= 1 frames, got T={num_frames}")
    elif num_frames < f or num_frames % f:
        below = max(f, num_frames // f * f)
        raise InputError(
            f"non-causal {config.label} takes a multiple of {f} frames (e.g. {below} or {below + f}), "
            f"got T={num_frames}; trim or pad the clip, or use a causal model for any length"
        )


def check_video(config: TokenizerConfig, x: Tensor, check_frames: bool = True) -> None:
    """A float tensor (B, 3, T, H, W) in [-1, 1], H and W multiples of the spatial factor, T accepted
    by the model (unless ``check_frames`` is false)."""
    if not isinstance(x, Tensor):
        raise InputError(f"expected a torch.Tensor video (B, 3, T, H, W), got {type(x).__name__}")
    if not x.is_floating_point():
        raise InputError(
            f"expected a floating-point video in [-1, 1], got dtype {x.dtype} "
            "(convert uint8 frames with x.float() / 127.5 - 1)"
        )
    c_in = config.model.in_channels
    if x.ndim != 5 or x.shape[1] != c_in:
        raise InputError(
            f"expected a video of shape (B, {c_in}, T, H, W), got shape {tuple(x.shape)}"
            + (" (an image batch? add a time axis: x.unsqueeze(2))" if x.ndim == 4 else "")
        )
    if check_frames:
        check_num_frames(config, x.shape[2])
    s = config.spatial_factor
    h, w = x.shape[3], x.shape[4]
    if h % s or w % s or h == 0 or w == 0:
        raise InputError(
            f"{config.label} needs height and width that are positive multiples of {s}, got {h}x{w} "
            f"(e.g. resize or crop to {max(s, h // s * s)}x{max(s, w // s * s)})"
        )
    if not holds_values(x):
        return
    lo, hi = torch.aminmax(x.detach())
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InputError("the video contains NaN or infinite values")
    if lo < -1 - RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
        hint = " (looks like [0, 255] data: use x / 127.5 - 1)" if hi > 2 else ""
        raise InputError(f"expected values in [-1, 1], got [{lo:.4g}, {hi:.4g}]{hint}")


def check_latents(config: TokenizerConfig, z: Tensor, allow_empty: bool = False) -> None:
    """Float latents (B, C, t, h, w) with the model's latent channels and t >= 1 (>= 0 with ``allow_empty``)."""
    if not isinstance(z, Tensor):
        raise InputError(f"expected a torch.Tensor of latents, got {type(z).__name__}")
    c = config.latent_channels
    if not z.is_floating_point():
        raise InputError(
            f"expected floating-point latents, got dtype {z.dtype}"
            + (" (integer codes? use decode_indices)" if config.is_discrete else "")
        )
    if z.ndim != 5 or z.shape[1] != c or z.shape[2] < (0 if allow_empty else 1):
        raise InputError(f"expected latents of shape (B, {c}, t>=1, h, w), got shape {tuple(z.shape)}")


def check_indices(config: TokenizerConfig, indices: Tensor, allow_empty: bool = False) -> None:
    """Integer code indices (B, t, h, w) in [0, codebook size)."""
    if not isinstance(indices, Tensor) or indices.is_floating_point() or indices.is_complex():
        found = indices.dtype if isinstance(indices, Tensor) else type(indices).__name__
        raise InputError(f"expected an integer tensor of code indices (B, t, h, w), got {found}")
    if indices.ndim != 4 or indices.shape[1] < (0 if allow_empty else 1):
        raise InputError(f"expected code indices of shape (B, t>=1, h, w), got shape {tuple(indices.shape)}")
    if holds_values(indices):
        lo, hi = int(indices.min()), int(indices.max())
        n = config.codebook_size
        if lo < 0 or hi >= n:
            raise InputError(f"code indices must lie in [0, {n}) for {config.label}, got [{lo}, {hi}]")
