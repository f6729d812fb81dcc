"""Building blocks of the VidTok encoder and decoder."""

from .blocks import FrameAttention, ResnetBlock
from .conv import CausalConv, FrameConv2d, TimeConv1d, VolumeConv, conv3d, time_conv, unwrap_conv
from .norm import ChannelLayerNorm
from .padding import pad_time_back, pad_time_front
from .resample import SpatialDownsample, SpatialUpsample, TimeDownsample, TimeUpsample, upsample_time_linear
from .streaming import StreamState, TemporalContext, streaming

__all__ = [
    "CausalConv",
    "ChannelLayerNorm",
    "FrameAttention",
    "FrameConv2d",
    "ResnetBlock",
    "SpatialDownsample",
    "SpatialUpsample",
    "StreamState",
    "TemporalContext",
    "TimeConv1d",
    "TimeDownsample",
    "TimeUpsample",
    "VolumeConv",
    "conv3d",
    "pad_time_back",
    "pad_time_front",
    "streaming",
    "time_conv",
    "unwrap_conv",
    "upsample_time_linear",
]
