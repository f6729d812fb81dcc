"""Frames -> model input: resize to cover the target size (antialiased), crop, scale to [-1, 1].

As the original: frames are scaled to [0, 1] floats first, resized with antialiased bilinear
interpolation so the short side fits (torchvision's size rule: the long side becomes
``int(size * long / short)``), then cropped; no rounding to uint8 in between. For non-square targets
the resize makes both sides cover the crop (the original resizes the short side to the height and
would pad a crop wider than the result). [`uint8_resized_clip`][] is the other reading, ``vidtok encode``'s:
resized on uint8 frames (rounded), then scaled.
"""

from __future__ import annotations

import random
from typing import Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from ..io.video import cover_size, frames_to_tensor, resize_crop


def crop_offsets(
    height: int, width: int, target_h: int, target_w: int, rng: Optional[random.Random] = None
) -> tuple[int, int]:
    """Top-left corner of a centre crop, or of a uniformly random one when ``rng`` is given."""
    if rng is None:
        return (height - target_h) // 2, (width - target_w) // 2
    return rng.randint(0, height - target_h), rng.randint(0, width - target_w)


def frames_to_clip(
    frames: Tensor, size: tuple[int, int], rng: Optional[random.Random] = None, *, flip: bool = False
) -> Tensor:
    """uint8 frames ``(T, H, W, 3)`` -> float clip ``(3, T, h, w)`` in [-1, 1] for ``size=(h, w)``.

    Centre crop, or a random crop (and a random horizontal flip with ``flip``) drawn from ``rng``.
    """
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames (T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    target_h, target_w = size
    x = rearrange(frames, "t h w c -> t c h w").float().div_(255.0)
    new_h, new_w = cover_size(x.shape[-2], x.shape[-1], target_h, target_w)
    if (new_h, new_w) != tuple(x.shape[-2:]):
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
    top, left = crop_offsets(new_h, new_w, target_h, target_w, rng)
    x = x[:, :, top : top + target_h, left : left + target_w]
    if flip and rng is not None and rng.random() < 0.5:
        x = x.flip(-1)
    return rearrange(x.mul(2.0).sub_(1.0), "t c h w -> c t h w").contiguous()


def uint8_resized_clip(frames: Tensor, size: tuple[int, int]) -> Tensor:
    """uint8 frames ``(T, H, W, 3)`` -> float clip ``(3, T, h, w)`` in [-1, 1] as ``vidtok encode`` reads a file:
    resized and centre-cropped on uint8 ([`resize_crop`][vidtok.io.video.resize_crop]), then scaled."""
    return frames_to_tensor(resize_crop(frames, *size))[0]
