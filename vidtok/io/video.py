"""Reading and writing video files (PyAV, which bundles FFmpeg), and frame <-> tensor conversion.

Frames are uint8 tensors (n, H, W, 3); model tensors are float (B, 3, T, H, W) in [-1, 1]. The frame readers:
[`sampled_frames`][] (front to back, every n-th frame), [`iter_frames`][] (the same in resized chunks) and
[`read_clip`][] (the frames at given indices, seeking to the key frame before a late clip).

PyAV was chosen by measurement on the reference CPU (docs, Data): it decodes 256x256 H.264 at about
1000 frames/s, bundles its own FFmpeg (nothing to install) and can seek; torchcodec is faster but needs
a system FFmpeg, decord is unmaintained.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from ..errors import VideoError
from .files import existing_file, give_umask_mode


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video's first video stream."""

    path: str
    fps: float
    width: int
    height: int
    frames: Optional[int]  # as the container reports it (or counted, see read_info)
    duration: Optional[float]  # seconds


VideoSource = Union[str, os.PathLike, bytes]


def source_name(source: VideoSource, name: Optional[str] = None) -> str:
    """How messages name a source: the given name, the path, or ``<N bytes>``."""
    if name:
        return name
    return f"<{len(source)} bytes>" if isinstance(source, bytes) else str(source)


#: The frame rate of a folder of numbered frames (DAVIS's sequences are 24 fps), which stores none.
FRAME_FOLDER_FPS = 24
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def frame_folder(path: Path) -> tuple[str, int, int]:
    """A folder of consecutively numbered frames (``00000.jpg``, ``00001.jpg``, ...): its file pattern (``%05d.jpg``),
    first number and frame count. VideoError when it holds none, or the numbers have gaps."""
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.stem.isdigit())
    if not files:
        raise VideoError(f"frame folder {path} holds no numbered frames ({', '.join(IMAGE_SUFFIXES)})")
    width, suffix = len(files[0].stem), files[0].suffix
    numbers = [int(p.stem) for p in files]
    if any(len(p.stem) != width or p.suffix != suffix for p in files) or numbers != list(
        range(numbers[0], numbers[0] + len(files))
    ):
        raise VideoError(f"frame folder {path}: frames must be numbered consecutively with one width and suffix")
    return f"%0{width}d{suffix}", numbers[0], len(files)


def _open_frame_folder(path: Path, label: str):
    """A folder of numbered frames as a video of [`FRAME_FOLDER_FPS`][] frames per second (FFmpeg's image2)."""
    import av

    pattern, start, _ = frame_folder(path)
    options = {"framerate": str(FRAME_FOLDER_FPS), "start_number": str(start)}
    try:
        return av.open(str(path / pattern), format="image2", options=options)
    except (av.error.FFmpegError, OSError) as err:
        raise VideoError(f"cannot read frame folder {label}: {err}") from None


def open_video(source: VideoSource, name: Optional[str] = None):
    """An open PyAV container (a file path, the file's bytes, or a folder of numbered frames) with a video stream;
    errors name the source."""
    import av

    label = source_name(source, name)
    if isinstance(source, bytes):
        if not source:
            raise VideoError(f"video {label} is empty (0 bytes)")
        target = io.BytesIO(source)
    elif Path(source).is_dir():
        return _open_frame_folder(Path(source), label)
    else:
        target = str(existing_file(source, "video", VideoError, label))
    try:
        container = av.open(target)
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise VideoError(f"cannot read video {label}: {err}") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{label} has no video stream")
    return container


def stream_fps(stream, label: str) -> float:
    """A video stream's average (else guessed) frame rate."""
    rate = stream.average_rate or stream.guessed_rate
    if not rate:
        raise VideoError(f"{label}: the video stream has no frame rate")
    return float(rate)


def read_info(source: VideoSource, name: Optional[str] = None, *, count: bool = False) -> VideoInfo:
    """Frame rate, size, frame count and duration of a video file (or its bytes). The count is the
    container's; with ``count=True``, or where the container has none, packets are counted (the file is
    read, nothing is decoded)."""
    import av

    label = source_name(source, name)
    with open_video(source, name) as container:
        stream = container.streams.video[0]
        fps = stream_fps(stream, label)
        duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
        if duration is None and container.duration:
            duration = container.duration / 1_000_000
        frames = stream.frames or None
        if count or frames is None:
            try:
                frames = sum(1 for packet in container.demux(stream) if packet.size)
            except av.error.FFmpegError as err:
                raise VideoError(f"cannot read video {label}: {err}") from None
        return VideoInfo(
            path=label,
            fps=fps,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            frames=frames,
            duration=duration,
        )


def frame_interval(source_fps: float, sample_fps: Optional[float]) -> int:
    """Keep every ``round(source_fps / sample_fps)``-th frame, as VidTok does (at least every frame)."""
    if sample_fps is None:
        return 1
    if sample_fps <= 0:
        raise VideoError(f"sample fps must be positive, got {sample_fps}")
    return max(1, round(source_fps / sample_fps))


@dataclass
class SampledFrames:
    """A video opened for reading front to back: every ``interval``-th frame of a ``source_fps`` stream is kept;
    ``frames`` yields ``(source index, uint8 frame (H, W, 3))`` as they are decoded and closes the file."""

    source_fps: float
    interval: int
    frames: Iterator[tuple[int, Tensor]]

    @property
    def fps(self) -> float:
        """The frame rate of the kept frames."""
        return self.source_fps / self.interval


def sampled_frames(
    source: VideoSource, sample_fps: Optional[float], name: Optional[str] = None, *, interval: Optional[int] = None
) -> SampledFrames:
    """The video's frames, decoding front to back. Keeps every ``round(fps / sample_fps)``-th frame (or every
    ``interval``-th, when the caller has worked it out already: give one of the two); a stream that changes frame
    size midway is scaled to its first frame's size. Corrupt data raises [`VideoError`][] naming the video
    (after the frames decoded before it)."""

    label = source_name(source, name)
    container = open_video(source, name)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        source_fps = stream_fps(stream, label)
        if interval is None:
            interval = frame_interval(source_fps, sample_fps)
        elif sample_fps is not None or interval < 1:
            raise ValueError(f"give sample_fps or a positive interval, not both (got {sample_fps}, {interval})")
    except BaseException:
        container.close()
        raise
    return SampledFrames(source_fps, interval, _frames_of(container, stream, label, lambda i: i % interval == 0))


def _frames_of(container, stream, label: str, keep) -> Iterator[tuple[int, Tensor]]:
    """(index, uint8 frame) for the decoded frames whose index ``keep`` accepts (only those are converted);
    closes the container. A stream that changes size midway is scaled to its first frame's size (as decord)."""
    import av

    decoded = 0
    size: Optional[tuple[int, int]] = None
    try:
        for index, frame in enumerate(container.decode(stream)):
            decoded += 1
            if size is None:
                size = (frame.width, frame.height)
            if not keep(index):
                continue
            if (frame.width, frame.height) != size:
                frame = frame.reformat(width=size[0], height=size[1])
            yield index, torch.from_numpy(frame.to_ndarray(format="rgb24"))
    except av.error.FFmpegError as err:
        raise VideoError(f"cannot decode video {label} after {decoded} frames: {err}") from None
    finally:
        container.close()
    if decoded == 0:
        raise VideoError(f"video {label} holds no decodable frames")


def iter_frames(
    path: VideoSource,
    *,
    sample_fps: Optional[float] = None,
    interval: Optional[int] = None,
    size: Optional[tuple[int, int]] = None,
    chunk: int = 16,
    max_frames: Optional[int] = None,
) -> Iterator[Tensor]:
    """Decode a video (a path or the file's bytes) lazily, yielding uint8 frames (n <= chunk, H, W, 3).

    Frames are those of [`sampled_frames`][]; with ``size=(H, W)`` they are resized so they cover H x W
    (antialiased) and centre-cropped to it. Corrupt data raises [`VideoError`][] naming the file.
    """
    frames = sampled_frames(path, sample_fps, interval=interval).frames
    batch: list[Tensor] = []
    kept = 0
    try:
        for _, frame in frames:
            batch.append(frame)
            kept += 1
            if len(batch) == chunk or kept == max_frames:
                yield _finish(batch, size)
                batch = []
            if kept == max_frames:
                return
    finally:
        frames.close()
    if batch:
        yield _finish(batch, size)


def _finish(batch: list[Tensor], size: Optional[tuple[int, int]]) -> Tensor:
    frames = torch.stack(batch)
    return frames if size is None else resize_crop(frames, *size)


# Seeking costs a reopen of the decoder; decoding forward is cheaper for clips that start early.
SEEK_MIN_FRAMES = 24
# Containers whose timestamps map to frame indices reliably; others (AVI, MPEG-TS, ...) decode from the start.
SEEKABLE_FORMATS = {"mov", "mp4", "matroska", "webm"}


def read_clip(source: VideoSource, indices: Sequence[int], name: Optional[str] = None) -> Tensor:
    """uint8 frames ``(len(indices), H, W, 3)`` at the given frame indices (0-based, in display order;
    they may repeat and need not be sorted). A clip that starts late is read by seeking to the key frame
    before it; otherwise, or when the container's timestamps cannot be trusted, the frames are those of
    decoding from the start. Missing frames raise [`VideoError`][] naming the source."""
    if not len(indices):
        raise ValueError("read_clip needs at least one frame index")
    if min(indices) < 0:
        raise ValueError(f"frame indices must be >= 0, got {min(indices)}")
    wanted = set(indices)
    label = source_name(source, name)
    frames = _seek_frames(source, wanted, label) if min(wanted) >= SEEK_MIN_FRAMES else None
    if frames is None:
        frames = _front_frames(source, wanted, label)
    missing = sorted(wanted - frames.keys())
    if missing:
        raise VideoError(
            f"video {label} has no frame {missing[0]} (needed frames up to {max(wanted)}, "
            f"decoded {len(frames)} of {len(wanted)}): truncated, or shorter than its header says"
        )
    return torch.stack([frames[i] for i in indices])


def _front_frames(source: VideoSource, wanted: set[int], label: str) -> dict[int, Tensor]:
    """The wanted frames, decoding from the start; a damaged tail keeps what decoded before it."""
    found: dict[int, Tensor] = {}
    last = max(wanted)
    container = open_video(source, label)
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    frames = _frames_of(container, stream, label, wanted.__contains__)
    try:
        for index, frame in frames:
            if index in wanted:
                found[index] = frame
            if index >= last:
                break
    except VideoError:
        if not found:
            raise
    finally:
        frames.close()
    return found


def _seek_frames(source: VideoSource, wanted: set[int], label: str) -> Optional[dict[int, Tensor]]:
    """Frames by index from timestamps, after seeking to the key frame before the first wanted frame;
    None when that cannot be trusted (no timestamps, a container without reliable ones, landed too late)."""
    import av

    first, last = min(wanted), max(wanted)
    found: dict[int, Tensor] = {}
    previous = -1
    with open_video(source, label) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = stream_fps(stream, label)
        base, start_pts = stream.time_base, stream.start_time or 0
        if base is None or not SEEKABLE_FORMATS & set(container.format.name.split(",")):
            return None
        try:
            container.seek(start_pts + int(first / fps / base), stream=stream, backward=True, any_frame=False)
        except av.error.FFmpegError:
            return None
        try:
            for position, frame in enumerate(container.decode(stream)):
                if frame.pts is None:
                    return None
                index = round(float((frame.pts - start_pts) * base) * fps)
                if (position == 0 and index > first) or (position > 0 and index <= previous):
                    return None  # landed past the clip, or timestamps that are not frame positions
                previous = index
                if index in wanted:
                    found[index] = torch.from_numpy(frame.to_ndarray(format="rgb24"))
                if index >= last:
                    break
        except av.error.FFmpegError as err:
            if not found:
                raise VideoError(f"cannot decode video {label}: {err}") from None
            # a damaged tail: keep what decoded; read_clip reports the frames that are missing
    return found


def cover_size(height: int, width: int, target_h: int, target_w: int) -> tuple[int, int]:
    """The size (aspect kept) whose sides both cover ``target_h x target_w``, by torchvision's rounding
    (the long side becomes ``int(short_target * long / short)``)."""
    if target_h * width >= target_w * height:  # the height binds
        return target_h, max(target_w, int(target_h * width / height))
    return max(target_h, int(target_w * height / width)), target_w


def resize_crop(frames: Tensor, height: int, width: int) -> Tensor:
    """Resize uint8 frames (n, H, W, 3) to cover ``height`` x ``width`` (antialiased bilinear, aspect
    kept), then centre-crop. For square targets this is VidTok's short-side resize + centre crop."""
    n, h, w, _ = frames.shape
    new_h, new_w = cover_size(h, w, height, width)
    if (new_h, new_w) != (h, w):
        x = rearrange(frames, "n h w c -> n c h w").float()
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
        frames = rearrange(x.round_().clamp_(0, 255).to(torch.uint8), "n c h w -> n h w c")
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return frames[:, top : top + height, left : left + width].contiguous()


def frames_to_tensor(frames: Tensor) -> Tensor:
    """uint8 frames (n, H, W, 3) -> float video (1, 3, n, H, W) in [-1, 1]."""
    return rearrange(frames, "n h w c -> 1 c n h w").float().div_(127.5).sub_(1.0)


def tensor_to_frames(video: Tensor) -> Tensor:
    """Float video (B, 3, T, H, W) in [-1, 1] (clamped) -> uint8 frames (B*T, H, W, 3), rounded."""
    x = video.detach().float().clamp(-1, 1).add(1).mul_(127.5).round_().to(torch.uint8)
    return rearrange(x, "b c t h w -> (b t) h w c")


def even_size(height: int, width: int, factor: int) -> tuple[int, int]:
    """The largest (H, W) <= the given size that are multiples of ``factor`` (and of 2, for yuv420p)."""
    step = math.lcm(factor, 2)
    return max(step, height // step * step), max(step, width // step * step)


class VideoWriter:
    """Write uint8 frames to a video file (H.264 in MP4 by default), atomically.

    Frames go to a temporary file beside the target, renamed into place on [`close`][]; if an error
    interrupts writing, the temporary file is removed and nothing is left half written.
    """

    def __init__(self, path: str | os.PathLike, fps: float, *, codec: str = "libx264", crf: int = 18):
        import av

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{self.path.stem}.", suffix=self.path.suffix or ".mp4", dir=self.path.parent
        )
        os.close(fd)
        self._tmp = Path(tmp)
        try:
            self._container = av.open(str(self._tmp), mode="w")
            self._stream = self._container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        except BaseException:
            self._tmp.unlink(missing_ok=True)  # nothing half written, not even an empty temporary file
            raise
        self._stream.pix_fmt = "yuv420p"
        if codec in ("libx264", "libx265"):
            self._stream.options = {"crf": str(crf)}
        self._size: Optional[tuple[int, int]] = None
        self.frames_written = 0

    def write(self, frames: Tensor) -> None:
        """Append uint8 frames (n, H, W, 3); every frame must have the size of the first."""
        import av

        if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected uint8 frames (n, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
        if self._size is None:
            self._size = tuple(frames.shape[1:3])
            self._stream.height, self._stream.width = self._size
        elif tuple(frames.shape[1:3]) != self._size:
            raise ValueError(f"frame size {tuple(frames.shape[1:3])} differs from the first frames' {self._size}")
        for frame in frames.cpu().numpy():
            packet = self._stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24"))
            self._container.mux(packet)
            self.frames_written += 1

    def close(self) -> Path:
        """Flush, close and move the file into place; returns its path."""
        self._container.mux(self._stream.encode())
        self._container.close()
        give_umask_mode(self._tmp)
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Stop writing and remove the temporary file."""
        try:
            self._container.close()
        finally:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(path: str | os.PathLike, frames: Tensor, fps: float, **kwargs) -> Path:
    """Write uint8 frames (n, H, W, 3) to ``path`` in one go."""
    with VideoWriter(path, fps, **kwargs) as writer:
        writer.write(frames)
    return writer.path
