"""Spatial tiling: run a network on overlapping tiles of large frames and blend the results.

Tiles are ``tile`` x ``tile`` pixels (the last ones in each row and column are shifted back to end
at the border, so every tile has the full size), overlapping by at least ``overlap`` pixels. Each
output pixel is a weighted average of the tiles that cover it, with weights that ramp linearly
across overlaps and are 1 elsewhere, so seams fade instead of jumping. Attention and convolutions
only see their tile, so tiled outputs differ slightly from untiled ones near tile borders;
``benchmarks/tiling.py`` measures by how much.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering ``size``, overlapping by at least ``overlap``."""
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride))
    starts.append(size - tile)
    return starts


def _ramp(length: int, start: int, size: int, overlap: int, device: torch.device) -> Tensor:
    """1-D blending weights of a tile at ``start``: linear ramps where it overlaps a neighbour."""
    w = torch.ones(length, device=device)
    if overlap == 0:
        return w
    ramp = (torch.arange(overlap, device=device, dtype=torch.float32) + 0.5) / overlap
    if start > 0:
        w[:overlap] = ramp
    if start + length < size:
        w[-overlap:] = torch.minimum(w[-overlap:], ramp.flip(0))
    return w


def tiled(fn: Callable[[Tensor, tuple[int, int]], Tensor], x: Tensor, tile: int, overlap: int, scale: float) -> Tensor:
    """Apply ``fn`` to overlapping spatial tiles of ``x`` (B, C, T, H, W) and blend the outputs.

    ``tile`` and ``overlap`` are in ``x``'s pixels; ``fn(part, (y, x))`` maps the tile at offset
    (y, x) of h x w pixels to an output of ``h * scale`` x ``w * scale`` pixels (any channels and
    frames, the same for every tile). The offset lets stateful callers keep one state per tile.
    """
    height, width = x.shape[-2:]
    ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    if len(ys) == 1 and len(xs) == 1:
        return fn(x, (0, 0))
    out_h, out_w = round(height * scale), round(width * scale)
    out: Tensor | None = None
    dtype = x.dtype
    weight = torch.zeros(out_h, out_w, device=x.device)
    for y in ys:
        for x0 in xs:
            part = fn(x[..., y : y + tile, x0 : x0 + tile], (y, x0))
            oy, ox, th, tw = round(y * scale), round(x0 * scale), part.shape[-2], part.shape[-1]
            wy = _ramp(th, oy, out_h, round(overlap * scale), x.device)
            wx = _ramp(tw, ox, out_w, round(overlap * scale), x.device)
            w = wy[:, None] * wx[None, :]
            if out is None:
                dtype = part.dtype
                out = part.new_zeros((*part.shape[:-2], out_h, out_w), dtype=torch.float32)
            out[..., oy : oy + th, ox : ox + tw] += part.float() * w
            weight[oy : oy + th, ox : ox + tw] += w
            del part
    return out.div_(weight).to(dtype)
