"""Exponential moving average of a model's trainable weights."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


class EMA(nn.Module):
    """Shadow copies of ``model``'s trainable parameters, updated after every optimiser step.

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates (as the original's
    ``LitEma``), so early averages are not dominated by the random initial weights. Its state
    (shadows and update count) is saved with the training state.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        super().__init__()
        self.decay = decay
        self.names = [name for name, p in model.named_parameters() if p.requires_grad]
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        params = dict(model.named_parameters())
        shadows = [nn.Parameter(params[n].detach().clone(), requires_grad=False) for n in self.names]
        self.shadows = nn.ParameterList(shadows)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.num_updates += 1
        n = int(self.num_updates)
        decay = min(self.decay, (1 + n) / (10 + n))
        params = dict(model.named_parameters())
        for name, shadow in zip(self.names, self.shadows, strict=True):
            shadow.lerp_(params[name].detach().to(shadow.dtype), 1 - decay)

    def averaged_state_dict(self, model: nn.Module) -> dict[str, Tensor]:
        """``model``'s state dict with the averaged values in place of the trainable parameters."""
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        for name, shadow in zip(self.names, self.shadows, strict=True):
            state[name] = shadow.detach().clone()
        return state

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """Temporarily swap the averaged weights into ``model`` (e.g. for validation)."""
        params = dict(model.named_parameters())
        saved = [params[n].detach().clone() for n in self.names]
        with torch.no_grad():
            for name, shadow in zip(self.names, self.shadows, strict=True):
                params[name].copy_(shadow)
        try:
            yield
        finally:
            with torch.no_grad():
                for name, value in zip(self.names, saved, strict=True):
                    params[name].copy_(value)
