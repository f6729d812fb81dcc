"""The statistics ``encode.py`` writes beside its shards (``stats.json``, see [`vidtok.encoding.stats`][]), read
back to normalize latents for a generative model and to undo it on its outputs.

stats = LatentStats.load("latents/")         # a folder holding stats.json, or the file
z_norm = stats.normalize(z)                   # per channel: (z - mean[c]) / std[c]; per_channel=False: global
z = stats.denormalize(z_norm)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import torch
from torch import Tensor

from ..errors import DataSourceError

STATS_FILE = "stats.json"


@dataclass(frozen=True)
class LatentStats:
    """Per-channel ``mean`` / ``std`` (C,) and the ``global_mean`` / ``global_std`` of a set of KL latents."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    global_mean: float
    global_std: float

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> LatentStats:
        """From a ``stats.json`` file or a folder holding one (an ``encode.py`` output.dir)."""
        file = Path(path)
        if file.is_dir():
            file = file / STATS_FILE
        try:
            stats = json.loads(file.read_text())
        except (OSError, ValueError) as err:
            raise DataSourceError(f"cannot read latent statistics from {file}: {err}") from None
        if stats.get("kind") != "latents" or "mean" not in stats:
            found = "FSQ indices" if stats.get("kind") == "indices" else "no per-channel moments"
            raise DataSourceError(f"{file} holds {found}; normalizing needs the statistics of KL latents")
        overall = stats["global"]
        return cls(tuple(stats["mean"]), tuple(stats["std"]), overall["mean"], overall["std"])

    def _shift_scale(self, z: Tensor, per_channel: bool) -> tuple[Tensor, Tensor]:
        if not per_channel:
            return torch.tensor(self.global_mean, dtype=z.dtype, device=z.device), torch.tensor(
                self.global_std, dtype=z.dtype, device=z.device
            )
        if z.ndim < 2 or z.shape[1] != len(self.mean):
            raise ValueError(
                f"latents of shape {tuple(z.shape)}: expected (B, {len(self.mean)}, ...) for these statistics"
            )
        view = (1, -1) + (1,) * (z.ndim - 2)
        mean = torch.tensor(self.mean, dtype=z.dtype, device=z.device).view(view)
        std = torch.tensor(self.std, dtype=z.dtype, device=z.device).view(view)
        return mean, std

    def normalize(self, z: Tensor, per_channel: bool = True) -> Tensor:
        """``(z - mean) / std``, per channel of (B, C, ...) latents or with the global figures."""
        mean, std = self._shift_scale(z, per_channel)
        return (z - mean) / std

    def denormalize(self, z: Tensor, per_channel: bool = True) -> Tensor:
        """The inverse of [`normalize`][vidtok.data.LatentStats.normalize]."""
        mean, std = self._shift_scale(z, per_channel)
        return z * std + mean
