"""Decoding many latents into videos (``decode.py``): an ``encode.py`` output, tar shards, or the tensors a
generative model wrote, back to mp4 files.

from vidtok.decoding import decode_dataset
decode_dataset({"data": {"dir": "latents/"}, "output": {"dir": "videos_out/"}})
"""

from .config import DecodeConfig, DecodeInputConfig, DecodeOutputConfig
from .run import DecodeResult, decode_dataset

__all__ = ["DecodeConfig", "DecodeInputConfig", "DecodeOutputConfig", "DecodeResult", "decode_dataset"]
