"""Encoder, decoder, regularizers and the tokenizer that joins them."""

from ..errors import InputError
from .autoencoder import Decoder, Encoder
from .regularizers import FSQ, DiagonalGaussian
from .tokenizer import Tokenizer

__all__ = ["Decoder", "DiagonalGaussian", "Encoder", "FSQ", "InputError", "Tokenizer"]
