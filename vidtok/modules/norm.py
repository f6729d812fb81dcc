"""Normalisation over the channel dimension of (B, C, ...) tensors."""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .ops import channels_last


class ChannelLayerNorm(nn.Module):
    """LayerNorm over channels (dim 1) at every frame and pixel; eps 1e-6 as in VidTok.

    The parameters live in a child ``norm`` because the official checkpoints name them ``...norm.weight``.
    """

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 5:
            x = channels_last(x)  # channels innermost: the normalised axis is contiguous
        y = F.layer_norm(x.movedim(1, -1), self.norm.normalized_shape, self.norm.weight, self.norm.bias, self.norm.eps)
        return y.movedim(-1, 1)
