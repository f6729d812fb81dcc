"""The tokenizer: encoder + regularizer + decoder, with input checks and the frame-count contract.

Frame counts (f = temporal factor):

* causal models encode T >= 1 frames into ``1 + ceil((T - 1) / f)`` latents: the first frame alone
  (padded in front with f - 1 copies of itself), then groups of f frames; an incomplete last group is
  completed with copies of the last frame. Decoding t latents gives ``1 + f * (t - 1)`` frames, and
  ``tokenizer(x)`` returns exactly T frames. For T = 1 + k*f nothing is padded at the end and the
  result is the original implementation's.
* non-causal models take T a multiple of f and give T / f latents; decoding t latents gives f * t frames.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Optional

import torch
import torch.nn as nn
from torch import Tensor

from ..config import TokenizerConfig
from ..errors import InputError
from ..inference.streams import VideoDecoderStream, VideoEncoderStream, check_chunk
from ..inference.tiling import check_tile, tiled
from ..modules import pad_time_front
from .autoencoder import Decoder, Encoder
from .pretrained import PretrainedMixin
from .regularizers import FSQ, DiagonalGaussian

# Inputs are checked to lie in [-1, 1] up to this slack (resampling can overshoot slightly).
RANGE_TOLERANCE = 1e-3


def _make_regularizer(config: TokenizerConfig) -> nn.Module:
    if config.is_discrete:
        return FSQ(config.regularizer.levels)
    return DiagonalGaussian(config.latent_channels)


class Tokenizer(nn.Module, PretrainedMixin):
    """A VidTok video tokenizer. Build one with :func:`vidtok.load_tokenizer` (or ``Tokenizer.from_pretrained``).

    ``encode`` / ``decode`` map video (B, 3, T, H, W) in [-1, 1] to latents (B, C, t, h, w) and back;
    FSQ models also map to and from integer indices (B, t, h, w). ``save_pretrained(dir)`` /
    ``from_pretrained(dir_or_repo_id)`` / ``push_to_hub(repo_id)`` follow the Hugging Face Hub's conventions.
    """

    def __init__(self, config: TokenizerConfig):
        super().__init__()
        self.config = config.validate()
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.regularizer = _make_regularizer(config)

    def reset_buffers(self) -> None:
        """Rebuild the regularizer's constant buffers (for a model built on the meta device)."""
        self.regularizer = _make_regularizer(self.config)

    # ---- frame-count contract ------------------------------------------------------------------
    def latent_frames(self, num_frames: int) -> int:
        """Number of latent frames for ``num_frames`` input frames (raises if the count is not accepted)."""
        self._check_num_frames(num_frames)
        f = self.config.temporal_factor
        if self.config.causal:
            return 1 + math.ceil((num_frames - 1) / f)
        return num_frames // f

    def decoded_frames(self, latent_frames: int) -> int:
        """Number of frames ``decode`` returns for ``latent_frames`` latents."""
        f = self.config.temporal_factor
        return 1 + f * (latent_frames - 1) if self.config.causal else f * latent_frames

    def _check_num_frames(self, num_frames: int) -> None:
        f = self.config.temporal_factor
        if self.config.causal:
            if num_frames < 1:
                raise InputError(f"{self._label()} takes T >= 1 frames, got T={num_frames}")
        elif num_frames < f or num_frames % f:
            below = max(f, num_frames // f * f)
            raise InputError(
                f"non-causal {self._label()} takes a multiple of {f} frames (e.g. {below} or {below + f}), "
                f"got T={num_frames}; trim or pad the clip, or use a causal model for any length"
            )

    def _pad_frames(self, x: Tensor, pad: bool = False) -> Tensor:
        """Causal: f-1 copies of frame 0 in front (implicit when the encoder collapses the first group),
        copies of the last frame to complete the last group. Non-causal with ``pad``: copies of the last
        frame up to a multiple of f."""
        f, num_frames = self.config.temporal_factor, x.shape[2]
        if self.config.causal:
            back = f * (self.latent_frames(num_frames) - 1) - (num_frames - 1)
            if not self.encoder.collapse_head:
                x = pad_time_front(x, f - 1, "replicate")
        else:
            back = -num_frames % f if pad else 0
        if back:
            x = torch.cat([x, x[:, :, -1:].expand(-1, -1, back, -1, -1)], dim=2)
        return x

    # ---- public API ----------------------------------------------------------------------------
    def encode(
        self,
        x: Tensor,
        sample: bool = False,
        generator: Optional[torch.Generator] = None,
        *,
        chunk_frames: Optional[int] = None,
        tile: Optional[int] = None,
        tile_overlap: Optional[int] = None,
        pad: bool = False,
    ) -> Tensor:
        """Video (B, 3, T, H, W) in [-1, 1] -> latents (B, C, t, H/fs, W/fs).

        KL models return the posterior mean, or a sample with ``sample=True``; FSQ models return the
        quantised codes (float, in [-1, 1]).

        Memory options (any combination): ``chunk_frames`` (causal models; a multiple of the temporal
        factor) encodes that many frames at a time with the same result as one pass; ``tile`` (pixels,
        a multiple of the spatial factor) encodes overlapping ``tile`` x ``tile`` tiles, overlapping by
        ``tile_overlap`` pixels (default tile/4), and blends them (close to, not equal to, one pass).
        Non-causal models take T a multiple of f; with ``pad=True`` other T are padded with copies of
        the last frame (``tokenizer(x, pad=True)`` trims them again).
        """
        if self.config.is_discrete and sample:
            raise ValueError("sample=True only applies to KL models; FSQ encoding is deterministic")
        moments = self._encode_moments(x, chunk_frames, tile, tile_overlap, pad)
        return self._regularize(moments, sample=sample, generator=generator)

    def encode_moments(
        self,
        x: Tensor,
        *,
        chunk_frames: Optional[int] = None,
        tile: Optional[int] = None,
        tile_overlap: Optional[int] = None,
        pad: bool = False,
    ) -> Tensor:
        """The raw encoder output: KL models (B, 2C, ...) = posterior mean and log-variance; FSQ models
        the values before quantisation. Options as :meth:`encode`."""
        return self._encode_moments(x, chunk_frames, tile, tile_overlap, pad)

    def encode_indices(
        self,
        x: Tensor,
        *,
        chunk_frames: Optional[int] = None,
        tile: Optional[int] = None,
        tile_overlap: Optional[int] = None,
        pad: bool = False,
    ) -> Tensor:
        """FSQ models: video (B, 3, T, H, W) -> int64 code indices (B, t, h, w); options as :meth:`encode`."""
        self._require_discrete("encode_indices")
        moments = self._encode_moments(x, chunk_frames, tile, tile_overlap, pad)
        return self.regularizer.codes_to_indices(self.regularizer(moments))

    def decode(
        self,
        z: Tensor,
        *,
        chunk_latents: Optional[int] = None,
        tile: Optional[int] = None,
        tile_overlap: Optional[int] = None,
    ) -> Tensor:
        """Latents (B, C, t, h, w) -> video (B, 3, T', fs*h, fs*w), T' = 1 + f*(t-1) causal, f*t otherwise.

        ``chunk_latents`` (causal models) decodes that many latents at a time with the same result as
        one pass; ``tile`` / ``tile_overlap`` are in output pixels, as for :meth:`encode`.
        """
        self._check_latents(z)
        return self._frames(z.to(self._dtype()), chunk_latents, tile, tile_overlap)

    def decode_indices(
        self,
        indices: Tensor,
        *,
        chunk_latents: Optional[int] = None,
        tile: Optional[int] = None,
        tile_overlap: Optional[int] = None,
    ) -> Tensor:
        """FSQ models: int code indices (B, t, h, w) -> video, as ``decode(codes)``."""
        return self.decode(
            self.indices_to_latents(indices), chunk_latents=chunk_latents, tile=tile, tile_overlap=tile_overlap
        )

    def indices_to_latents(self, indices: Tensor) -> Tensor:
        """FSQ models: int code indices (B, t, h, w) -> codes (B, C, t, h, w) as ``encode`` returns them."""
        self._require_discrete("indices_to_latents")
        self._check_indices(indices)
        return self.regularizer.indices_to_codes(indices)

    def forward(
        self,
        x: Tensor,
        sample: bool = False,
        *,
        chunk_frames: Optional[int] = None,
        chunk_latents: Optional[int] = None,
        tile: Optional[int] = None,
        tile_overlap: Optional[int] = None,
        pad: bool = False,
        generator: Optional[torch.Generator] = None,
    ) -> Tensor:
        """Encode then decode; returns exactly the T input frames. Options as :meth:`encode` / :meth:`decode`."""
        num_frames = x.shape[2] if isinstance(x, Tensor) and x.ndim == 5 else 0
        z = self.encode(x, sample, generator, chunk_frames=chunk_frames, tile=tile, tile_overlap=tile_overlap, pad=pad)
        return self.decode(z, chunk_latents=chunk_latents, tile=tile, tile_overlap=tile_overlap)[:, :, :num_frames]

    def reconstruct_after(
        self,
        x: Tensor,
        context: Tensor,
        *,
        tile: Optional[int] = None,
        tile_overlap: Optional[int] = None,
        sample: bool = False,
        generator: Optional[torch.Generator] = None,
    ) -> Tensor:
        """Causal models: encode and decode ``x`` (B, 3, T, H, W), T = 1 + k*f, with ``context`` (B, 3, f-1, H, W),
        the frames that precede it, in place of the f-1 copies of its first frame that the encoder pads with.

        This is the original's ``pad_gen_frames``: a video reconstructed clip by clip, each clip led by the last
        f-1 reconstructed frames of the one before, so that consecutive clips join more smoothly. Returns the T
        frames of ``x``; with ``tile`` the passes are tiled as in :meth:`encode` / :meth:`decode`; ``sample`` /
        ``generator`` as in :meth:`encode`.
        """
        if self.config.is_discrete and sample:
            raise ValueError("sample=True only applies to KL models; FSQ encoding is deterministic")
        if not self.config.causal:
            raise ValueError(f"{self._label()} is non-causal: context frames only lead the clips of causal models")
        f = self.config.temporal_factor
        self._check_video(x)
        if (x.shape[2] - 1) % f:
            raise InputError(f"reconstruct_after takes T = 1 + k*{f} frames, got T={x.shape[2]}")
        want = (x.shape[0], x.shape[1], f - 1, *x.shape[3:])
        if not isinstance(context, Tensor) or tuple(context.shape) != want:
            found = tuple(context.shape) if isinstance(context, Tensor) else type(context).__name__
            raise InputError(f"context: expected f-1 = {f - 1} frames of shape {want}, found {found}")
        tile, overlap = self._tile_args(tile, tile_overlap)
        full = torch.cat([context.to(x), x], dim=2).to(self._dtype())
        z = self._regularize(self._encoder_pass(full, tile, overlap, False), sample=sample, generator=generator)
        return self._decoder_pass(z, tile, overlap, False)

    def compile(self, **kwargs) -> Tokenizer:
        """Compile the encoder and decoder with ``torch.compile`` (in place: state-dict keys do not change).

        Full passes of a fixed shape benefit; chunked and streamed passes recompile per chunk shape.
        Keyword arguments go to ``torch.compile``. Returns self.
        """
        self.encoder.compile(**kwargs)
        self.decoder.compile(**kwargs)
        return self

    def encoder_stream(self, chunk_frames: int = 16, **kwargs) -> VideoEncoderStream:
        """A :class:`~vidtok.inference.VideoEncoderStream` for frames that arrive over time (causal models)."""
        return VideoEncoderStream(self, chunk_frames, **kwargs)

    def decoder_stream(self, chunk_latents: int = 4, **kwargs) -> VideoDecoderStream:
        """A :class:`~vidtok.inference.VideoDecoderStream` for latents that arrive over time (causal models)."""
        return VideoDecoderStream(self, chunk_latents, **kwargs)

    # ---- passes ----------------------------------------------------------------------------------
    def _regularize(self, moments: Tensor, sample: bool = False, generator: Optional[torch.Generator] = None) -> Tensor:
        """Encoder output -> latents: FSQ codes, or the KL posterior mean (a sample with ``sample``)."""
        if self.config.is_discrete:
            return self.regularizer(moments).to(moments.dtype)
        return self.regularizer(moments, sample=sample, generator=generator)

    def _tile_args(self, tile: Optional[int], overlap: Optional[int]) -> tuple[Optional[int], Optional[int]]:
        """Validated (tile, overlap) in pixels; the overlap defaults to a quarter tile."""
        if tile is None:
            if overlap is not None:
                raise ValueError("tile_overlap needs tile")
            return None, None
        fs = self.config.spatial_factor
        overlap = tile // 4 // fs * fs if overlap is None and isinstance(tile, int) else overlap
        check_tile(tile, overlap, fs, self._label())
        return tile, overlap

    def _encode_moments(
        self, x: Tensor, chunk_frames: Optional[int], tile: Optional[int], overlap: Optional[int], pad: bool
    ) -> Tensor:
        self._check_video(x, check_frames=not pad)
        if pad and x.shape[2] < 1:
            raise InputError(f"{self._label()} takes T >= 1 frames, got T={x.shape[2]}")
        return self._moments(x.to(self._dtype()), chunk_frames, tile, overlap, pad)

    def _moments(
        self, x: Tensor, chunk_frames: Optional[int], tile: Optional[int], overlap: Optional[int], pad: bool = False
    ) -> Tensor:
        """Raw encoder output for a checked video, in one pass, by time chunks and/or by tiles."""
        tile, overlap = self._tile_args(tile, overlap)
        if chunk_frames is not None:
            check_chunk(chunk_frames, self.config.temporal_factor, "chunk_frames", self._label())
            with VideoEncoderStream(self, chunk_frames, output="moments", tile=tile, tile_overlap=overlap) as stream:
                parts = [stream.push(x[:, :, i : i + chunk_frames]) for i in range(0, x.shape[2], chunk_frames)]
                parts.append(stream.finish())
            return torch.cat(parts, dim=2)
        return self._encoder_pass(self._pad_frames(x, pad), tile, overlap)

    def _frames(self, z: Tensor, chunk_latents: Optional[int], tile: Optional[int], overlap: Optional[int]) -> Tensor:
        """Decoded frames (causal padding frames dropped) for checked latents."""
        tile, overlap = self._tile_args(tile, overlap)
        if chunk_latents is not None:
            return self._frames_chunked(z, chunk_latents, tile, overlap)
        return self._decoder_pass(z, tile, overlap)

    def _encoder_pass(
        self, x: Tensor, tile: Optional[int], overlap: Optional[int], collapse_head: Optional[bool] = None
    ) -> Tensor:
        """The encoder on padded frames, in one pass or by tiles; ``collapse_head=False``: the first group of f
        frames is given in full (see :meth:`reconstruct_after`)."""
        encode = partial(self.encoder, collapse_head=collapse_head)
        if tile is not None:
            return tiled(lambda part, _: encode(part), x, tile, overlap, 1 / self.config.spatial_factor)
        return encode(x)

    def _decoder_pass(
        self, z: Tensor, tile: Optional[int], overlap: Optional[int], collapse_head: Optional[bool] = None
    ) -> Tensor:
        """The decoder in one pass or by tiles, without the frames that stand for a causal model's padding."""
        decode = partial(self.decoder, collapse_head=collapse_head)
        fs = self.config.spatial_factor
        x = decode(z) if tile is None else tiled(lambda part, _: decode(part), z, tile // fs, overlap // fs, fs)
        collapsed = self.decoder.collapse_head if collapse_head is None else collapse_head
        if self.config.causal and not collapsed:
            x = x[:, :, self.config.temporal_factor - 1 :]
        return x

    def _frames_chunked(self, z: Tensor, chunk_latents: int, tile: Optional[int], overlap: Optional[int]) -> Tensor:
        t = z.shape[2]
        out: Optional[Tensor] = None
        written = 0
        with VideoDecoderStream(self, chunk_latents, tile=tile, tile_overlap=overlap) as stream:
            pieces = [stream.push(z[:, :, i : i + chunk_latents]) for i in range(0, t, chunk_latents)]
            for piece in [*pieces, stream.finish()]:
                if out is None:
                    out = piece.new_empty((*piece.shape[:2], self.decoded_frames(t), *piece.shape[3:]))
                out[:, :, written : written + piece.shape[2]] = piece
                written += piece.shape[2]
        return out

    # ---- internals -----------------------------------------------------------------------------
    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def _label(self) -> str:
        return self.config.name or "this tokenizer"

    def _require_discrete(self, what: str) -> None:
        if not self.config.is_discrete:
            raise TypeError(f"{what} needs an FSQ (discrete) tokenizer; {self._label()} is a KL model")

    def _check_video(self, x: Tensor, check_frames: bool = True) -> None:
        if not isinstance(x, Tensor):
            raise InputError(f"expected a torch.Tensor video (B, 3, T, H, W), got {type(x).__name__}")
        if not x.is_floating_point():
            raise InputError(
                f"expected a floating-point video in [-1, 1], got dtype {x.dtype} "
                "(convert uint8 frames with x.float() / 127.5 - 1)"
            )
        c_in = self.config.model.in_channels
        if x.ndim != 5 or x.shape[1] != c_in:
            raise InputError(
                f"expected a video of shape (B, {c_in}, T, H, W), got shape {tuple(x.shape)}"
                + (" (an image batch? add a time axis: x.unsqueeze(2))" if x.ndim == 4 else "")
            )
        if check_frames:
            self._check_num_frames(x.shape[2])
        s = self.config.spatial_factor
        h, w = x.shape[3], x.shape[4]
        if h % s or w % s or h == 0 or w == 0:
            raise InputError(
                f"{self._label()} needs height and width that are positive multiples of {s}, got {h}x{w} "
                f"(e.g. resize or crop to {max(s, h // s * s)}x{max(s, w // s * s)})"
            )
        if x.numel() == 0:
            return
        lo, hi = torch.aminmax(x.detach())
        lo, hi = float(lo), float(hi)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise InputError("the video contains NaN or infinite values")
        if lo < -1 - RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
            hint = " (looks like [0, 255] data: use x / 127.5 - 1)" if hi > 2 else ""
            raise InputError(f"expected values in [-1, 1], got [{lo:.4g}, {hi:.4g}]{hint}")

    def _check_latents(self, z: Tensor, allow_empty: bool = False) -> None:
        if not isinstance(z, Tensor):
            raise InputError(f"expected a torch.Tensor of latents, got {type(z).__name__}")
        c = self.config.latent_channels
        if not z.is_floating_point():
            raise InputError(
                f"expected floating-point latents, got dtype {z.dtype}"
                + (" (integer codes? use decode_indices)" if self.config.is_discrete else "")
            )
        if z.ndim != 5 or z.shape[1] != c or z.shape[2] < (0 if allow_empty else 1):
            raise InputError(f"expected latents of shape (B, {c}, t>=1, h, w), got shape {tuple(z.shape)}")

    def _check_indices(self, indices: Tensor, allow_empty: bool = False) -> None:
        if not isinstance(indices, Tensor) or indices.is_floating_point() or indices.is_complex():
            found = indices.dtype if isinstance(indices, Tensor) else type(indices).__name__
            raise InputError(f"expected an integer tensor of code indices (B, t, h, w), got {found}")
        if indices.ndim != 4 or indices.shape[1] < (0 if allow_empty else 1):
            raise InputError(f"expected code indices of shape (B, t>=1, h, w), got shape {tuple(indices.shape)}")
        if indices.numel():
            lo, hi = int(indices.min()), int(indices.max())
            n = self.config.codebook_size
            if lo < 0 or hi >= n:
                raise InputError(f"code indices must lie in [0, {n}) for {self._label()}, got [{lo}, {hi}]")
