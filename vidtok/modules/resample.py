"""Spatial and temporal down/up-sampling layers.

The temporal layers are AlphaBlenders: a learned ``mix_factor`` blends a parameter-free path
(average pooling, or interpolation) with a learned convolution, ``sigmoid(mix) * fixed + (1 - sigmoid(mix)) * conv``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .conv import FrameConv2d, conv3d, pad_time_back, pad_time_front, unwrap_conv


class SpatialDownsample(nn.Module):
    """Halve H and W with a stride-2 3x3 conv on each frame (padded on the bottom/right only)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = FrameConv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class SpatialUpsample(nn.Module):
    """Double H and W by nearest-neighbour repetition, then a 3x3 conv on each frame."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = FrameConv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x.float(), scale_factor=(1.0, 2.0, 2.0), mode="nearest").to(x.dtype)
        return self.conv(x)


class TimeDownsample(nn.Module):
    """Halve T: blend a 3-frame average with a stride-2 3x3x3 conv.

    Causal: one frame is prepended (zeros or a copy of the first frame), so output ``i`` sees input
    frames ``<= 2i + 1``. Non-causal: one zero frame is appended.
    """

    def __init__(self, channels: int, *, causal: bool, temporal_pad: str = "zeros", mix_factor: float = 2.0):
        super().__init__()
        self.causal = causal
        self.temporal_pad = temporal_pad
        self.conv = conv3d(channels, channels, 3, causal=causal, temporal_pad=temporal_pad, time_stride=2)
        self.mix_factor = nn.Parameter(torch.tensor([mix_factor]))

    def forward(self, x: Tensor) -> Tensor:
        padded = pad_time_front(x, 1, self.temporal_pad) if self.causal else pad_time_back(x, 1)
        alpha = torch.sigmoid(self.mix_factor)
        pooled = F.avg_pool3d(padded, (3, 1, 1), stride=(2, 1, 1))
        return alpha * pooled + (1 - alpha) * unwrap_conv(self.conv)(padded)


def upsample_time_linear(x: Tensor) -> Tensor:
    """Double T by linear interpolation (half-pixel centres, edges clamped); computed in float32."""
    return F.interpolate(x.float(), scale_factor=(2.0, 1.0, 1.0), mode="trilinear").to(x.dtype)


class TimeUpsample(nn.Module):
    """Double T: blend the repeated (``nearest``) or interpolated (``linear``) frames with a 3x3x3 conv.

    With ``linear`` the first ``first_group`` input frames (those that come from the first video
    frame and its padding) are interpolated on their own, so they never mix with later frames.
    """

    def __init__(
        self,
        channels: int,
        *,
        causal: bool,
        temporal_pad: str = "zeros",
        mode: str = "nearest",
        mix_factor: float = 2.0,
    ):
        super().__init__()
        self.mode = mode
        self.conv = conv3d(channels, channels, 3, causal=causal, temporal_pad=temporal_pad)
        self.mix_factor = nn.Parameter(torch.tensor([mix_factor]))

    def upsample(self, x: Tensor, first_group: int) -> Tensor:
        if self.mode == "nearest":
            return x.repeat_interleave(2, dim=2)
        head, tail = x[:, :, :first_group], x[:, :, first_group:]
        parts = [upsample_time_linear(head)]
        if tail.shape[2] > 0:
            parts.append(upsample_time_linear(tail))
        return torch.cat(parts, dim=2)

    def forward(self, x: Tensor, first_group: int = 1) -> Tensor:
        x = self.upsample(x, first_group)
        alpha = torch.sigmoid(self.mix_factor)
        return alpha * x + (1 - alpha) * self.conv(x)
