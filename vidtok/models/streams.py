"""Encode and decode videos chunk by chunk, with causal caches, as frames or latents arrive.

A causal VidTok model never needs future frames to encode, and its decoder needs at most one latent
of look-ahead (v1.1's linear temporal upsampling), so a video of any length can be processed in
bounded memory with results equal to a full pass up to float rounding. The streams below hold the
few frames each layer needs between chunks (see [`vidtok.modules.streaming`][]) and drop them when
finished.

    with VideoEncoderStream(tok, chunk_frames=16) as enc:
        for frames in reader:              # (B, 3, n, H, W) in [-1, 1], any n
            latents.append(enc.push(frames))
        latents.append(enc.finish())
"""

from __future__ import annotations

from contextlib import ExitStack
from functools import partial
from typing import Optional, Protocol

import torch
from torch import Tensor, nn

from ..config import TokenizerConfig
from ..defaults import CHUNK_FRAMES, CHUNK_LATENTS
from ..errors import InputError
from ..modules.ops import autocast_enabled
from ..modules.streaming import StreamState, streaming
from . import checks
from .options import InferenceOptions, resolve_options
from .tiling import tiled


class StreamedModel(Protocol):
    """What a stream uses of its model (a [`Tokenizer`][vidtok.Tokenizer]): the config, the encoder, decoder and
    regularizer networks, and the dtype inputs are cast to. Nothing else, so this module needs no Tokenizer."""

    config: TokenizerConfig
    encoder: nn.Module
    decoder: nn.Module
    regularizer: nn.Module

    @property
    def dtype(self) -> torch.dtype: ...


def _stream_options(
    tokenizer: StreamedModel, chunk_name: str, chunk: Optional[int], default: int, options, fields: dict, what: str
) -> InferenceOptions:
    """The stream's checked options: the chunk from the argument, else from ``options``, else ``default``. Options
    already checked for the model come back as they are (the tokenizer's chunked passes and the file pipeline)."""
    if not tokenizer.config.causal:
        raise InputError(
            f"{tokenizer.config.label} is non-causal: every output depends on the whole clip, so it cannot be "
            "processed chunk by chunk; encode clips of a multiple of "
            f"{tokenizer.config.temporal_factor} frames separately, or use a causal model"
        )
    opts = resolve_options(options, fields, ("tile", "tile_overlap"), what, tokenizer.config)
    if chunk is not None or getattr(opts, chunk_name) is None:
        opts = opts.replace(**{chunk_name: default if chunk is None else chunk})
    return opts.replace(pad=False).checked(tokenizer.config)


class _Stream:
    """Opens a streaming context on one network of a tokenizer for the lifetime of the stream; ``options`` holds the
    stream's checked options (its chunk and tiles)."""

    def __init__(self, tokenizer: StreamedModel, network: torch.nn.Module, options: InferenceOptions):
        self.options = options  # checked for the tokenizer: chunks and tiles are read from here
        self.tok = tokenizer
        self._stack = ExitStack()
        self._state: StreamState = self._stack.enter_context(streaming(network))
        self._closed = False

    def _run(self, network: torch.nn.Module, x: Tensor, scale: float, pixels_per_unit: int) -> Tensor:
        """``network(x)``, tile by tile (one set of caches per tile) when the stream is tiled; ``x`` has
        ``pixels_per_unit`` video pixels per element along H and W (1 for frames, fs for latents)."""
        tile, overlap = self.options.tile, self.options.tile_overlap
        if tile is None:
            return network(x)

        def per_tile(part: Tensor, offset: tuple[int, int]) -> Tensor:
            self._state.lane = offset
            return network(part)

        unit = pixels_per_unit
        return tiled(per_tile, x, tile // unit, overlap // unit, scale)

    @property
    def cache_bytes(self) -> int:
        """Memory held between chunks: every causal layer's cached frames (0 once closed). Exact
        chunking needs them; they depend on the frame size and the model, not on the video length."""
        return 0 if self._closed else self._state.cache_bytes

    def close(self) -> None:
        """Drop all cached frames and release the model for other streams."""
        if not self._closed:
            self._closed = True
            self._stack.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this stream is finished; start a new one")

    def _empty(self, shape: tuple[int, ...], like: Tensor, dtype: Optional[torch.dtype] = None) -> Tensor:
        """A result with no frames, on ``like``'s device and of the dtype the network's results have there
        (autocast's where it is on, else the weights'), so it joins the stream's other results."""
        if dtype is None:
            device = like.device.type
            dtype = torch.get_autocast_dtype(device) if autocast_enabled(device) else self.tok.dtype
        return torch.empty(shape, dtype=dtype, device=like.device)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoEncoderStream(_Stream):
    """Encode frames as they arrive; returns latents as soon as they are complete.

    ``output`` is ``"latents"`` (what [`Tokenizer.encode`][] returns), ``"indices"`` (FSQ models)
    or ``"moments"`` (the raw encoder output, before the regularizer).

    ``chunk_frames`` (a multiple of the temporal factor; default ``options.chunk_frames``, else 16) is how
    many frames go through the encoder at once: peak memory depends on it, not on the video length.
    ``options`` or the keywords ``tile`` / ``tile_overlap`` (pixels) split large frames into blended
    tiles, each with its own caches. The first frame is padded in front as
    in a full pass; ``finish`` completes the last group with copies of the last frame.
    """

    def __init__(
        self,
        tokenizer: StreamedModel,
        chunk_frames: Optional[int] = None,
        *,
        options: Optional[InferenceOptions] = None,
        output: str = "latents",
        sample: bool = False,
        generator: Optional[torch.Generator] = None,
        **option_fields,
    ):
        opts = _stream_options(
            tokenizer, "chunk_frames", chunk_frames, CHUNK_FRAMES, options, option_fields, "an encoder stream"
        )
        if output not in ("latents", "indices", "moments"):
            raise ValueError(f"output must be 'latents', 'indices' or 'moments', got {output!r}")
        if output == "indices":
            checks.require_discrete(tokenizer.config, "an index stream")
        if sample and tokenizer.config.is_discrete:
            raise ValueError("sample=True only applies to KL models; FSQ encoding is deterministic")
        super().__init__(tokenizer, tokenizer.encoder, opts)
        self.output, self.sample, self.generator = output, sample, generator
        self._pending: list[Tensor] = []
        self._pending_frames = 0  # counts the f-1 leading copies of frame 0 even when they stay implicit
        self._implicit = 0  # of which not materialised (the encoder collapses the first group)
        self._first_chunk = True
        self._last_frame: Optional[Tensor] = None
        self._shape: Optional[tuple[int, ...]] = None
        self.frames_in = 0

    def push(self, frames: Tensor) -> Tensor:
        """Add (B, 3, n, H, W) frames; returns the latents completed so far (possibly none)."""
        self._check_open()
        checks.check_video(self.tok.config, frames, check_frames=False)
        if frames.shape[2] == 0:
            return self._no_latents(frames)
        if self._shape is None:
            self._shape = (frames.shape[0], *frames.shape[3:])
            head = self.tok.config.temporal_factor - 1
            if self.tok.encoder.collapse_head:
                self._implicit, self._pending_frames = head, head
            else:
                self._append(frames[:, :, :1].expand(-1, -1, head, -1, -1))
        elif (frames.shape[0], *frames.shape[3:]) != self._shape:
            raise ValueError(
                f"frames of shape {tuple(frames.shape)} do not continue the stream's batch and frame size "
                f"(B, H, W) = {self._shape}"
            )
        self._append(frames)
        self._last_frame = frames[:, :, -1:]
        self.frames_in += frames.shape[2]
        return self._drain(final=False)

    def finish(self) -> Tensor:
        """Complete the last group of frames, encode what is left and close the stream."""
        self._check_open()
        try:
            if self._shape is None:
                raise ValueError("the stream received no frames")
            f = self.tok.config.temporal_factor
            missing = -self._pending_frames % f
            if missing:
                self._append(self._last_frame.expand(-1, -1, missing, -1, -1))
            return self._drain(final=True)
        finally:
            self.close()

    def _append(self, frames: Tensor) -> None:
        self._pending.append(frames)
        self._pending_frames += frames.shape[2]

    def _take(self, count: int) -> Tensor:
        implicit = min(self._implicit, count)
        self._implicit -= implicit
        taken, need = [], count - implicit
        while need:
            head = self._pending[0]
            if head.shape[2] <= need:
                taken.append(self._pending.pop(0))
                need -= head.shape[2]
            else:
                taken.append(head[:, :, :need])
                self._pending[0] = head[:, :, need:]
                need = 0
        self._pending_frames -= count
        return taken[0] if len(taken) == 1 else torch.cat(taken, dim=2)

    def _drain(self, final: bool) -> Tensor:
        outputs, chunk_frames = [], self.options.chunk_frames
        while self._pending_frames >= chunk_frames or (final and self._pending_frames):
            chunk = self._take(min(chunk_frames, self._pending_frames))
            outputs.append(self._encode(chunk))
        if not outputs:
            return self._no_latents(self._last_frame)
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)

    def _encode(self, chunk: Tensor) -> Tensor:
        tok = self.tok
        encoder = partial(tok.encoder, first_chunk=self._first_chunk)
        self._first_chunk = False
        moments = self._run(encoder, chunk.to(tok.dtype), 1 / tok.config.spatial_factor, 1)
        if self.output == "moments":
            return moments
        if self.output == "indices":
            return tok.regularizer.codes_to_indices(tok.regularizer(moments))
        return tok.regularizer.latents(moments, sample=self.sample, generator=self.generator)

    def _no_latents(self, frames: Tensor) -> Tensor:
        """What a push that completes no latent returns: no latent frames, on ``frames``' device."""
        batch, height, width = self._shape if self._shape else (frames.shape[0], *frames.shape[3:])
        s = self.tok.config.spatial_factor
        h, w = height // s, width // s
        if self.output == "indices":
            return self._empty((batch, 0, h, w), frames, torch.long)
        c = self.tok.config.latent_channels
        if self.output == "moments" and not self.tok.config.is_discrete:
            c *= 2
        return self._empty((batch, c, 0, h, w), frames)


class VideoDecoderStream(_Stream):
    """Decode latents (or FSQ indices) as they arrive; returns frames as soon as they are final.

    ``chunk_latents`` latents (default ``options.chunk_latents``, else 4) go through the decoder at once.
    Because v1.1 decoders look one latent ahead, a chunk is decoded once the next latent has arrived, and
    ``finish`` decodes the rest. The f-1 leading padding frames of a causal decode are dropped, as in
    [`Tokenizer.decode`][].
    """

    def __init__(
        self,
        tokenizer: StreamedModel,
        chunk_latents: Optional[int] = None,
        *,
        options: Optional[InferenceOptions] = None,
        indices: bool = False,
        **option_fields,
    ):
        opts = _stream_options(
            tokenizer, "chunk_latents", chunk_latents, CHUNK_LATENTS, options, option_fields, "a decoder stream"
        )
        if indices:
            checks.require_discrete(tokenizer.config, "an index stream")
        super().__init__(tokenizer, tokenizer.decoder, opts)
        self.indices = indices
        self._pending: list[Tensor] = []
        self._pending_latents = 0
        self._to_drop = 0 if tokenizer.decoder.collapse_head else tokenizer.config.temporal_factor - 1
        self._first_chunk = True
        self.frames_out = 0

    def push(self, latents: Tensor) -> Tensor:
        """Add latents (B, C, t, h, w) or indices (B, t, h, w); returns the frames decoded so far."""
        self._check_open()
        if self.indices:
            checks.check_indices(self.tok.config, latents, allow_empty=True)
            latents = self.tok.regularizer.indices_to_codes(latents)
        else:
            checks.check_latents(self.tok.config, latents, allow_empty=True)
        if latents.shape[2]:
            self._pending.append(latents)
            self._pending_latents += latents.shape[2]
        outputs, chunk_latents = [], self.options.chunk_latents
        while self._pending_latents > chunk_latents:
            outputs.append(self._decode(self._take(chunk_latents)))
        return self._join(outputs, latents)

    def finish(self) -> Tensor:
        """Decode the remaining latents, including the frames held back for look-ahead, and close."""
        self._check_open()
        try:
            if not self._pending_latents:
                raise ValueError("the stream received no latents")
            self._state.final = True
            return self._decode(self._take(self._pending_latents))
        finally:
            self.close()

    def _take(self, count: int) -> Tensor:
        joined = torch.cat(self._pending, dim=2) if len(self._pending) > 1 else self._pending[0]
        chunk, rest = joined[:, :, :count], joined[:, :, count:]
        self._pending = [rest] if rest.shape[2] else []
        self._pending_latents -= count
        return chunk

    def _decode(self, latents: Tensor) -> Tensor:
        fs = self.tok.config.spatial_factor
        decoder = partial(self.tok.decoder, first_chunk=self._first_chunk)
        self._first_chunk = False
        frames = self._run(decoder, latents.to(self.tok.dtype), fs, fs)
        drop = min(self._to_drop, frames.shape[2])
        self._to_drop -= drop
        frames = frames[:, :, drop:]
        self.frames_out += frames.shape[2]
        return frames

    def _join(self, outputs: list[Tensor], like: Tensor) -> Tensor:
        if outputs:
            return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)
        s = self.tok.config.spatial_factor
        b, h, w = like.shape[0], like.shape[-2] * s, like.shape[-1] * s
        return self._empty((b, self.tok.config.model.in_channels, 0, h, w), like)
