"""Deterministic synthetic videos for demos and tests (no files, no downloads)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def moving_shapes(frames: int, height: int, width: int, batch: int = 1, seed: int = 0) -> Tensor:
    """A (batch, 3, frames, height, width) clip in [-1, 1]: a drifting colour gradient with a disc and
    a square moving across it. Smooth enough for a trained tokenizer to reconstruct well, with real
    motion between frames."""
    gen = torch.Generator().manual_seed(seed)
    ys = torch.linspace(0, 1, height).view(1, height, 1)
    xs = torch.linspace(0, 1, width).view(1, 1, width)
    clips = []
    for _ in range(batch):
        phase = torch.rand(3, generator=gen) * 2 * math.pi
        colour_disc = torch.rand(3, generator=gen) * 2 - 1
        colour_square = torch.rand(3, generator=gen) * 2 - 1
        video = torch.empty(3, frames, height, width)
        for t in range(frames):
            s = t / max(frames - 1, 1)
            for c in range(3):
                video[c, t] = 0.6 * torch.sin(2 * math.pi * (xs + 0.5 * ys + 0.3 * s) + phase[c])[0]
            cy, cx = 0.25 + 0.5 * s, 0.2 + 0.6 * s
            disc = ((ys - cy) ** 2 + (xs - cx) ** 2 < 0.02)[0]
            square = (((ys - (0.75 - 0.5 * s)).abs() < 0.1) & ((xs - (0.8 - 0.6 * s)).abs() < 0.1))[0]
            for c in range(3):
                video[c, t][disc] = colour_disc[c]
                video[c, t][square] = colour_square[c]
        clips.append(video)
    return torch.stack(clips).clamp(-1, 1)
