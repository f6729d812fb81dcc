"""Video files in and out of a tokenizer: encode, decode and reconstruct files in bounded memory.

The streams these build on live with the model ([`vidtok.models.streams`][]); they are re-exported here.
"""

from ..models.streams import VideoDecoderStream, VideoEncoderStream
from .pipeline import ReadSettings, decode_frames, decode_video, encode_video, reconstruct_stream, reconstruct_video

__all__ = [
    "ReadSettings",
    "VideoDecoderStream",
    "VideoEncoderStream",
    "decode_frames",
    "decode_video",
    "encode_video",
    "reconstruct_stream",
    "reconstruct_video",
]
