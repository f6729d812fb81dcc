"""Latent regularizers: a diagonal Gaussian (KL models) and finite scalar quantisation (FSQ models).

Neither has persistent state, so neither appears in a checkpoint. Training-only terms (KL divergence,
FSQ entropy and commitment losses) belong to the training losses, not to these inference paths.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import torch
import torch.nn as nn
from torch import Tensor


class DiagonalGaussian(nn.Module):
    """Splits encoder moments (B, 2C, ...) into mean and log-variance (clamped to [-30, 20])."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels

    @staticmethod
    def split(moments: Tensor) -> tuple[Tensor, Tensor]:
        mean, logvar = moments.chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def forward(self, moments: Tensor, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """The posterior mean, or a sample ``mean + std * eps`` when ``sample`` is true."""
        mean, logvar = self.split(moments)
        if not sample:
            return mean
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(0.5 * logvar) * noise

    def latents(self, moments: Tensor, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """Encoder moments -> latents: the posterior mean, or a sample with ``sample``."""
        return self(moments, sample=sample, generator=generator)

    @staticmethod
    def kl(moments: Tensor) -> Tensor:
        """KL divergence to a standard normal, summed over all but the batch dim, per sample."""
        mean, logvar = DiagonalGaussian.split(moments)
        return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)


def autocast_off(device_type: str) -> contextlib.AbstractContextManager:
    """A context with autocast off for this device type; a no-op where it has none (meta tensors)."""
    if device_type in ("cpu", "cuda", "xpu", "mps", "hpu"):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def round_ste(x: Tensor) -> Tensor:
    """Round to the nearest integer, passing gradients straight through."""
    return x + (x.round() - x).detach()


class FSQ(nn.Module):
    """Finite scalar quantisation over the channel dim of (B, C, ...) latents, one level count per channel.

    Each channel is bounded with tanh to ``levels[c]`` integer values, rounded (straight-through), and
    scaled to [-1, 1]. A code's index is the mixed-radix number whose digits are the per-channel values.
    Computed in float32 whatever the input dtype or autocast state.
    """

    def __init__(self, levels: Sequence[int], eps: float = 1e-3):
        super().__init__()
        self.levels = [int(level) for level in levels]
        self.codebook_size = math.prod(self.levels)
        lv = torch.tensor(self.levels, dtype=torch.int32)
        # Constants as the original computes them (float32 from int32 levels), for bit-exact codes.
        half_l = (lv - 1) * (1 + eps) / 2
        offset = torch.where(lv % 2 == 0, 0.5, 0.0)
        basis = torch.cumprod(torch.tensor([1] + self.levels[:-1], dtype=torch.int64), dim=0)
        self.register_buffer("_levels", lv.long(), persistent=False)
        self.register_buffer("_half_l", half_l, persistent=False)
        self.register_buffer("_offset", offset, persistent=False)
        self.register_buffer("_shift", (offset / half_l).atanh(), persistent=False)
        self.register_buffer("_half_width", (lv // 2).float(), persistent=False)
        self.register_buffer("_basis", basis, persistent=False)

    def _channel_view(self, t: Tensor, ndim: int) -> Tensor:
        return t.view(1, -1, *([1] * (ndim - 2)))

    def forward(self, z: Tensor) -> Tensor:
        """Quantised codes with the shape of ``z``, in [-1, 1] (even levels never reach 1), as float32."""
        if z.shape[1] != len(self.levels):
            raise ValueError(f"FSQ with levels {self.levels} expects {len(self.levels)} channels, got {z.shape[1]}")
        with autocast_off(z.device.type):
            z = z.float()
            v = lambda t: self._channel_view(t, z.ndim)  # noqa: E731
            bounded = (z + v(self._shift)).tanh() * v(self._half_l) - v(self._offset)
            return round_ste(bounded) / v(self._half_width)

    def latents(self, moments: Tensor, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """Encoder output -> quantised codes in the encoder's dtype (FSQ is deterministic: ``sample`` is refused)."""
        if sample:
            raise ValueError("sample=True only applies to KL models; FSQ encoding is deterministic")
        return self(moments).to(moments.dtype)

    def codes_to_indices(self, codes: Tensor) -> Tensor:
        """(B, C, ...) codes -> (B, ...) int64 indices in [0, codebook_size)."""
        v = lambda t: self._channel_view(t, codes.ndim)  # noqa: E731
        digits = (codes.float() * v(self._half_width) + v(self._half_width)).round().long()
        return (digits * v(self._basis)).sum(dim=1)

    def indices_to_codes(self, indices: Tensor) -> Tensor:
        """(B, ...) integer indices -> (B, C, ...) float32 codes."""
        idx = indices.long().unsqueeze(1)
        v = lambda t: self._channel_view(t, idx.ndim)  # noqa: E731
        digits = (idx // v(self._basis)) % v(self._levels)
        return (digits.float() - v(self._half_width)) / v(self._half_width)
