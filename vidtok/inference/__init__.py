"""Inference beyond one full pass: chunked and streamed encoding/decoding."""

from .streams import VideoDecoderStream, VideoEncoderStream

__all__ = ["VideoDecoderStream", "VideoEncoderStream"]
