"""Padding along the time axis (dim 2) of (B, C, T, ...) tensors."""

from __future__ import annotations

import torch
from torch import Tensor


def pad_time_front(x: Tensor, frames: int, mode: str) -> Tensor:
    """Prepend ``frames`` frames along dim 2: zeros (``mode="zeros"``) or copies of the first frame."""
    if frames == 0:
        return x
    shape = (*x.shape[:2], frames, *x.shape[3:])
    pad = x.new_zeros(shape) if mode == "zeros" else x[:, :, :1].expand(shape)
    return torch.cat([pad, x], dim=2)


def pad_time_back(x: Tensor, frames: int) -> Tensor:
    """Append ``frames`` zero frames along dim 2."""
    if frames == 0:
        return x
    return torch.cat([x, x.new_zeros((*x.shape[:2], frames, *x.shape[3:]))], dim=2)
