"""The VidTok encoder and decoder: one implementation for causal / non-causal and v1.0 / v1.1.

Each resolution level alternates a per-frame (2-D) residual block with a per-pixel temporal (1-D)
residual block; levels listed in the compression config then halve (encoder) or double (decoder)
H, W and possibly T. A 3-D mid block (two volume residual blocks around per-frame attention) joins
the two. Module names follow the official checkpoints (``down``, ``down_temporal``, ``mid``, ``up``,
``up_temporal``, ...), so their state dicts load without any renaming.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import partial
from typing import Optional

import torch.nn as nn
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ..config import TokenizerConfig
from ..modules import (
    ChannelLayerNorm,
    FrameAttention,
    FrameConv2d,
    ResnetBlock,
    SpatialDownsample,
    SpatialUpsample,
    TimeDownsample,
    TimeUpsample,
    conv3d,
    time_conv,
)
from ..modules.ops import channels_last, silu


class _Layers:
    """Factories for the layers of one model variant (causal or not, and its temporal padding)."""

    def __init__(self, cfg: TokenizerConfig):
        m = cfg.model
        self.causal = m.causal
        self.pad = m.temporal_pad
        self.upsample_mode = m.temporal_upsample
        self.dropout = m.dropout

    def frame_conv(self, cin: int, cout: int, kernel: int) -> nn.Module:
        return FrameConv2d(cin, cout, kernel, padding=kernel // 2)

    def volume_conv(self, cin: int, cout: int, kernel: int) -> nn.Module:
        return conv3d(cin, cout, kernel, causal=self.causal, temporal_pad=self.pad)

    def time_conv(self, cin: int, cout: int, kernel: int) -> nn.Module:
        return time_conv(cin, cout, kernel, causal=self.causal, temporal_pad=self.pad)

    def spatial_block(self, cin: int, cout: int) -> ResnetBlock:
        return ResnetBlock(cin, cout, self.frame_conv, dropout=self.dropout, per_frame=True)

    def temporal_block(self, channels: int) -> ResnetBlock:
        return ResnetBlock(channels, channels, self.time_conv, dropout=self.dropout, zero_init=True)

    def mid(self, channels: int) -> nn.Module:
        mid = nn.Module()
        mid.block_1 = ResnetBlock(channels, channels, self.volume_conv, dropout=self.dropout)
        mid.attn_1 = FrameAttention(channels, partial(self.volume_conv, kernel=1))
        mid.block_2 = ResnetBlock(channels, channels, self.volume_conv, dropout=self.dropout)
        return mid

    def level(self, cin: int, cout: int, depth: int) -> tuple[nn.Module, nn.Module]:
        """One resolution level: ``depth`` spatial blocks (``.block``) and their temporal partners."""
        spatial = _level(self.spatial_block(cin if j == 0 else cout, cout) for j in range(depth))
        temporal = _level(self.temporal_block(cout) for _ in range(depth))
        return spatial, temporal

    def time_downsample(self, channels: int) -> TimeDownsample:
        return TimeDownsample(channels, causal=self.causal, temporal_pad=self.pad)

    def time_upsample(self, channels: int) -> TimeUpsample:
        return TimeUpsample(channels, causal=self.causal, temporal_pad=self.pad, mode=self.upsample_mode)


def _level(blocks: Iterable[nn.Module]) -> nn.Module:
    level = nn.Module()
    level.block = nn.ModuleList(blocks)
    return level


class _Network(nn.Module):
    """What the encoder and decoder share: per-block gradient checkpointing, and whether frame 0 stands for a causal
    model's whole first group ([`collapses_first_group`][]).

    The forward passes loop over blocks inline, rebinding ``h``: a helper taking a whole level's input as
    an argument would keep that activation alive until the level ends (hundreds of MB at full width).
    """

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        self.gradient_checkpointing = cfg.model.gradient_checkpointing
        self.collapse_head = collapses_first_group(cfg)

    def _run(self, block: nn.Module, x: Tensor) -> Tensor:
        """``block(x)``, recomputing its activations in backward when gradient checkpointing is on."""
        if self.gradient_checkpointing and self.training and x.requires_grad:
            return checkpoint(block, x, use_reentrant=False)
        return block(x)


def _interleaved(spatial: nn.Module, temporal: nn.Module) -> Iterator[nn.Module]:
    """A level's per-frame blocks alternating with its per-pixel temporal blocks."""
    for block_s, block_t in zip(spatial.block, temporal.block, strict=True):
        yield block_s
        yield block_t


def _mid(mid: nn.Module) -> tuple[nn.Module, ...]:
    return (mid.block_1, mid.attn_1, mid.block_2)


def collapses_first_group(cfg: TokenizerConfig) -> bool:
    """Whether the first frame group can be carried as a single frame.

    A causal model whose temporal padding repeats the first frame (v1.1) sees the f-1 copies of
    frame 0 that lead a video as f identical frames, and they stay identical through every layer
    (replicate-padded causal convs, per-frame blocks, pooling and interpolation of equal frames). Such
    models run on sequences whose frame 0 stands for that whole group: the encoder doubles it where
    time is halved, the decoder keeps one frame where time is doubled. Same results (up to float
    rounding), (f-1)/(T+f-1) less work, and nothing to trim.
    """
    return cfg.model.causal and cfg.model.temporal_pad == "replicate"


class Encoder(_Network):
    """Video (B, 3, T, H, W) -> moments (B, 2*C or C, t, H/fs, W/fs), for T padded as the Tokenizer does.

    ``first_chunk`` says that ``x`` starts at the video's first frame (always, outside a stream); with a
    collapsed first group ([`collapses_first_group`][]) that frame stands for the whole group.
    """

    def __init__(self, cfg: TokenizerConfig):
        super().__init__(cfg)
        layers = _Layers(cfg)
        comp, ch = cfg.compression, cfg.model.ch
        nrb = cfg.model.num_res_blocks
        out_channels = 2 * cfg.latent_channels if cfg.regularizer.kind == "kl" else cfg.latent_channels
        self.spatial_down = set(comp.spatial_down)
        self.temporal_down = set(comp.temporal_down)

        self.conv_in = layers.volume_conv(cfg.model.in_channels, ch, 3)
        self.down = nn.ModuleList()
        self.down_temporal = nn.ModuleList()
        block_in = ch
        for i, mult in enumerate(comp.ch_mult):
            block_out = ch * mult
            down, down_t = layers.level(block_in, block_out, nrb)
            if i in self.spatial_down:
                down.downsample = SpatialDownsample(block_out)
                if i in self.temporal_down:
                    down_t.downsample = layers.time_downsample(block_out)
            self.down.append(down)
            self.down_temporal.append(down_t)
            block_in = block_out

        self.mid = layers.mid(block_in)
        self.norm_out = ChannelLayerNorm(block_in)
        self.conv_out = layers.volume_conv(block_in, out_channels, 3)

    def forward(self, x: Tensor, first_chunk: bool = True, collapse_head: Optional[bool] = None) -> Tensor:
        """``collapse_head=False``: ``x`` holds its first group in full (f frames that need not be equal)."""
        head = (self.collapse_head if collapse_head is None else collapse_head) and first_chunk
        h = channels_last(self.conv_in(channels_last(x)))  # a 3-channel input conv may not keep the layout
        for i, (down, down_t) in enumerate(zip(self.down, self.down_temporal, strict=True)):
            for block in _interleaved(down, down_t):
                h = self._run(block, h)
            if i in self.spatial_down:
                h = down.downsample(h)
                if i in self.temporal_down:
                    h = down_t.downsample(h, collapsed_head=head)
        for block in _mid(self.mid):
            h = self._run(block, h)
        return self.conv_out(silu(self.norm_out(h)))


class Decoder(_Network):
    """Latents (B, C, t, h, w) -> video (B, 3, T', fs*h, fs*w).

    T' is f*t, of which a causal model's first f-1 frames are padding that the Tokenizer drops; with a
    collapsed first group ([`collapses_first_group`][]) T' is 1 + f*(t-1) and nothing is dropped.
    ``first_chunk`` says that ``z`` starts at the first latent (always, outside a stream).
    """

    def __init__(self, cfg: TokenizerConfig):
        super().__init__(cfg)
        layers = _Layers(cfg)
        comp, ch = cfg.compression, cfg.model.ch
        nrb = cfg.model.num_res_blocks
        self.spatial_up = set(comp.spatial_up)
        self.temporal_up = set(comp.temporal_up)

        block_in = ch * comp.ch_mult[-1]
        self.conv_in = layers.volume_conv(cfg.latent_channels, block_in, 3)
        self.mid = layers.mid(block_in)

        up_levels: list[nn.Module] = []
        up_t_levels: list[nn.Module] = []
        for i in reversed(range(len(comp.ch_mult))):
            block_out = ch * comp.ch_mult[i]
            up, up_t = layers.level(block_in, block_out, nrb + 1)
            if i in self.spatial_up:
                up.upsample = SpatialUpsample(block_out)
            if i in self.temporal_up:
                up_t.upsample = layers.time_upsample(block_out)
            up_levels.insert(0, up)
            up_t_levels.insert(0, up_t)
            block_in = block_out
        self.up = nn.ModuleList(up_levels)
        self.up_temporal = nn.ModuleList(up_t_levels)

        self.norm_out = ChannelLayerNorm(block_in)
        self.conv_out = layers.volume_conv(block_in, cfg.model.in_channels, 3)

    def forward(self, z: Tensor, first_chunk: bool = True, collapse_head: Optional[bool] = None) -> Tensor:
        """``collapse_head=False`` decodes the first latent as a full group of f frames even for a model that
        could collapse it (for latents whose first group was not f copies of one frame)."""
        collapse = self.collapse_head if collapse_head is None else collapse_head
        head = collapse and first_chunk
        h = self.conv_in(channels_last(z))
        for block in _mid(self.mid):
            h = self._run(block, h)
        first_group = 1  # frames that stem from the first latent: interpolated apart in v1.1
        for i in reversed(range(len(self.up))):
            up, up_t = self.up[i], self.up_temporal[i]
            for block in _interleaved(up, up_t):
                h = self._run(block, h)
            if i in self.spatial_up:
                h = up.upsample(h)
                if i in self.temporal_up:
                    if collapse:  # the first group is one frame at every level
                        h = up_t.upsample(h, 1, collapsed_head=head)
                    else:
                        h = up_t.upsample(h, first_group)
                        first_group *= 2
        return self.conv_out(silu(self.norm_out(h)))
