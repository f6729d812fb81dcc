"""Reading back what ``encode.py`` wrote: latent / FSQ index samples streamed from its shards for a downstream
trainer, split over ranks and DataLoader workers, optionally shuffled.

from vidtok.data import LatentDataset
loader = torch.utils.data.DataLoader(LatentDataset("latents/", shuffle=1000), batch_size=None, num_workers=4)
for sample in loader:  # {"key", "latents" or "indices" (1, ...), "meta": the sample's JSON, "tokens": TokenFile}
    ...
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional, Union

import webdataset as wds

from ..errors import DataSourceError
from ..io.token_files import tokens_from_bytes
from .sources import expand_urls


def latent_shards(source: Union[str, os.PathLike, list[str]]) -> list[str]:
    """The shard urls of ``source``: an ``encode.py`` output folder (its shards, in order), a brace pattern, a
    single url, or a list of urls."""
    if isinstance(source, (list, tuple)):
        return list(source)
    path = Path(source)
    if path.is_dir():
        shards = sorted(str(p) for p in path.glob("part-*.tar"))
        if not shards:
            raise DataSourceError(f"{path} holds no latent shards (part-*.tar); is it an encode.py output.dir?")
        return shards
    return expand_urls(str(source))


def decode_latent_sample(sample: dict[str, Any]) -> dict[str, Any]:
    """A raw webdataset sample (``safetensors`` and ``json`` bytes) -> tensors and metadata."""
    name = f"{sample.get('__url__', '?')}:{sample['__key__']}"
    tokens = tokens_from_bytes(sample["safetensors"], name)
    return {
        "key": sample["__key__"],
        tokens.kind: tokens.data,
        "meta": json.loads(sample["json"]) if "json" in sample else {},
        "tokens": tokens,
    }


class LatentDataset(wds.WebDataset):
    """The samples of latent shards (see [`latent_shards`][] for ``source``), as an IterableDataset.

    Under ``torch.distributed`` each rank reads its own shards, and each DataLoader worker its own part of them
    (so every sample is read once per epoch over all ranks and workers; give at least ranks x workers shards).
    ``shuffle``: a buffer of that many samples, and shards in a ``seed``-ed order; 0 keeps the written order.
    ``resampled``: shards drawn with replacement, endlessly (for step-based training).
    """

    def __init__(
        self,
        source: Union[str, os.PathLike, list[str]],
        *,
        shuffle: int = 0,
        seed: Optional[int] = 0,
        resampled: bool = False,
    ):
        super().__init__(
            latent_shards(source),
            resampled=resampled,
            shardshuffle=100 if shuffle and not resampled else False,  # a buffer of shard names
            detshuffle=True,  # the same shard order for the same seed and epoch
            nodesplitter=None if resampled else wds.split_by_node,
            workersplitter=None if resampled else wds.split_by_worker,
            empty_check=False,
            seed=seed,
        )
        if shuffle:
            self.append(wds.filters.shuffle(shuffle, seed=seed))
        self.append(wds.filters.map(decode_latent_sample))
