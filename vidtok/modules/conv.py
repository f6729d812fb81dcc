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

from .ops import CHANNELS_LAST, autocast_enabled, channels_last, eager_inference, empty_like_layout
from .padding import cat_time, pad_time_front
from .streaming import TemporalContext

# Chunks at least this long run causal temporal convs as one oneDNN conv (see TimeConv1d.causal).
FUSED_TIME_CONV_MIN_FRAMES = 8
# Patches gathered at a time by VolumeConv's inference path (32 MB in float32).
PATCH_BUFFER_ELEMENTS = 1 << 23


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


class VolumeConv(nn.Conv3d):
    """A 3-D convolution; during inference, one with few input channels (the RGB or latent input) runs
    as a single matrix product over gathered patches, written straight into the channels-last layout
    (several times faster than the direct CPU kernel, which has no fast path for 3 channels)."""

    def forward(self, x: Tensor) -> Tensor:
        plain = self.groups == 1 and self.stride == (1, 1, 1) and self.dilation == (1, 1, 1)
        if plain and self.in_channels <= 4 and eager_inference() and not autocast_enabled(x.device.type):
            return self._patch_product(x)
        return super().forward(x)

    def _patch_product(self, x: Tensor) -> Tensor:
        (pt, ph, pw), (kt, kh, kw) = self.padding, self.kernel_size
        x = F.pad(x.contiguous(), (pw, pw, ph, ph, pt, pt))
        b, c, t, h, w = x.shape
        t, h, w = t - kt + 1, h - kh + 1, w - kw + 1
        out = torch.empty((b, self.out_channels, t, h, w), dtype=x.dtype, device=x.device, memory_format=CHANNELS_LAST)
        weight = self.weight.reshape(self.out_channels, -1).t()
        step = max(1, PATCH_BUFFER_ELEMENTS // (c * kt * kh * kw * h * w))  # frames per block
        for i in range(b):
            rows = out[i].permute(1, 2, 3, 0).reshape(t, h * w, -1)  # a view: (T, H, W, C) in memory
            for t0 in range(0, t, step):
                n = min(step, t - t0)
                patches = x.new_empty((c, kt, kh, kw, n, h, w))
                for dt in range(kt):
                    for dh in range(kh):
                        for dw in range(kw):
                            patches[:, dt, dh, dw] = x[i, :, t0 + dt : t0 + dt + n, dh : dh + h, dw : dw + w]
                cols, result = patches.view(c * kt * kh * kw, -1).t(), rows[t0 : t0 + n].view(n * h * w, -1)
                if self.bias is None:
                    torch.mm(cols, weight, out=result)
                else:
                    torch.addmm(self.bias, cols, weight, out=result)
        return out


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

    def causal(self, x: Tensor, past: Tensor | None) -> Tensor:
        """Output for ``x`` given the ``kernel - 1`` frames before it (None: zeros), without building the
        padded input.

        During inference the zero-padded causal conv runs first and the past frames' share of the
        first outputs is then added, one matrix product per tap and frame.
        """
        lag = self.kernel_size[0] - 1
        fast = eager_inference() and self.stride[0] == 1 and x.dtype == self.weight.dtype
        if not fast or autocast_enabled(x.device.type):
            return self(pad_time_front(x, lag, "zeros") if past is None else cat_time([past, x]))
        x = channels_last(x)
        b, c, t, h, w = x.shape
        n = h * w
        taps = self.weight.permute(2, 1, 0)  # (kernel, C_in, C_out); the last tap is the current frame
        if t >= FUSED_TIME_CONV_MIN_FRAMES:
            # oneDNN runs all taps in one pass over memory (10-25% faster than a matrix product per tap
            # here) but also computes ``lag`` outputs past the end, too costly for short chunks.
            out = F.conv3d(x, self.weight[..., None, None], self.bias, padding=(lag, 0, 0))
            out = channels_last(out[:, :, :t])
        else:
            out = empty_like_layout(x, (b, taps.shape[2], t, h, w))
        past = None if past is None else channels_last(past.to(x.dtype))
        for i in range(b):
            frames = x[i].permute(1, 2, 3, 0).reshape(t * n, c)  # views: channels-last is (T, H, W, C)
            result = out[i].permute(1, 2, 3, 0).reshape(t * n, -1)
            if t < FUSED_TIME_CONV_MIN_FRAMES:
                torch.addmm(self.bias, frames, taps[lag], out=result)
                for j in range(lag):  # tap j looks back lag - j frames
                    if t > lag - j:
                        result[(lag - j) * n :].addmm_(frames[: (t - lag + j) * n], taps[j])
            if past is None:
                continue
            before = past[i].permute(1, 2, 3, 0).reshape(lag * n, c)
            for j in range(lag):  # early frames reach into the past
                for frame in range(min(lag - j, t)):
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

    def __init__(self, conv: VolumeConv | TimeConv1d, temporal_pad: str = "zeros"):
        super().__init__()
        self.conv = conv
        self.temporal_pad = temporal_pad
        self.time_pad = conv.kernel_size[0] - conv.stride[0]

    def forward(self, x: Tensor) -> Tensor:
        if self.time_pad == 0:
            return self.conv(x)
        if isinstance(self.conv, TimeConv1d):
            zero_start = self.past is None and self.temporal_pad == "zeros"  # nothing to add for the past
            past = None if zero_start else self.past_frames(x, self.time_pad, self.temporal_pad)
            if self.streaming:
                lag = self.time_pad
                recent = x if x.shape[2] >= lag else self.with_past(x, lag, self.temporal_pad)
                self.keep(recent[:, :, -lag:])
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
        inner = VolumeConv(cin, cout, kernel, stride=(time_stride, 1, 1), padding=(0, spatial, spatial))
        return CausalConv(inner, temporal_pad)
    time_padding = 0 if time_stride > 1 else kernel // 2
    return VolumeConv(cin, cout, kernel, stride=(time_stride, 1, 1), padding=(time_padding, spatial, spatial))


def time_conv(cin: int, cout: int, kernel: int, *, causal: bool, temporal_pad: str = "zeros") -> nn.Module:
    """A per-pixel temporal conv; causal or centred (zero padded)."""
    if causal:
        return CausalConv(TimeConv1d(cin, cout, kernel), temporal_pad)
    return TimeConv1d(cin, cout, kernel, padding=kernel // 2)


def unwrap_conv(module: nn.Module) -> nn.Module:
    """The convolution inside a [`CausalConv`][], or the module itself."""
    return module.conv if isinstance(module, CausalConv) else module
