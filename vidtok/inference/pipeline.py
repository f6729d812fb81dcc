"""Video file -> tokens -> video file, in bounded memory.

Causal models stream: frames are decoded from the file, encoded and decoded chunk by chunk, and
written as they come, so memory depends on the chunk sizes, not on the video length. Non-causal
models see the video as independent clips of ``chunk_frames`` frames (the last one padded with
copies of its last frame, then trimmed), which is how they are evaluated.
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

if TYPE_CHECKING:
    from ..models.tokenizer import Tokenizer


@dataclass
class ReadPlan:
    """How a video is read: its info, the processed frame size and fps, and the expected frame count."""

    info: VideoInfo
    height: int
    width: int
    fps: float
    interval: int
    expected_frames: Optional[int]
    max_frames: Optional[int]


def plan_read(
    tok: Tokenizer,
    path: str | os.PathLike,
    height: Optional[int] = None,
    width: Optional[int] = None,
    sample_fps: Optional[float] = None,
    max_frames: Optional[int] = None,
) -> ReadPlan:
    """Probe ``path`` and decide the processed size (default: the source size cropped to a multiple of
    the spatial factor) and frame rate (default: the source's); sizes that do not fit are refused."""
    info = read_info(path)
    fs = tok.config.spatial_factor
    if height is None or width is None:
        h, w = even_size(info.height, info.width, fs)
        height, width = height or h, width or w
    if height % fs or width % fs or height % 2 or width % 2:
        raise InputError(
            f"height and width must be even multiples of {fs} for {tok._label()}, got {height}x{width} "
            f"(e.g. {even_size(height, width, fs)[0]}x{even_size(height, width, fs)[1]})"
        )
    interval = frame_interval(info.fps, sample_fps)
    expected = None if info.frames is None else -(-info.frames // interval)
    if max_frames is not None:
        expected = max_frames if expected is None else min(expected, max_frames)
    return ReadPlan(info, height, width, info.fps / interval, interval, expected, max_frames)


def _frames(plan: ReadPlan, chunk: int) -> Iterator[Tensor]:
    return iter_frames(
        plan.info.path,
        interval=plan.interval,  # worked out once, by plan_read
        size=(plan.height, plan.width),
        chunk=chunk,
        max_frames=plan.max_frames,
    )


def _bar(total: Optional[int], desc: str, progress: bool):
    return tqdm(total=total, desc=desc, unit="frame", disable=not progress, leave=False)


def _clip_frames(tok: Tokenizer, chunk_frames: int) -> int:
    f = tok.config.temporal_factor
    if chunk_frames % f:
        raise InputError(f"chunk_frames must be a multiple of {f} for {tok._label()}, got {chunk_frames}")
    return chunk_frames


def encode_video(
    tok: Tokenizer,
    path: str | os.PathLike,
    *,
    height: Optional[int] = None,
    width: Optional[int] = None,
    sample_fps: Optional[float] = None,
    max_frames: Optional[int] = None,
    chunk_frames: int = 16,
    tile: Optional[int] = None,
    tile_overlap: Optional[int] = None,
    indices: bool = False,
    progress: bool = False,
) -> TokenFile:
    """Tokenize a video file; returns latents or FSQ indices with what is needed to decode them."""
    plan = plan_read(tok, path, height, width, sample_fps, max_frames)
    output = "indices" if indices else "latents"
    parts: list[Tensor] = []
    frames_in = 0
    clip = None
    with torch.inference_mode(), _bar(plan.expected_frames, "encode", progress) as bar:
        if tok.config.causal:
            with tok.encoder_stream(chunk_frames, output=output, tile=tile, tile_overlap=tile_overlap) as stream:
                for frames in _frames(plan, chunk_frames):
                    parts.append(stream.push(frames_to_tensor(frames)))
                    frames_in += frames.shape[0]
                    bar.update(frames.shape[0])
                parts.append(stream.finish())
        else:
            clip = _clip_frames(tok, chunk_frames)
            encode = tok.encode_indices if indices else tok.encode
            for frames in _frames(plan, clip):
                parts.append(encode(frames_to_tensor(frames), tile=tile, tile_overlap=tile_overlap, pad=True))
                frames_in += frames.shape[0]
                bar.update(frames.shape[0])
    data = torch.cat(parts, dim=1 if indices else 2)
    source = {"path": str(plan.info.path), "fps": plan.info.fps, "height": plan.info.height, "width": plan.info.width}
    return TokenFile(output, data, tok.config, plan.fps, frames_in, plan.height, plan.width, clip, source)


def decode_frames(
    tok: Tokenizer,
    tokens: TokenFile,
    *,
    chunk_latents: int = 4,
    tile: Optional[int] = None,
    tile_overlap: Optional[int] = None,
) -> Iterator[Tensor]:
    """Decode a token file chunk by chunk, yielding uint8 frames (n, H, W, 3), ``tokens.frames`` in all."""
    tokens.check_tokenizer(tok.config)
    indices = tokens.kind == "indices"
    time_dim = 1 if indices else 2
    data, t = tokens.data, tokens.data.shape[time_dim]
    remaining = tokens.frames
    with torch.inference_mode():
        if tok.config.causal:
            with tok.decoder_stream(chunk_latents, indices=indices, tile=tile, tile_overlap=tile_overlap) as stream:
                pieces = (
                    stream.push(data.narrow(time_dim, i, min(chunk_latents, t - i))) for i in range(0, t, chunk_latents)
                )
                for piece in _chain(pieces, stream.finish):
                    piece = piece[:, :, :remaining]
                    remaining -= piece.shape[2]
                    if piece.shape[2]:
                        yield tensor_to_frames(piece)
        else:
            step = (tokens.clip_frames or tok.config.temporal_factor * t) // tok.config.temporal_factor
            decode = tok.decode_indices if indices else tok.decode
            for i in range(0, t, step):
                piece = decode(data.narrow(time_dim, i, min(step, t - i)), tile=tile, tile_overlap=tile_overlap)
                piece = piece[:, :, :remaining]
                remaining -= piece.shape[2]
                yield tensor_to_frames(piece)


def _chain(pieces: Iterator[Tensor], last) -> Iterator[Tensor]:
    yield from pieces
    yield last()


def decode_video(
    tok: Tokenizer,
    tokens: TokenFile,
    out_path: str | os.PathLike,
    *,
    chunk_latents: int = 4,
    tile: Optional[int] = None,
    tile_overlap: Optional[int] = None,
    progress: bool = False,
) -> int:
    """Decode a token file into a video file (written atomically); returns the number of frames."""
    with VideoWriter(out_path, tokens.fps) as writer, _bar(tokens.frames, "decode", progress) as bar:
        for frames in decode_frames(tok, tokens, chunk_latents=chunk_latents, tile=tile, tile_overlap=tile_overlap):
            writer.write(frames)
            bar.update(frames.shape[0])
    return writer.frames_written


def reconstruct_stream(
    tok: Tokenizer,
    chunks: Iterable[Tensor],
    *,
    chunk_frames: int = 16,
    chunk_latents: int = 4,
    tile: Optional[int] = None,
    tile_overlap: Optional[int] = None,
    sample: bool = False,
    generator: Optional[torch.Generator] = None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Causal models: reconstruct a video that arrives as float chunks (B, 3, n, H, W) in [-1, 1] of any sizes.

    Yields ``(inputs, reconstruction)`` pairs of equal length as soon as frames are decoded (the
    reconstruction as the decoder returns it, not clamped); together they hold every input frame once, in
    order, and equal a full pass over the whole video up to float rounding. Memory does not grow with the
    video's length: only the frames waiting for their reconstruction are kept. ``sample`` / ``generator``: KL
    latents drawn from the posterior (see :meth:`~vidtok.Tokenizer.encode`).
    """
    waiting: deque[Tensor] = deque()  # input frames (B, 3, 1, H, W) waiting for their reconstruction

    def pair(recon: Tensor) -> Optional[tuple[Tensor, Tensor]]:
        recon = recon[:, :, : len(waiting)]
        if not recon.shape[2]:
            return None
        return torch.cat([waiting.popleft() for _ in range(recon.shape[2])], dim=2), recon

    enc = tok.encoder_stream(chunk_frames, sample=sample, generator=generator, tile=tile, tile_overlap=tile_overlap)
    with enc, tok.decoder_stream(chunk_latents, tile=tile, tile_overlap=tile_overlap) as dec:
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
    height: Optional[int] = None,
    width: Optional[int] = None,
    sample_fps: Optional[float] = None,
    max_frames: Optional[int] = None,
    chunk_frames: int = 16,
    chunk_latents: int = 4,
    tile: Optional[int] = None,
    tile_overlap: Optional[int] = None,
    side_by_side: bool = False,
    progress: bool = False,
) -> dict:
    """Encode and decode a video file into another, streaming; optionally input | reconstruction side by side.

    Returns the frame count, the processed size and fps, and the PSNR (dB) of the reconstruction
    against the processed input, over all frames.
    """
    plan = plan_read(tok, in_path, height, width, sample_fps, max_frames)
    squared_error, count = 0.0, 0

    def pairs() -> Iterator[tuple[Tensor, Tensor]]:
        if tok.config.causal:
            chunks = (frames_to_tensor(frames) for frames in _frames(plan, chunk_frames))
            yield from reconstruct_stream(
                tok,
                chunks,
                chunk_frames=chunk_frames,
                chunk_latents=chunk_latents,
                tile=tile,
                tile_overlap=tile_overlap,
            )
        else:
            _clip_frames(tok, chunk_frames)
            for frames in _frames(plan, chunk_frames):
                x = frames_to_tensor(frames)
                yield x, tok(x, tile=tile, tile_overlap=tile_overlap, pad=True)

    with (
        torch.inference_mode(),
        VideoWriter(out_path, plan.fps) as writer,
        _bar(plan.expected_frames, "reconstruct", progress) as bar,
    ):
        for x, recon in pairs():
            inputs, frames = tensor_to_frames(x), tensor_to_frames(recon)
            squared_error += (frames.float() - inputs.float()).pow(2).sum().item()
            count += inputs.numel()
            writer.write(torch.cat([inputs, frames], dim=2) if side_by_side else frames)
            bar.update(frames.shape[0])
    from ..metrics.frame import psnr_from_mse

    psnr = psnr_from_mse(squared_error / max(count, 1) / 255.0**2)  # of the 8-bit frames written, on [0, 1]
    return {"frames": writer.frames_written, "height": plan.height, "width": plan.width, "fps": plan.fps, "psnr": psnr}
