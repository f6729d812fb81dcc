"""Encoder, decoder, regularizers, the tokenizer that joins them, its options and its streams."""

from .autoencoder import Decoder, Encoder
from .options import InferenceOptions
from .regularizers import FSQ, DiagonalGaussian
from .streams import VideoDecoderStream, VideoEncoderStream
from .tokenizer import Tokenizer

__all__ = [
    "Decoder",
    "DiagonalGaussian",
    "Encoder",
    "FSQ",
    "InferenceOptions",
    "Tokenizer",
    "VideoDecoderStream",
    "VideoEncoderStream",
]
