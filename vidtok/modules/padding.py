"""Padding along the time axis (dim 2) of (B, C, T, ...) tensors."""

from __future__ import annotations

from torch import Tensor

from .ops import empty_like_layout


def pad_time_front(x: Tensor, frames: int, mode: str) -> Tensor:
    """Prepend ``frames`` frames along dim 2: zeros (``mode="zeros"``) or copies of the first frame.
    The result keeps ``x``'s memory layout."""
    if frames == 0:
        return x
    out = empty_like_layout(x, (*x.shape[:2], x.shape[2] + frames, *x.shape[3:]))
    if mode == "zeros":
        out[:, :, :frames].zero_()
    else:
        out[:, :, :frames] = x[:, :, :1]
    out[:, :, frames:] = x
    return out


def pad_time_back(x: Tensor, frames: int) -> Tensor:
    """Append ``frames`` zero frames along dim 2 (keeping ``x``'s memory layout)."""
    if frames == 0:
        return x
    out = empty_like_layout(x, (*x.shape[:2], x.shape[2] + frames, *x.shape[3:]))
    out[:, :, : x.shape[2]] = x
    out[:, :, x.shape[2] :].zero_()
    return out


def cat_time(parts: list[Tensor]) -> Tensor:
    """Concatenate along dim 2, keeping the first part's memory layout."""
    if len(parts) == 1:
        return parts[0]
    out = empty_like_layout(parts[0], (*parts[0].shape[:2], sum(p.shape[2] for p in parts), *parts[0].shape[3:]))
    start = 0
    for part in parts:
        out[:, :, start : start + part.shape[2]] = part
        start += part.shape[2]
    return out
