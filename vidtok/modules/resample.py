"""Spatial and temporal down/up-sampling layers.

The temporal layers are AlphaBlenders: a learned ``mix_factor`` blends a parameter-free path
(average pooling, or interpolation) with a learned convolution, ``sigmoid(mix) * fixed + (1 - sigmoid(mix)) * conv``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .conv import FrameConv2d, conv3d, unwrap_conv
from .ops import autocast_enabled, blend, blend_into, channels_last, eager_inference, empty_like_layout
from .padding import cat_time, pad_time_back
from .streaming import TemporalContext

# Elements of conv output computed at a time by nearest time upsampling (64 MB in float32).
UPSAMPLE_CHUNK_ELEMENTS = 1 << 24


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
        # reduced precisions go through float32 (as the original does); float64 stays exact
        work = x if x.dtype in (torch.float32, torch.float64) else x.float()
        x = F.interpolate(work, scale_factor=(1.0, 2.0, 2.0), mode="nearest").to(x.dtype)
        return self.conv(x)


class TimeDownsample(TemporalContext, nn.Module):
    """Halve T: blend a 3-frame average with a stride-2 3x3x3 conv.

    Causal: one frame is prepended (zeros or a copy of the first frame; the previous chunk's last
    frame inside a stream), so output ``i`` sees input frames ``<= 2i + 1``. Non-causal: one zero
    frame is appended.
    """

    def __init__(self, channels: int, *, causal: bool, temporal_pad: str = "zeros", mix_factor: float = 2.0):
        super().__init__()
        self.causal = causal
        self.temporal_pad = temporal_pad
        self.conv = conv3d(channels, channels, 3, causal=causal, temporal_pad=temporal_pad, time_stride=2)
        self.mix_factor = nn.Parameter(torch.tensor([mix_factor]))

    def forward(self, x: Tensor, collapsed_head: bool = False) -> Tensor:
        """``collapsed_head``: frame 0 stands for a pair of identical frames (see
        [`Encoder`][vidtok.models.Encoder])."""
        if collapsed_head:
            x = cat_time([x[:, :, :1], x])
        padded = self.with_past(x, 1, self.temporal_pad) if self.causal else pad_time_back(x, 1)
        pooled = F.avg_pool3d(padded, (3, 1, 1), stride=(2, 1, 1))
        self.keep(padded[:, :, 2 * pooled.shape[2] :])
        return blend(pooled, unwrap_conv(self.conv)(padded), torch.sigmoid(self.mix_factor))


def upsample_time_linear(
    x: Tensor, head: int, start: int = 0, prev: Optional[Tensor] = None, final: bool = True
) -> Tensor:
    """Double the frame rate by linear interpolation, as ``F.interpolate(..., mode="trilinear")`` does
    along time (half-pixel centres: output ``2i`` is ``0.75 x[i] + 0.25 x[i-1]``, output ``2i+1`` is
    ``0.75 x[i] + 0.25 x[i+1]``, neighbours clamped at the edges), with the first ``head`` frames
    interpolated apart from the rest (they stem from the first video frame and its padding).

    For chunked input, ``x`` holds frames ``start ..`` of the sequence and ``prev`` the frame before
    them. Output ``2i+1`` needs frame ``i+1``, so unless ``final`` (or the last frame ends the head
    group) the last frame's second output is held back, and the one held back on the previous chunk
    comes first. Computed in float32 (float64 stays float64); returns ``x``'s dtype.
    """
    dtype = x.dtype
    work = torch.float64 if dtype == torch.float64 else torch.float32
    x = x.to(work)
    n = x.shape[2]
    joined = prev is not None and start != head  # x[0] continues prev's group; prev's 2nd output is pending
    lead = int(joined)
    hold_back = not final and start + n != head
    out = empty_like_layout(x, (*x.shape[:2], lead + 2 * n, *x.shape[3:]))
    # Filled in place through views of one buffer: half the memory of stacking, and autograd-safe.
    pairs = out[:, :, lead:].unflatten(2, (n, 2))
    pairs.copy_(x.unsqueeze(3).expand_as(pairs)).mul_(0.75)
    even, odd = pairs[:, :, :, 0], pairs[:, :, :, 1]
    even[:, :, 1:].add_(x[:, :, :-1], alpha=0.25)
    odd[:, :, :-1].add_(x[:, :, 1:], alpha=0.25)
    even[:, :, :1].add_(prev.to(work) if joined else x[:, :, :1], alpha=0.25)
    odd[:, :, -1:].add_(x[:, :, -1:], alpha=0.25)  # clamped end; held back (and redone) if more follows
    boundary = head - start  # local index of the first frame after the head group
    if 1 <= boundary < n:
        for frames, i in ((even, boundary), (odd, boundary - 1)):
            frames[:, :, i : i + 1] = x[:, :, i : i + 1] * 0.75 + x[:, :, i : i + 1] * 0.25
    if joined:
        p = prev.to(work)
        out[:, :, :1] = p * 0.75 + x[:, :, :1] * 0.25
    return (out[:, :, :-1] if hold_back else out).to(dtype)


def _combine(rows: Tensor, sources: list[Tensor]) -> Tensor:
    """Frames ``rows @ sources`` (B, C, len(rows), H, W), where the sources' frames are taken in order;
    only the frames with a nonzero coefficient are read."""
    used = rows.cpu().ne(0).any(0).nonzero().flatten().tolist()
    ref = sources[-1]
    if not used:
        return ref.new_zeros((*ref.shape[:2], rows.shape[0], *ref.shape[3:]))
    picked, start = [], 0
    for src in sources:
        picked += [src[:, :, j - start : j - start + 1] for j in used if start <= j < start + src.shape[2]]
        start += src.shape[2]
    frames = cat_time([f.to(ref.dtype) for f in picked])
    return torch.einsum("rt,bcthw->bcrhw", rows[:, used].to(ref), frames)


class TimeUpsample(TemporalContext, nn.Module):
    """Double T: blend the repeated (``nearest``) or interpolated (``linear``) frames with a 3x3x3 conv.

    With ``linear`` the first ``first_group`` input frames (those that come from the first video
    frame and its padding) are interpolated on their own, so they never mix with later frames.
    Linear interpolation looks one frame ahead: inside a stream the last output of each chunk waits
    for the next chunk (or for the final one).

    With ``nearest`` the repeated frames are never built: a 3-tap conv over a sequence of pairs is a
    2-tap conv over the original frames with summed taps, computed once for the first and once for
    the second frame of each pair (a third less work, and no double-length input in memory).
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
        self.causal = causal
        self.temporal_pad = temporal_pad
        self.conv = conv3d(channels, channels, 3, causal=causal, temporal_pad=temporal_pad)
        self.mix_factor = nn.Parameter(torch.tensor([mix_factor]))

    def forward(self, x: Tensor, first_group: int = 1, collapsed_head: bool = False) -> Tensor:
        """``collapsed_head``: frame 0 stands for a group of identical frames and so does output frame 0
        (see [`Decoder`][vidtok.models.Decoder])."""
        alpha = torch.sigmoid(self.mix_factor)
        # (the fused forms' frame bookkeeping and out= writes would split a compiled graph)
        fused = eager_inference() and not autocast_enabled(x.device.type) and x.dtype == self.mix_factor.dtype
        if fused and self.mode == "nearest":
            out = self._nearest_fused(x, alpha)
        elif fused:
            out = self._linear_fused(x, first_group, alpha)
        elif self.mode == "nearest":
            out = self._nearest(x, alpha)
        else:
            up = upsample_time_linear(x, first_group, self.seen, self.past, self.is_final)
            self.keep(x[:, :, -1:], consumed=x.shape[2])
            out = blend(up, self.conv(up), alpha)
        return out[:, :, 1:] if collapsed_head else out  # the head's two outputs are one frame

    def _nearest(self, x: Tensor, alpha: Tensor) -> Tensor:
        conv = unwrap_conv(self.conv)
        w0, w1, w2 = conv.weight.unbind(2)
        t = x.shape[2]
        if self.causal:
            # pair i sees frames (i-1, i): first copy (w0+w1, w2), second copy (w0, w1+w2)
            edge_frame = self.past_frames(x, 1, self.temporal_pad)
            self.keep(x[:, :, -1:])
            phases = ((w0 + w1, w2, True), (w0, w1 + w2, True))
        else:
            # first copy sees (i-1, i) with taps (w0, w1+w2), second copy (i, i+1) with (w0+w1, w2)
            edge_frame = x.new_zeros((*x.shape[:2], 1, *x.shape[3:]))
            phases = ((w0, w1 + w2, True), (w0 + w1, w2, False))
        out = empty_like_layout(x, (*x.shape[:2], 2 * t, *x.shape[3:]))
        step = max(1, UPSAMPLE_CHUNK_ELEMENTS // x[0, :, 0].numel())
        for phase, (tap_a, tap_b, looks_back) in enumerate(phases):
            weight = torch.stack((tap_a, tap_b), dim=2)
            targets = out[:, :, phase::2]
            # The pair of one output reaches past the edge of x (built with a padding frame); the
            # others are views of x, convolved a few frames at a time to bound the conv's output.
            if looks_back:
                edge, pair, inner = 0, [edge_frame, x[:, :, :1]], (1, t)
            else:
                edge, pair, inner = t - 1, [x[:, :, -1:], edge_frame], (0, t - 1)
            y = F.conv3d(cat_time(pair), weight, conv.bias, padding=(0, 1, 1))
            blend_into(targets[:, :, edge : edge + 1], x[:, :, edge : edge + 1], y, alpha)
            shift = -1 if looks_back else 0
            for a in range(inner[0], inner[1], step):
                b = min(a + step, inner[1])
                y = F.conv3d(x[:, :, a + shift : b + shift + 1], weight, conv.bias, padding=(0, 1, 1))
                blend_into(targets[:, :, a:b], x[:, :, a:b], y, alpha)
        return out

    # Inference: the conv of a resampled sequence is a resampling of per-tap convs. Every frame the
    # conv sees is a linear combination of input frames (``rows``), so each of its 3 taps is applied
    # once per input frame and the outputs are weighted sums of those results: half the conv work of
    # convolving the double-length sequence for linear upsampling, a quarter less than the folded
    # 2-tap form for nearest, and only one tap's result in memory at a time.

    def _conv_rows(self, up: Tensor, lead: bool = False) -> Tensor:
        """The conv's input frames in terms of the source frames, given ``up`` (the upsampled frames in
        terms of the sources) at the start of a sequence: its padding frames, then ``up``. With ``lead``
        the sources start with the frame before ``x`` (a stream's previous chunk), which is then both
        causal padding frames."""
        n, t = up.shape
        if not self.causal:  # zero padding on both ends
            return torch.cat([up.new_zeros(1, t), up, up.new_zeros(1, t)])
        if lead:
            rows = up.new_zeros(n + 2, t + 1)
            rows[:2, 0] = 1
            rows[2:, 1:] = up
            return rows
        pad = up[:1].expand(2, -1) if self.temporal_pad == "replicate" else up.new_zeros(2, t)
        return torch.cat([pad, up])

    def _linear_fused(self, x: Tensor, first_group: int, alpha: Tensor) -> Tensor:
        # Sources: inside a stream, the conv's two previous input frames (its causal cache) and the
        # previous chunk's last frame (interpolation looks back one frame), then x.
        conv_past = self.conv.past if self.streaming else None
        prev = self.past if self.streaming else None
        sources = [s for s in (conv_past, prev, x) if s is not None]
        n_pad = 0 if conv_past is None else conv_past.shape[2]
        total = sum(s.shape[2] for s in sources)
        basis = torch.eye(total, dtype=torch.float32)
        x_basis = basis[:, total - x.shape[2] :].reshape(1, total, x.shape[2], 1, 1)
        prev_basis = None if prev is None else basis[:, n_pad : n_pad + 1].reshape(1, total, 1, 1, 1)
        up = upsample_time_linear(x_basis, first_group, self.seen, prev_basis, self.is_final)[0, :, :, 0, 0].t()
        rows = self._conv_rows(up) if conv_past is None else torch.cat([basis[:n_pad], up])
        if self.streaming:
            self.keep(x[:, :, -1:], consumed=x.shape[2])
            self.conv.keep(_combine(rows[-2:], sources))  # the conv's last two input frames
        return self._resampled_conv(sources, rows, alpha)

    def _nearest_fused(self, x: Tensor, alpha: Tensor) -> Tensor:
        up = torch.eye(x.shape[2], dtype=torch.float32).repeat_interleave(2, dim=0)
        # causal: both padding frames are the frame before x (the previous chunk's last frame inside a
        # stream, otherwise zeros or a copy of the first frame)
        lead = self.past if self.causal else None
        if self.causal:
            self.keep(x[:, :, -1:])
        sources = [x] if lead is None else [lead, x]
        return self._resampled_conv(sources, self._conv_rows(up, lead is not None), alpha)

    def _resampled_conv(self, sources: list[Tensor], rows: Tensor, alpha: Tensor) -> Tensor:
        """``blend(up, conv(up))`` where the conv's input frames are ``rows @ sources`` (the sources'
        frames in order; the last source is the chunk ``x``): 2 padding frames (causal: both in front;
        otherwise one on each end) then the ``up`` frames."""
        conv = unwrap_conv(self.conv)
        x = channels_last(sources[-1])
        b, c, t, h, w = x.shape
        n = rows.shape[0] - 2
        first_up = 2 if self.causal else 1
        reach = rows.cpu() != 0  # which output frames each input frame reaches (host side: works on meta)
        rows, alpha = rows.to(x), alpha.to(x.dtype)
        sources = [channels_last(src.to(x.dtype)) for src in sources[:-1]] + [x]  # column ranges of ``rows``
        out = empty_like_layout(x, (b, conv.out_channels, n, h, w))
        flat = [out[i].permute(1, 2, 3, 0).reshape(n, -1) for i in range(b)]  # views: (T, H*W*C)
        for i in range(b):  # the blend's share of ``up`` itself, plus the conv's bias
            start = 0
            for src in sources:
                frames = src[i].permute(1, 2, 3, 0).reshape(src.shape[2], -1)
                coef = alpha * rows[first_up : first_up + n, start : start + src.shape[2]]
                if start == 0:
                    torch.mm(coef, frames, out=flat[i])
                else:
                    flat[i].addmm_(coef, frames)
                start += src.shape[2]
            if conv.bias is not None:
                flat[i].addmm_(rows.new_ones(n, 1), ((1 - alpha) * conv.bias).repeat(h * w)[None])
        step = max(1, UPSAMPLE_CHUNK_ELEMENTS // x[0, :, 0].numel())
        for k in range(3):
            coef_k = (1 - alpha) * rows[k : k + n]
            tap = conv.weight[:, :, k : k + 1]
            start = 0
            for src in sources:  # a few frames at a time: one bounded conv result in memory
                for a in range(0, src.shape[2], step):
                    cols = slice(start + a, start + min(a + step, src.shape[2]))
                    coef = coef_k[:, cols]
                    used = reach[k : k + n, cols].any(1).nonzero()  # output frames these input frames reach
                    if len(used) == 0:  # e.g. zero padding
                        continue
                    r0, r1 = int(used[0]), int(used[-1]) + 1
                    y = F.conv3d(src[:, :, a : a + step], tap, None, padding=(0, 1, 1))
                    for i in range(b):
                        flat[i][r0:r1].addmm_(coef[r0:r1], y[i].permute(1, 2, 3, 0).reshape(y.shape[2], -1))
                start += src.shape[2]
        return out
