"""Convolutions on video tensors laid out as (B, C, T, H, W).

All layers run directly on 5-D tensors, without folding time into the batch: a per-frame 2-D conv is a
3-D conv with a temporal kernel of 1 and a per-pixel 1-D temporal conv is a 3-D conv with a 1x1
spatial kernel. Their parameters keep the 2-D / 1-D shapes of the official checkpoints.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .ops import autocast_enabled, channels_last, empty_like_layout, inference
from .padding import cat_time
from .streaming import TemporalContext


class FrameConv2d(nn.Conv2d):
    """A 2-D convolution applied to every frame of a (B, C, T, H, W) tensor."""

    def forward(self, x: Tensor) -> Tensor:
        return F.conv3d(
            x,
            self.weight.unsqueeze(2),
            self.bias,
            stride=(1, *self.stride),
            padding=(0, *self.padding),
        )


class TimeConv1d(nn.Conv1d):
    """A 1-D convolution over time applied at every pixel of a (B, C, T, H, W) tensor."""

    def forward(self, x: Tensor) -> Tensor:
        return F.conv3d(
            x,
            self.weight[..., None, None],
            self.bias,
            stride=(self.stride[0], 1, 1),
            padding=(self.padding[0], 0, 0),
        )

    def causal(self, x: Tensor, past: Tensor) -> Tensor:
        """Output for ``x`` given the ``kernel - 1`` frames before it, without building the padded
        input: during inference each tap is one matrix product over channels, accumulated in place."""
        fast = inference() and self.stride[0] == 1 and x.dtype == self.weight.dtype
        if not fast or autocast_enabled(x.device.type):
            return self(cat_time([past, x]))
        x, past = channels_last(x), channels_last(past.to(x.dtype))
        b, c, t, h, w = x.shape
        n, lag = h * w, past.shape[2]
        taps = self.weight.permute(2, 1, 0)  # (kernel, C_in, C_out); the last tap is the current frame
        out = empty_like_layout(x, (b, taps.shape[2], t, h, w))
        for i in range(b):
            frames = x[i].permute(1, 2, 3, 0).reshape(t * n, c)  # views: channels-last is (T, H, W, C)
            before = past[i].permute(1, 2, 3, 0).reshape(lag * n, c)
            result = out[i].permute(1, 2, 3, 0).reshape(t * n, -1)
            torch.addmm(self.bias, frames, taps[lag], out=result)
            for j in range(lag):  # tap j looks back lag - j frames
                back = lag - j
                if t > back:
                    result[back * n :].addmm_(frames[: (t - back) * n], taps[j])
                for frame in range(min(back, t)):  # early frames reach into the past
                    src = before[(frame + j) * n : (frame + j + 1) * n]
                    result[frame * n : (frame + 1) * n].addmm_(src, taps[j])
        return out


class CausalConv(TemporalContext, nn.Module):
    """Wraps a convolution so that it only looks at current and past frames.

    The wrapped ``conv`` has no temporal padding; ``kernel - stride`` frames are prepended instead:
    zeros or copies of the first frame (``temporal_pad``) at the start of a video, the previous
    chunk's last frames inside a stream. The wrapper exists as its own module because the official
    checkpoints name the inner layer ``....conv``.
    """

    def __init__(self, conv: nn.Conv3d | TimeConv1d, temporal_pad: str = "zeros"):
        super().__init__()
        self.conv = conv
        self.temporal_pad = temporal_pad
        self.time_pad = conv.kernel_size[0] - conv.stride[0]

    def forward(self, x: Tensor) -> Tensor:
        if self.time_pad == 0:
            return self.conv(x)
        if isinstance(self.conv, TimeConv1d):
            past = self.past_frames(x, self.time_pad, self.temporal_pad)
            if self.streaming:
                lag = self.time_pad
                self.keep(x[:, :, -lag:] if x.shape[2] >= lag else cat_time([past, x])[:, :, -lag:])
            return self.conv.causal(x, past)
        padded = self.with_past(x, self.time_pad, self.temporal_pad)
        out = self.conv(padded)
        self.keep(padded[:, :, out.shape[2] * self.conv.stride[0] :])
        return out


def conv3d(
    cin: int,
    cout: int,
    kernel: int,
    *,
    causal: bool,
    temporal_pad: str = "zeros",
    time_stride: int = 1,
) -> nn.Module:
    """A cubic-kernel 3-D conv that keeps H and W; causal in time or centred (zero padded)."""
    spatial = kernel // 2
    if causal:
        inner = nn.Conv3d(cin, cout, kernel, stride=(time_stride, 1, 1), padding=(0, spatial, spatial))
        return CausalConv(inner, temporal_pad)
    time_padding = 0 if time_stride > 1 else kernel // 2
    return nn.Conv3d(cin, cout, kernel, stride=(time_stride, 1, 1), padding=(time_padding, spatial, spatial))


def time_conv(cin: int, cout: int, kernel: int, *, causal: bool, temporal_pad: str = "zeros") -> nn.Module:
    """A per-pixel temporal conv; causal or centred (zero padded)."""
    if causal:
        return CausalConv(TimeConv1d(cin, cout, kernel), temporal_pad)
    return TimeConv1d(cin, cout, kernel, padding=kernel // 2)


def unwrap_conv(module: nn.Module) -> nn.Module:
    """The convolution inside a :class:`CausalConv`, or the module itself."""
    return module.conv if isinstance(module, CausalConv) else module
