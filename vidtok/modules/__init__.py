"""Building blocks of the VidTok encoder and decoder."""

from .blocks import FrameAttention, ResnetBlock
from .conv import CausalConv, FrameConv2d, TimeConv1d, conv3d, pad_time_back, pad_time_front, time_conv, unwrap_conv
from .norm import ChannelLayerNorm
from .resample import SpatialDownsample, SpatialUpsample, TimeDownsample, TimeUpsample

__all__ = [
    "CausalConv",
    "ChannelLayerNorm",
    "FrameAttention",
    "FrameConv2d",
    "ResnetBlock",
    "SpatialDownsample",
    "SpatialUpsample",
    "TimeConv1d",
    "TimeDownsample",
    "TimeUpsample",
    "conv3d",
    "pad_time_back",
    "pad_time_front",
    "time_conv",
    "unwrap_conv",
]
