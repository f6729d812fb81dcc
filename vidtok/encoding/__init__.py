"""Dataset encoding: every video of a listing into latents or FSQ indices in WebDataset shards (``encode.py``).

from vidtok.encoding import encode_dataset
encode_dataset({"tokenizer": "vidtok_fsq_causal_488_32768_v1_1", "data": {"dir": "videos/"},
                "output": {"dir": "latents/", "indices": True}})
"""

from .config import EncodeConfig, EncodeOutputConfig
from .run import EncodeResult, encode_dataset

__all__ = ["EncodeConfig", "EncodeOutputConfig", "EncodeResult", "encode_dataset"]
