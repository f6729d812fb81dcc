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
import zlib
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, Optional, Union

import torch
import webdataset as wds

from ..errors import DataSourceError
from ..io.token_files import tokens_from_bytes
from .latent_stats import LatentStats
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
    decoded = {
        "key": sample["__key__"],
        tokens.kind: tokens.data,
        "meta": json.loads(sample["json"]) if "json" in sample else {},
        "tokens": tokens,
    }
    if tokens.logvar is not None:
        decoded["logvar"] = tokens.logvar
    return decoded


class LatentDataset(wds.WebDataset):
    """The samples of latent shards (see [`latent_shards`][] for ``source``), as an IterableDataset.

    Under ``torch.distributed`` each rank reads its own shards, and each DataLoader worker its own part of them
    (so every sample is read once per epoch over all ranks and workers; give at least ranks x workers shards).
    ``shuffle``: a buffer of that many samples, and shards in a ``seed``-ed order; 0 keeps the written order.
    ``resampled``: shards drawn with replacement, endlessly (for step-based training). ``normalize``: KL latents
    normalized with the statistics ``encode.py`` wrote beside the shards (``source`` is then its output folder;
    ``True`` or ``"channel"``: per channel, ``"global"``: one mean and std; see
    [`LatentStats`][vidtok.data.LatentStats]). ``sample``: latents drawn from the posterior each time a sample is
    read, ``mean + exp(logvar / 2) * eps`` (an ``encode.py`` run with ``output.posterior=true``); ``eps`` comes from
    ``seed``, the epoch ([`set_epoch`][vidtok.data.LatentDataset.set_epoch]) and the sample's key, so a draw is the
    same whichever rank and worker read it, and new each epoch. Drawn before ``normalize``. A sample that holds a
    log-variance also has it as ``logvar``.

    ``batch_size``: batches of that many samples of one shape instead of single samples (one buffer per shape, so
    videos of several sizes or lengths, ``encode.py resize=buckets``, batch without padding; use a DataLoader with
    ``batch_size=None``): tensors joined on the first dimension, ``key`` / ``meta`` / ``tokens`` as lists. Each
    worker batches what it reads; what is left in the buffers at the end comes as smaller batches, or is
    dropped with ``drop_last``.
    """

    def __init__(
        self,
        source: Union[str, os.PathLike, list[str]],
        *,
        shuffle: int = 0,
        seed: Optional[int] = 0,
        resampled: bool = False,
        normalize: Union[bool, str] = False,
        sample: bool = False,
        batch_size: Optional[int] = None,
        drop_last: bool = False,
    ):
        if normalize not in (False, True, "channel", "global"):
            raise ValueError(f"normalize must be False, True, 'channel' or 'global', got {normalize!r}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None (single samples), got {batch_size}")
        stats = None
        if normalize:
            if isinstance(source, (list, tuple)) or not Path(source).is_dir():
                raise DataSourceError("normalize=True reads stats.json from an encode.py output folder: give its path")
            stats = LatentStats.load(source)
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
        self.draw_epoch = 0
        if sample:
            self.append(wds.filters.map(partial(_drawn, dataset=self, seed=seed or 0)))
        if stats is not None:
            self.append(wds.filters.map(partial(_normalized, stats=stats, per_channel=normalize != "global")))
        if batch_size is not None:
            self.append(partial(batches_by_shape, batch_size=batch_size, drop_last=drop_last))

    def set_epoch(self, epoch: int) -> None:
        """The epoch that posterior draws (``sample=True``) depend on: call it before each epoch's iteration (as
        with a DistributedSampler; DataLoader workers take it when they start)."""
        self.draw_epoch = epoch


def _drawn(sample: dict[str, Any], dataset: LatentDataset, seed: int) -> dict[str, Any]:
    if "logvar" not in sample:
        raise DataSourceError(
            f"sample {sample['key']} holds no posterior log-variance: encode with output.posterior=true to sample"
        )
    key = f"{seed}:{dataset.draw_epoch}:{sample['key']}".encode()
    generator = torch.Generator().manual_seed(zlib.crc32(key) | (len(key) << 32))
    mean, logvar = sample["latents"], sample["logvar"]
    noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
    return dict(sample, latents=mean + torch.exp(0.5 * logvar) * noise)


def _normalized(sample: dict[str, Any], stats: LatentStats, per_channel: bool) -> dict[str, Any]:
    if "latents" not in sample:
        raise DataSourceError(f"sample {sample['key']} holds FSQ indices: only KL latents are normalized")
    return dict(sample, latents=stats.normalize(sample["latents"], per_channel))


def batches_by_shape(samples: Iterable[dict], batch_size: int, drop_last: bool = False) -> Iterator[dict]:
    """Decoded samples -> batches of ``batch_size`` samples whose tensors have one shape (a buffer per shape);
    the buffers' rest at the end as smaller batches unless ``drop_last``."""
    buffers: dict[tuple, list[dict]] = {}
    for sample in samples:
        data = sample["latents"] if "latents" in sample else sample["indices"]
        shape = tuple(data.shape)
        buffer = buffers.setdefault(shape, [])
        buffer.append(sample)
        if len(buffer) == batch_size:
            yield _joined(buffers.pop(shape))
    if not drop_last:
        for buffer in buffers.values():
            yield _joined(buffer)


def _joined(samples: list[dict]) -> dict:
    """Samples of one shape as one batch: tensors concatenated (each sample holds a batch of 1), the rest listed."""
    first = samples[0]
    return {
        name: torch.cat([s[name] for s in samples])
        if isinstance(first[name], torch.Tensor)
        else [s[name] for s in samples]
        for name in first
    }
