"""Chunk-by-chunk (streaming) execution of causal layers.

Inside ``with streaming(model) as state:`` every :class:`TemporalContext` layer of ``model`` keeps the
frames it needs from the previous chunk (its causal padding, and for linear temporal upsampling the
look-ahead it has to wait for), so that feeding a video chunk by chunk gives the same result as one
full pass. ``state.final`` tells layers that the current chunk is the last one. Leaving the block
drops every cached tensor; nothing outlives the call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Optional

import torch
from torch import Tensor, nn

from .padding import pad_time_front


class StreamState:
    """Shared by the layers of one stream."""

    def __init__(self) -> None:
        self.final = False


class TemporalContext:
    """Mixin for layers that look at frames before (or, held back, after) the current chunk.

    Outside a stream the past is the layer's causal padding; inside one it is what ``keep`` saved
    from the previous chunk.
    """

    _stream: Optional[StreamState] = None
    _cache: Optional[Tensor] = None
    _seen: int = 0  # frames of input consumed so far in this stream

    @property
    def streaming(self) -> bool:
        return self._stream is not None

    @property
    def is_final(self) -> bool:
        """True outside a stream (the chunk is the whole sequence) or on a stream's last chunk."""
        return self._stream is None or self._stream.final

    def with_past(self, x: Tensor, frames: int, mode: str) -> Tensor:
        """``x`` preceded by ``frames`` frames of past: the cached ones, or padding at the start."""
        if self._cache is not None:
            return torch.cat([self._cache, x], dim=2)
        return pad_time_front(x, frames, mode)

    def keep(self, frames: Tensor) -> None:
        """Save ``frames`` (a copy, so the chunk they come from can be freed) for the next chunk."""
        if self._stream is not None:
            self._cache = frames.clone()


@contextmanager
def streaming(module: nn.Module) -> Iterator[StreamState]:
    """Run ``module`` chunk by chunk; see the module docstring. One stream per module at a time."""
    layers = [m for m in module.modules() if isinstance(m, TemporalContext)]
    if any(layer._stream is not None for layer in layers):
        raise RuntimeError("this model is already streaming; finish that stream first (one stream per model)")
    state = StreamState()
    for layer in layers:
        layer._stream, layer._cache, layer._seen = state, None, 0
    try:
        yield state
    finally:
        for layer in layers:
            layer._stream, layer._cache, layer._seen = None, None, 0
