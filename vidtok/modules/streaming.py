"""Chunk-by-chunk (streaming) execution of causal layers.

Inside ``with streaming(model) as state:`` every [`TemporalContext`][] layer of ``model`` keeps the
frames it needs from the previous chunk (its causal padding, and for linear temporal upsampling the
look-ahead it has to wait for), so that feeding a video chunk by chunk gives the same result as one
full pass. ``state.final`` tells layers that the current chunk is the last one. Leaving the block
drops every cached tensor; nothing outlives the call.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from typing import Optional

from torch import Tensor, nn

from .padding import cat_time, pad_time_front


class _Slot:
    """What one layer remembers about one lane of a stream."""

    __slots__ = ("cache", "seen")

    def __init__(self) -> None:
        self.cache: Optional[Tensor] = None
        self.seen = 0  # input frames consumed so far


class StreamState:
    """Shared by the layers of one stream; holds every layer's cached frames.

    ``lane`` selects independent sets of caches within one stream, e.g. one per spatial tile.
    """

    def __init__(self) -> None:
        self.final = False
        self.lane: Hashable = 0
        self.slots: dict[tuple[int, Hashable], _Slot] = {}

    @property
    def cache_bytes(self) -> int:
        """Bytes held in cached frames across all layers and lanes."""
        return sum(s.cache.numel() * s.cache.element_size() for s in self.slots.values() if s.cache is not None)


class TemporalContext:
    """Mixin for layers that look at frames before (or, held back, after) the current chunk.

    Outside a stream the past is the layer's causal padding; inside one it is what ``keep`` saved
    from the previous chunk of the current lane.
    """

    _stream: Optional[StreamState] = None

    @property
    def streaming(self) -> bool:
        return self._stream is not None

    @property
    def is_final(self) -> bool:
        """True outside a stream (the chunk is the whole sequence) or on a stream's last chunk."""
        return self._stream is None or self._stream.final

    def _slot(self) -> Optional[_Slot]:
        if self._stream is None:
            return None
        return self._stream.slots.setdefault((id(self), self._stream.lane), _Slot())

    @property
    def past(self) -> Optional[Tensor]:
        """Frames kept from the previous chunk, if any."""
        slot = self._slot()
        return None if slot is None else slot.cache

    @property
    def seen(self) -> int:
        """Input frames consumed before the current chunk (0 outside a stream)."""
        slot = self._slot()
        return 0 if slot is None else slot.seen

    def past_frames(self, x: Tensor, frames: int, mode: str) -> Tensor:
        """The ``frames`` frames before ``x``: the cached ones, or padding (zeros or the first frame)."""
        past = self.past
        if past is not None:
            return past
        shape = (*x.shape[:2], frames, *x.shape[3:])
        return x.new_zeros(shape) if mode == "zeros" else x[:, :, :1].expand(shape)

    def with_past(self, x: Tensor, frames: int, mode: str) -> Tensor:
        """``x`` preceded by ``frames`` frames of past: the cached ones, or padding at the start."""
        past = self.past
        if past is not None:
            return cat_time([past, x])
        return pad_time_front(x, frames, mode)

    def keep(self, frames: Tensor, consumed: int = 0) -> None:
        """Save ``frames`` (a copy, so the chunk they come from can be freed) for the next chunk."""
        slot = self._slot()
        if slot is not None:
            slot.cache = frames.clone()
            slot.seen += consumed


@contextmanager
def streaming(module: nn.Module) -> Iterator[StreamState]:
    """Run ``module`` chunk by chunk; see the module docstring. One stream per module at a time."""
    layers = [m for m in module.modules() if isinstance(m, TemporalContext)]
    if any(layer._stream is not None for layer in layers):
        raise RuntimeError("this model is already streaming; finish that stream first (one stream per model)")
    state = StreamState()
    for layer in layers:
        layer._stream = state
    try:
        yield state
    finally:
        for layer in layers:
            layer._stream = None
        state.slots.clear()
