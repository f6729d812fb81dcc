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

from functools import partial
from typing import Optional

import torch
import torch.nn as nn
from torch import Tensor

from ..config import TokenizerConfig
from ..errors import InputError
from ..io.weight_files import check_state_dict
from ..modules import pad_time_front
from . import checks
from .autoencoder import Decoder, Encoder
from .options import InferenceOptions, resolve_options
from .pretrained import PretrainedMixin
from .regularizers import FSQ, DiagonalGaussian
from .streams import VideoDecoderStream, VideoEncoderStream
from .tiling import tiled
from .weights import Weights

ENCODE_OPTIONS = ("chunk_frames", "tile", "tile_overlap", "pad")
DECODE_OPTIONS = ("chunk_latents", "tile", "tile_overlap")


def _make_regularizer(config: TokenizerConfig) -> nn.Module:
    if config.is_discrete:
        return FSQ(config.regularizer.levels)
    return DiagonalGaussian(config.latent_channels)


class Tokenizer(nn.Module, PretrainedMixin):
    """A VidTok video tokenizer. Build one with [`vidtok.load_tokenizer`][] (or ``Tokenizer.from_pretrained``).

    ``encode`` / ``decode`` map video (B, 3, T, H, W) in [-1, 1] to latents (B, C, t, h, w) and back;
    FSQ models also map to and from integer indices (B, t, h, w). Every pass takes ``options``, an
    [`InferenceOptions`][vidtok.InferenceOptions] (time chunks, tiles, padding), or its fields as keywords
    (``tok.encode(x, tile=256)``); ``encoder_stream`` / ``decoder_stream`` process video that arrives
    over time. ``save_pretrained(dir)`` /
    ``from_pretrained(dir_or_repo_id)`` / ``push_to_hub(repo_id)`` follow the Hugging Face Hub's conventions.
    """

    def __init__(self, config: TokenizerConfig):
        super().__init__()
        self.config = config.validate()
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.regularizer = _make_regularizer(config)

    @classmethod
    def from_weights(cls, weights: Weights, device: str | torch.device = "cpu") -> Tokenizer:
        """The tokenizer ``weights`` describe (see [`vidtok.models.weights.read_weights`][]), on ``device`` in eval
        mode with gradients switched off. Built on the meta device and given the weights' own tensors; keys are
        checked strictly (missing, unexpected and mis-shaped entries all reported at once)."""
        with torch.device("meta"):
            tokenizer = cls(weights.config)
        check_state_dict(tokenizer, weights.state_dict, source=str(weights.file))
        tokenizer.load_state_dict(weights.state_dict, strict=True, assign=True)
        tokenizer.reset_buffers()
        tokenizer.weights_source = weights.source
        tokenizer.weights_file = weights.file
        return tokenizer.to(device).eval().requires_grad_(False)

    def reset_buffers(self) -> None:
        """Rebuild the regularizer's constant buffers (for a model built on the meta device)."""
        self.regularizer = _make_regularizer(self.config)

    # ---- frame-count contract ------------------------------------------------------------------
    def latent_frames(self, num_frames: int) -> int:
        """Number of latent frames for ``num_frames`` input frames (raises if the count is not accepted)."""
        self._check_num_frames(num_frames)
        return self.config.latent_frames(num_frames)

    def decoded_frames(self, latent_frames: int) -> int:
        """Number of frames ``decode`` returns for ``latent_frames`` latents."""
        return self.config.decoded_frames(latent_frames)

    def _check_num_frames(self, num_frames: int) -> None:
        checks.check_num_frames(self.config, num_frames)

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
        options: Optional[InferenceOptions] = None,
        **option_fields,
    ) -> Tensor:
        """Video (B, 3, T, H, W) in [-1, 1] -> latents (B, C, t, H/fs, W/fs).

        KL models return the posterior mean, or a sample with ``sample=True``; FSQ models return the
        quantised codes (float, in [-1, 1]).

        ``options`` / keywords (see [`InferenceOptions`][vidtok.InferenceOptions]): ``chunk_frames`` (causal models; a
        multiple of the temporal factor) encodes that many frames at a time with the same result as one
        pass; ``tile`` (pixels, a multiple of the spatial factor) encodes overlapping ``tile`` x ``tile``
        tiles, overlapping by ``tile_overlap`` pixels (default tile/4), and blends them (close to, not equal
        to, one pass). Non-causal models take T a multiple of f; with ``pad=True`` other T are padded with
        copies of the last frame (``tokenizer(x, pad=True)`` trims them again).
        """
        opts = self._options(options, option_fields, ENCODE_OPTIONS, "encode")
        return self._latents(x, opts, sample, generator)

    def encode_moments(self, x: Tensor, *, options: Optional[InferenceOptions] = None, **option_fields) -> Tensor:
        """The raw encoder output: KL models (B, 2C, ...) = posterior mean and log-variance; FSQ models
        the values before quantisation. Options as [`encode`][]."""
        return self._encode_moments(x, self._options(options, option_fields, ENCODE_OPTIONS, "encode_moments"))

    def encode_indices(self, x: Tensor, *, options: Optional[InferenceOptions] = None, **option_fields) -> Tensor:
        """FSQ models: video (B, 3, T, H, W) -> int64 code indices (B, t, h, w); options as [`encode`][]."""
        checks.require_discrete(self.config, "encode_indices")
        moments = self._encode_moments(x, self._options(options, option_fields, ENCODE_OPTIONS, "encode_indices"))
        return self.regularizer.codes_to_indices(self.regularizer(moments))

    def decode(self, z: Tensor, *, options: Optional[InferenceOptions] = None, **option_fields) -> Tensor:
        """Latents (B, C, t, h, w) -> video (B, 3, T', fs*h, fs*w), T' = 1 + f*(t-1) causal, f*t otherwise.

        ``chunk_latents`` (causal models) decodes that many latents at a time with the same result as
        one pass; ``tile`` / ``tile_overlap`` are in output pixels, as for [`encode`][].
        """
        return self._decode(z, self._options(options, option_fields, DECODE_OPTIONS, "decode"))

    def decode_indices(self, indices: Tensor, *, options: Optional[InferenceOptions] = None, **option_fields) -> Tensor:
        """FSQ models: int code indices (B, t, h, w) -> video, as ``decode(codes)``."""
        opts = self._options(options, option_fields, DECODE_OPTIONS, "decode_indices")
        return self._decode(self.indices_to_latents(indices), opts)

    def latents_to_indices(self, z: Tensor) -> Tensor:
        """FSQ models: codes (B, C, t, h, w) as ``encode`` returns them -> int64 code indices (B, t, h, w)."""
        checks.require_discrete(self.config, "latents_to_indices")
        return self.regularizer.codes_to_indices(z)

    def indices_to_latents(self, indices: Tensor) -> Tensor:
        """FSQ models: int code indices (B, t, h, w) -> codes (B, C, t, h, w) as ``encode`` returns them."""
        checks.require_discrete(self.config, "indices_to_latents")
        checks.check_indices(self.config, indices)
        return self.regularizer.indices_to_codes(indices)

    def forward(
        self,
        x: Tensor,
        sample: bool = False,
        *,
        options: Optional[InferenceOptions] = None,
        generator: Optional[torch.Generator] = None,
        **option_fields,
    ) -> Tensor:
        """Encode then decode; returns exactly the T input frames. Options as [`encode`][] / [`decode`][]."""
        opts = self._options(options, option_fields, ENCODE_OPTIONS + DECODE_OPTIONS[:1], "a tokenizer call")
        num_frames = x.shape[2] if isinstance(x, Tensor) and x.ndim == 5 else 0
        z = self._latents(x, opts, sample, generator)
        return self._decode(z, opts)[:, :, :num_frames]

    def reconstruct_after(
        self,
        x: Tensor,
        context: Tensor,
        *,
        options: Optional[InferenceOptions] = None,
        sample: bool = False,
        generator: Optional[torch.Generator] = None,
        **option_fields,
    ) -> Tensor:
        """Causal models: encode and decode ``x`` (B, 3, T, H, W), T = 1 + k*f, with ``context`` (B, 3, f-1, H, W),
        the frames that precede it, in place of the f-1 copies of its first frame that the encoder pads with.

        This is the original's ``pad_gen_frames``: a video reconstructed clip by clip, each clip led by the last
        f-1 reconstructed frames of the one before, so that consecutive clips join more smoothly. Returns the T
        frames of ``x``; with ``tile`` the passes are tiled as in [`encode`][] / [`decode`][] (time chunks
        do not apply); ``sample`` / ``generator`` as in [`encode`][].
        """
        opts = self._options(options, option_fields, ("tile", "tile_overlap"), "reconstruct_after")
        if self.config.is_discrete and sample:
            raise ValueError("sample=True only applies to KL models; FSQ encoding is deterministic")
        if not self.config.causal:
            raise ValueError(f"{self.config.label} is non-causal: context frames only lead the clips of causal models")
        f = self.config.temporal_factor
        checks.check_video(self.config, x)
        if (x.shape[2] - 1) % f:
            raise InputError(f"reconstruct_after takes T = 1 + k*{f} frames, got T={x.shape[2]}")
        want = (x.shape[0], x.shape[1], f - 1, *x.shape[3:])
        if not isinstance(context, Tensor) or tuple(context.shape) != want:
            found = tuple(context.shape) if isinstance(context, Tensor) else type(context).__name__
            raise InputError(f"context: expected f-1 = {f - 1} frames of shape {want}, found {found}")
        full = torch.cat([context.to(x), x], dim=2).to(self.dtype)
        moments = self._encoder_pass(full, opts, collapse_head=False)
        z = self.regularizer.latents(moments, sample=sample, generator=generator)
        return self._decoder_pass(z, opts, collapse_head=False)

    def compile(self, **kwargs) -> Tokenizer:
        """Compile the encoder and decoder with ``torch.compile`` (in place: state-dict keys do not change).

        Full passes of a fixed shape benefit; chunked and streamed passes recompile per chunk shape.
        Keyword arguments go to ``torch.compile``. Returns self.
        """
        self.encoder.compile(**kwargs)
        self.decoder.compile(**kwargs)
        return self

    def encoder_stream(self, chunk_frames: Optional[int] = None, **kwargs) -> VideoEncoderStream:
        """A [`VideoEncoderStream`][vidtok.VideoEncoderStream] for frames that arrive over time (causal models)."""
        return VideoEncoderStream(self, chunk_frames, **kwargs)

    def decoder_stream(self, chunk_latents: Optional[int] = None, **kwargs) -> VideoDecoderStream:
        """A [`VideoDecoderStream`][vidtok.VideoDecoderStream] for latents that arrive over time (causal models)."""
        return VideoDecoderStream(self, chunk_latents, **kwargs)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the weights (inputs are cast to it)."""
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        """Where the weights are (inputs must be there too; the file pipelines move frames there)."""
        return next(self.parameters()).device

    # ---- passes: below the public API, they take the checked options and check nothing again ----------
    def _options(
        self, options: Optional[InferenceOptions], fields: dict, allowed: tuple[str, ...], what: str
    ) -> InferenceOptions:
        """The checked options of a public call (done once there; a checked object without keywords is kept)."""
        return resolve_options(options, fields, allowed, what, self.config).checked(self.config)

    def _latents(self, x: Tensor, opts: InferenceOptions, sample: bool, generator: Optional[torch.Generator]) -> Tensor:
        """What [`encode`][] returns, for checked options."""
        if self.config.is_discrete and sample:
            raise ValueError("sample=True only applies to KL models; FSQ encoding is deterministic")
        return self.regularizer.latents(self._encode_moments(x, opts), sample=sample, generator=generator)

    def _decode(self, z: Tensor, opts: InferenceOptions) -> Tensor:
        """What [`decode`][] returns, for checked options."""
        checks.check_latents(self.config, z)
        return self._frames(z.to(self.dtype), opts)

    def _encode_moments(self, x: Tensor, opts: InferenceOptions) -> Tensor:
        checks.check_video(self.config, x, check_frames=not opts.pad)
        if opts.pad and x.shape[2] < 1:
            raise InputError(f"{self.config.label} takes T >= 1 frames, got T={x.shape[2]}")
        x = x.to(self.dtype)
        if opts.chunk_frames is not None:
            chunk = opts.chunk_frames
            with VideoEncoderStream(self, options=opts, output="moments") as stream:
                parts = [stream.push(x[:, :, i : i + chunk]) for i in range(0, x.shape[2], chunk)]
                parts.append(stream.finish())
            return torch.cat(parts, dim=2)
        return self._encoder_pass(self._pad_frames(x, opts.pad), opts)

    def _frames(self, z: Tensor, opts: InferenceOptions) -> Tensor:
        """Decoded frames (causal padding frames dropped) for checked latents."""
        if opts.chunk_latents is not None:
            return self._frames_chunked(z, opts)
        return self._decoder_pass(z, opts)

    def _encoder_pass(self, x: Tensor, opts: InferenceOptions, collapse_head: Optional[bool] = None) -> Tensor:
        """The encoder on padded frames, in one pass or by tiles; ``collapse_head=False``: the first group of f
        frames is given in full (see [`reconstruct_after`][])."""
        encode = partial(self.encoder, collapse_head=collapse_head)
        if opts.tile is not None:
            return tiled(lambda part, _: encode(part), x, opts.tile, opts.tile_overlap, 1 / self.config.spatial_factor)
        return encode(x)

    def _decoder_pass(self, z: Tensor, opts: InferenceOptions, collapse_head: Optional[bool] = None) -> Tensor:
        """The decoder in one pass or by tiles, without the frames that stand for a causal model's padding."""
        decode = partial(self.decoder, collapse_head=collapse_head)
        fs = self.config.spatial_factor
        if opts.tile is None:
            x = decode(z)
        else:
            x = tiled(lambda part, _: decode(part), z, opts.tile // fs, opts.tile_overlap // fs, fs)
        collapsed = self.decoder.collapse_head if collapse_head is None else collapse_head
        if self.config.causal and not collapsed:
            x = x[:, :, self.config.temporal_factor - 1 :]
        return x

    def _frames_chunked(self, z: Tensor, opts: InferenceOptions) -> Tensor:
        t, step = z.shape[2], opts.chunk_latents
        out: Optional[Tensor] = None
        written = 0
        with VideoDecoderStream(self, options=opts) as stream:
            pieces = [stream.push(z[:, :, i : i + step]) for i in range(0, t, step)]
            for piece in [*pieces, stream.finish()]:
                if out is None:
                    out = piece.new_empty((*piece.shape[:2], self.decoded_frames(t), *piece.shape[3:]))
                out[:, :, written : written + piece.shape[2]] = piece
                written += piece.shape[2]
        return out
