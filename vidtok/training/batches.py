"""The training clip stream, resumable at any step: it restarts every ``train.data_epoch_steps`` steps with a
seed of its own, so a resumed run replays at most that many steps' batches to land on exactly the batch an
uninterrupted run would see ([`TrainBatches`][])."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

import torch

from ..data.config import DataConfig, build_loader

if TYPE_CHECKING:
    from ..data import VideoClipDataset


@dataclass
class TrainBatches:
    """Batches of ``dataset`` (read as ``data`` says) for training step ``step``, ``grad_accum`` per step."""

    data: DataConfig
    dataset: VideoClipDataset
    seed: int
    epoch_steps: int
    grad_accum: int
    _epoch: Optional[int] = field(default=None, init=False, repr=False)
    _batches: Optional[Iterator[dict]] = field(default=None, init=False, repr=False)

    def at(self, step: int) -> Iterator[dict]:
        """The iterator whose next batch is the next one of ``step``: the current one while it stays in the same
        data epoch, else a fresh one for that epoch, advanced past the batches of its steps before ``step``."""
        epoch, offset = divmod(step, self.epoch_steps)
        if self._batches is None or epoch != self._epoch:
            dataset = self.dataset
            dataset.set_epoch(epoch)
            # The loader draws its workers' base seed from its own generator, not the global RNG that
            # KL sampling uses: a resumed run then draws the same noise as an uninterrupted one.
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._batches = iter(build_loader(self.data, dataset, persistent_workers=False, generator=generator))
            self._epoch = epoch
            for _ in range(offset * self.grad_accum):
                next(self._batches)
        return self._batches

    def reset(self) -> None:
        """Forget the current iterator (after a resume): the next [`at`][] starts the stream afresh."""
        self._batches = None
