"""Video file -> tokens -> video file, in bounded memory.

Causal models stream: frames are decoded from the file, encoded and decoded chunk by chunk, and
written as they come, so memory depends on the chunk sizes (``options.chunk_frames`` /
``options.chunk_latents``, default 16 / 4), not on the video length. Non-causal models see the video
as independent clips of ``clip_frames`` frames (the last one padded with copies of its last frame, then
trimmed), which is how they are evaluated. Tiling comes from ``options`` too (see
[`InferenceOptions`][vidtok.InferenceOptions]).
How a file is read (frame size, frame rate, how many frames) is one [`ReadSettings`][].

Each function checks ``options`` against the model once and passes the checked object down. No option keywords
here, unlike ``Tokenizer.encode``: every caller (the command line, the jobs, benchmarks) already holds one object.

The work runs where the tokenizer is: frames read from a file go to its device as uint8 (a quarter of the bytes of
floats), and what leaves for a file or the caller (8-bit frames, token tensors) comes back to the host chunk by
chunk, so a long video never gathers on the device.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..defaults import CHUNK_FRAMES, CHUNK_LATENTS, protocol_clip_frames
from ..errors import InputError
from ..io.token_files import TokenFile
from ..io.video import (
    VideoInfo,
    VideoWriter,
    even_size,
    frame_interval,
    frames_to_tensor,
    iter_frames,
    read_info,
    tensor_to_frames,
)
from ..models.options import InferenceOptions, as_options

if TYPE_CHECKING:
    from ..models.tokenizer import Tokenizer

#: Frames per clip of a non-causal model (the paper's 16-frame clips).
DEFAULT_CLIP_FRAMES = protocol_clip_frames(causal=False)


@dataclass(frozen=True)
class ReadSettings:
    """How a video file is read: the frame size (default: the source's, cropped to an even multiple of the spatial
    factor), the rate frames are sampled at (default: the source's, every frame), at most how many frames, and for
    non-causal models the frames of each independent clip (a multiple of the temporal factor; the paper's 16)."""

    height: Optional[int] = None
    width: Optional[int] = None
    sample_fps: Optional[float] = None
    max_frames: Optional[int] = None
    clip_frames: int = DEFAULT_CLIP_FRAMES


@dataclass
class ReadPlan:
    """How a video is read: its info, the processed frame size and fps, the expected frame count, and the clip length
    of a non-causal model (None: a causal model streams the whole video)."""

    info: VideoInfo
    height: int
    width: int
    fps: float
    interval: int
    expected_frames: Optional[int]
    max_frames: Optional[int]
    clip: Optional[int]


def plan_read(tok: Tokenizer, path: str | os.PathLike, reading: ReadSettings) -> ReadPlan:
    """Probe ``path`` and decide the processed size (default: the source size cropped to a multiple of
    the spatial factor) and frame rate (default: the source's); sizes and clips that do not fit are refused."""
    clip = None if tok.config.causal else _clip_length(tok, reading.clip_frames)
    info = read_info(path)
    fs = tok.config.spatial_factor
    height, width, max_frames = reading.height, reading.width, reading.max_frames
    if height is None or width is None:
        h, w = even_size(info.height, info.width, fs)
        height, width = height or h, width or w
    if height % fs or width % fs or height % 2 or width % 2:
        raise InputError(
            f"height and width must be even multiples of {fs} for {tok.config.label}, got {height}x{width} "
            f"(e.g. {even_size(height, width, fs)[0]}x{even_size(height, width, fs)[1]})"
        )
    interval = frame_interval(info.fps, reading.sample_fps)
    expected = None if info.frames is None else -(-info.frames // interval)
    if max_frames is not None:
        expected = max_frames if expected is None else min(expected, max_frames)
    return ReadPlan(info, height, width, info.fps / interval, interval, expected, max_frames, clip)


def _frames(plan: ReadPlan, chunk: int) -> Iterator[Tensor]:
    return iter_frames(
        plan.info.path,
        interval=plan.interval,  # worked out once, by plan_read
        size=(plan.height, plan.width),
        chunk=chunk,
        max_frames=plan.max_frames,
    )


def _on_model(tok: Tokenizer, frames: Tensor) -> Tensor:
    """uint8 frames (n, H, W, 3) read on the host -> a video (1, 3, n, H, W) in [-1, 1] on the tokenizer's device."""
    return frames_to_tensor(frames.to(tok.device))


def to_host(t: Tensor) -> Tensor:
    """A result on its way to a file or the caller: on the host."""
    return t.cpu()


def _bar(total: Optional[int], desc: str, progress: bool):
    return tqdm(total=total, desc=desc, unit="frame", disable=not progress, leave=False)


def _file_options(tok: Tokenizer, options: Optional[InferenceOptions]) -> InferenceOptions:
    """The checked options of a file pass, worked out once where a function here is called; causal models get the
    streams' default chunks where none is given."""
    opts = as_options(options)
    if tok.config.causal:
        opts = opts.replace(
            chunk_frames=opts.chunk_frames or CHUNK_FRAMES,
            chunk_latents=opts.chunk_latents or CHUNK_LATENTS,
        )
    return opts.checked(tok.config)


def _clip_length(tok: Tokenizer, clip_frames: int) -> int:
    f = tok.config.temporal_factor
    if isinstance(clip_frames, bool) or not isinstance(clip_frames, int) or clip_frames < f or clip_frames % f:
        raise InputError(
            f"clip_frames must be a positive multiple of {f} for non-causal {tok.config.label}, got {clip_frames!r}"
        )
    return clip_frames


def encode_video(
    tok: Tokenizer,
    path: str | os.PathLike,
    *,
    reading: Optional[ReadSettings] = None,
    options: Optional[InferenceOptions] = None,
    indices: bool = False,
    progress: bool = False,
) -> TokenFile:
    """Tokenize a video file, read as ``reading`` says; returns latents or FSQ indices with what is needed to
    decode them.

    Causal models stream the whole video (``options.chunk_frames`` frames at a time); non-causal ones
    encode clips of ``reading.clip_frames`` frames."""
    opts = _file_options(tok, options)
    plan = plan_read(tok, path, reading or ReadSettings())
    clip = plan.clip
    output = "indices" if indices else "latents"
    parts: list[Tensor] = []
    frames_in = 0
    with torch.inference_mode(), _bar(plan.expected_frames, "encode", progress) as bar:
        if clip is None:
            with tok.encoder_stream(options=opts, output=output) as stream:
                for frames in _frames(plan, opts.chunk_frames):
                    parts.append(to_host(stream.push(_on_model(tok, frames))))
                    frames_in += frames.shape[0]
                    bar.update(frames.shape[0])
                parts.append(to_host(stream.finish()))
        else:
            encode = tok.encode_indices if indices else tok.encode
            padded = opts.replace(pad=True)  # still checked: replace checks only the field it changes
            for frames in _frames(plan, clip):
                parts.append(to_host(encode(_on_model(tok, frames), options=padded)))
                frames_in += frames.shape[0]
                bar.update(frames.shape[0])
    data = torch.cat(parts, dim=1 if indices else 2)
    source = {"path": str(plan.info.path), "fps": plan.info.fps, "height": plan.info.height, "width": plan.info.width}
    return TokenFile(output, data, tok.config, plan.fps, frames_in, plan.height, plan.width, clip, source)


def decode_frames(
    tok: Tokenizer,
    tokens: TokenFile,
    *,
    options: Optional[InferenceOptions] = None,
) -> Iterator[Tensor]:
    """Decode a token file chunk by chunk, yielding uint8 frames (n, H, W, 3) on the host, ``tokens.frames`` in
    all (decoded on the tokenizer's device)."""
    yield from _decoded_frames(tok, tokens, _file_options(tok, options))


def _decoded_frames(tok: Tokenizer, tokens: TokenFile, opts: InferenceOptions) -> Iterator[Tensor]:
    tokens.check_tokenizer(tok.config)
    tokens.check_frames()  # tokens made in memory or read from shards too, not only files through load_tokens
    indices = tokens.kind == "indices"
    time_dim = 1 if indices else 2
    data, t, device = tokens.data, tokens.data.shape[time_dim], tok.device

    def part(i: int, step: int) -> Tensor:
        return data.narrow(time_dim, i, min(step, t - i)).to(device)

    remaining = tokens.frames
    with torch.inference_mode():
        if tok.config.causal:
            step = opts.chunk_latents
            with tok.decoder_stream(options=opts, indices=indices) as stream:
                pieces = (stream.push(part(i, step)) for i in range(0, t, step))
                for piece in _chain(pieces, stream.finish):
                    piece = piece[:, :, :remaining]
                    remaining -= piece.shape[2]
                    if piece.shape[2]:
                        yield to_host(tensor_to_frames(piece))
        else:
            step = (tokens.clip_frames or tok.config.temporal_factor * t) // tok.config.temporal_factor
            decode = tok.decode_indices if indices else tok.decode
            for i in range(0, t, step):
                piece = decode(part(i, step), options=opts)
                piece = piece[:, :, :remaining]
                remaining -= piece.shape[2]
                yield to_host(tensor_to_frames(piece))


def _chain(pieces: Iterator[Tensor], last) -> Iterator[Tensor]:
    yield from pieces
    yield last()


def decode_video(
    tok: Tokenizer,
    tokens: TokenFile,
    out_path: str | os.PathLike,
    *,
    options: Optional[InferenceOptions] = None,
    progress: bool = False,
) -> int:
    """Decode a token file into a video file (written atomically); returns the number of frames."""
    opts = _file_options(tok, options)
    with VideoWriter(out_path, tokens.fps) as writer, _bar(tokens.frames, "decode", progress) as bar:
        for frames in _decoded_frames(tok, tokens, opts):
            writer.write(frames)
            bar.update(frames.shape[0])
    return writer.frames_written


def reconstruct_stream(
    tok: Tokenizer,
    chunks: Iterable[Tensor],
    *,
    options: Optional[InferenceOptions] = None,
    sample: bool = False,
    generator: Optional[torch.Generator] = None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Causal models: reconstruct a video that arrives as float chunks (B, 3, n, H, W) in [-1, 1] of any sizes.

    Yields ``(inputs, reconstruction)`` pairs of equal length as soon as frames are decoded (the
    reconstruction as the decoder returns it, not clamped); together they hold every input frame once, in
    order, and equal a full pass over the whole video up to float rounding. Memory does not grow with the
    video's length: only the frames waiting for their reconstruction are kept. ``sample`` / ``generator``: KL
    latents drawn from the posterior (see [`encode`][vidtok.Tokenizer.encode]). Chunks and tiles: ``options``.
    Chunks go to the tokenizer's device (a no-op where they are already there), and the pairs are there.
    """
    on_model = (chunk.to(tok.device) for chunk in chunks)
    yield from _reconstructed(tok, on_model, _file_options(tok, options), sample, generator)


def _reconstructed(
    tok: Tokenizer, chunks: Iterable[Tensor], opts: InferenceOptions, sample: bool, generator: Optional[torch.Generator]
) -> Iterator[tuple[Tensor, Tensor]]:
    waiting: deque[Tensor] = deque()  # input frames (B, 3, 1, H, W) waiting for their reconstruction

    def pair(recon: Tensor) -> Optional[tuple[Tensor, Tensor]]:
        recon = recon[:, :, : len(waiting)]
        if not recon.shape[2]:
            return None
        return torch.cat([waiting.popleft() for _ in range(recon.shape[2])], dim=2), recon

    enc = tok.encoder_stream(options=opts, sample=sample, generator=generator)
    with enc, tok.decoder_stream(options=opts) as dec:
        for frames in chunks:
            waiting.extend(frames.split(1, dim=2))
            latents = enc.push(frames)
            if latents.shape[2] and (out := pair(dec.push(latents))) is not None:
                yield out
        tail = enc.finish()
        if tail.shape[2] and (out := pair(dec.push(tail))) is not None:
            yield out
        if (out := pair(dec.finish())) is not None:
            yield out


def reconstruct_video(
    tok: Tokenizer,
    in_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    reading: Optional[ReadSettings] = None,
    options: Optional[InferenceOptions] = None,
    side_by_side: bool = False,
    progress: bool = False,
) -> dict:
    """Encode and decode a video file (read as ``reading`` says) into another, streaming; optionally input |
    reconstruction side by side.

    Returns the frame count, the processed size and fps, and the PSNR (dB) of the reconstruction
    against the processed input, over all frames. Causal models stream; non-causal ones reconstruct clips of
    ``reading.clip_frames`` frames.
    """
    opts = _file_options(tok, options)
    plan = plan_read(tok, in_path, reading or ReadSettings())
    clip = plan.clip
    squared_error, count = 0.0, 0

    def pairs() -> Iterator[tuple[Tensor, Tensor]]:
        if clip is None:
            chunks = (_on_model(tok, frames) for frames in _frames(plan, opts.chunk_frames))
            yield from _reconstructed(tok, chunks, opts, sample=False, generator=None)
        else:
            padded = opts.replace(pad=True)  # still checked: replace checks only the field it changes
            for frames in _frames(plan, clip):
                x = _on_model(tok, frames)
                yield x, tok(x, options=padded)

    with (
        torch.inference_mode(),
        VideoWriter(out_path, plan.fps) as writer,
        _bar(plan.expected_frames, "reconstruct", progress) as bar,
    ):
        for x, recon in pairs():
            inputs, frames = to_host(tensor_to_frames(x)), to_host(tensor_to_frames(recon))
            squared_error += (frames.float() - inputs.float()).pow(2).sum().item()
            count += inputs.numel()
            writer.write(torch.cat([inputs, frames], dim=2) if side_by_side else frames)
            bar.update(frames.shape[0])
    from ..metrics.frame import psnr_from_mse  # lazy: torchmetrics is slow to import

    psnr = psnr_from_mse(squared_error / max(count, 1) / 255.0**2)  # of the 8-bit frames written, on [0, 1]
    return {"frames": writer.frames_written, "height": plan.height, "width": plan.width, "fps": plan.fps, "psnr": psnr}
