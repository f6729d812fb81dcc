"""Residual blocks and the per-frame attention block of the VidTok encoder and decoder."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .conv import unwrap_conv
from .norm import ChannelLayerNorm
from .ops import add, eager_inference, empty_like_layout, inference, silu

ConvFactory = Callable[[int, int, int], nn.Module]

# Input elements a per-frame block takes at a time during inference (64 MB in float32).
BLOCK_CHUNK_ELEMENTS = 1 << 24


class ResnetBlock(nn.Module):
    """Pre-activation residual block: (LayerNorm, SiLU, conv) twice, plus a 1x1 shortcut when widths differ.

    ``make_conv(cin, cout, kernel)`` decides what the block convolves over: every frame (2-D), every
    pixel's time series (1-D) or the whole volume (3-D). ``zero_init`` starts the block as an identity
    (VidTok's temporal blocks do). A ``per_frame`` block (2-D convs) works on frames independently, so
    during inference a long input runs a few frames at a time: its intermediates stay bounded.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        make_conv: ConvFactory,
        *,
        dropout: float = 0.0,
        zero_init: bool = False,
        per_frame: bool = False,
    ):
        super().__init__()
        self.per_frame = per_frame
        self.norm1 = ChannelLayerNorm(in_channels)
        self.conv1 = make_conv(in_channels, out_channels, 3)
        self.norm2 = ChannelLayerNorm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = make_conv(out_channels, out_channels, 3)
        if in_channels != out_channels:
            self.nin_shortcut = make_conv(in_channels, out_channels, 1)
        if zero_init:
            last = unwrap_conv(self.conv2)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, x: Tensor) -> Tensor:
        step = max(1, BLOCK_CHUNK_ELEMENTS // x[0, :, 0].numel())
        if not (self.per_frame and inference() and x.shape[2] > step):
            return self._residual(x)
        out = empty_like_layout(x, (x.shape[0], unwrap_conv(self.conv2).out_channels, *x.shape[2:]))
        for a in range(0, x.shape[2], step):
            self._residual(x[:, :, a : a + step], out=out[:, :, a : a + step])
        return out

    def _residual(self, x: Tensor, out: Tensor | None = None) -> Tensor:
        h = self.conv1(silu(self.norm1(x)))
        h = self.norm2(h)  # its own statement: conv1's output is freed before conv2 allocates
        h = self.conv2(self.dropout(silu(h)))
        shortcut = self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x
        if out is None:
            return add(h, shortcut)
        if eager_inference():
            return torch.add(h, shortcut, out=out)
        return out.copy_(add(h, shortcut))  # under torch.compile (see eager_inference)


class FrameAttention(nn.Module):
    """Single-head self-attention among the pixels of each frame (frames do not attend to each other)."""

    def __init__(self, channels: int, make_pointwise: Callable[[int, int], nn.Module]):
        super().__init__()
        self.norm = ChannelLayerNorm(channels)
        self.q = make_pointwise(channels, channels)
        self.k = make_pointwise(channels, channels)
        self.v = make_pointwise(channels, channels)
        self.proj_out = make_pointwise(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        b, c, t, h, w = x.shape
        y = self.norm(x)

        def tokens(proj: nn.Module) -> Tensor:  # (B, C, T, H, W) -> (B, T, HW, C)
            # contiguous: free in the channels-last layout, and torch.compile (2.14) mis-shapes the
            # CPU attention of inputs whose last dim is strided
            return proj(y).flatten(3).permute(0, 2, 3, 1).contiguous()

        y = F.scaled_dot_product_attention(tokens(self.q), tokens(self.k), tokens(self.v))
        y = y.permute(0, 3, 1, 2).reshape(b, c, t, h, w)
        return add(self.proj_out(y), x)
