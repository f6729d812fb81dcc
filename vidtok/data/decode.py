"""Decode just the frames a clip needs, from a video file or from video bytes (PyAV).

PyAV was chosen by measurement on the reference CPU (README, Data): it decodes 256x256 H.264 at about
1000 frames/s, bundles its own FFmpeg (nothing to install) and can seek; torchcodec is faster but needs
a system FFmpeg, decord is unmaintained. A clip that starts late in a long video is read by seeking to
the key frame before it and decoding forward, not by decoding everything before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
from torch import Tensor

from ..io.video import VideoError, VideoSource, open_video, source_name, stream_fps

# Seeking costs a reopen of the decoder; decoding forward is cheaper for clips that start early.
SEEK_MIN_FRAMES = 24
# Containers whose timestamps map to frame indices reliably; others (AVI, MPEG-TS, ...) decode from the start.
SEEKABLE_FORMATS = {"mov", "mp4", "matroska", "webm"}


def read_clip(source: VideoSource, indices: Sequence[int], name: Optional[str] = None) -> Tensor:
    """uint8 frames ``(len(indices), H, W, 3)`` at the given frame indices (0-based, in display order;
    they may repeat and need not be sorted). Missing frames raise :class:`VideoError` naming the source."""
    if not len(indices):
        raise ValueError("read_clip needs at least one frame index")
    if min(indices) < 0:
        raise ValueError(f"frame indices must be >= 0, got {min(indices)}")
    wanted = set(indices)
    label = source_name(source, name)
    frames = _decode(source, wanted, label, seek=min(wanted) >= SEEK_MIN_FRAMES)
    if frames is None:  # the seek could not be trusted: decode from the start
        frames = _decode(source, wanted, label, seek=False)
    missing = sorted(wanted - frames.keys())
    if missing:
        raise VideoError(
            f"video {label} has no frame {missing[0]} (needed frames up to {max(wanted)}, "
            f"decoded {len(frames)} of {len(wanted)}): truncated, or shorter than its header says"
        )
    return torch.stack([frames[i] for i in indices])


def _decode(source: VideoSource, wanted: set[int], label: str, seek: bool) -> Optional[dict[int, Tensor]]:
    """Frames by index. With ``seek``, indices come from timestamps after seeking to the key frame before
    the first wanted frame; returns None if that cannot be trusted (no timestamps, landed too late)."""
    import av

    first, last = min(wanted), max(wanted)
    found: dict[int, Tensor] = {}
    previous = -1
    with open_video(source, label) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = stream_fps(stream, label)
        base = stream.time_base
        start_pts = stream.start_time or 0
        if seek:
            if base is None or not SEEKABLE_FORMATS & set(container.format.name.split(",")):
                return None
            try:
                container.seek(start_pts + int(first / fps / base), stream=stream, backward=True, any_frame=False)
            except av.error.FFmpegError:
                return None
        try:
            for position, frame in enumerate(container.decode(stream)):
                if seek:
                    if frame.pts is None:
                        return None
                    index = round(float((frame.pts - start_pts) * base) * fps)
                    if (position == 0 and index > first) or (position > 0 and index <= previous):
                        return None  # landed past the clip, or timestamps that are not frame positions
                    previous = index
                else:
                    index = position
                if index in wanted:
                    found[index] = torch.from_numpy(frame.to_ndarray(format="rgb24"))
                if index >= last:
                    break
        except av.error.FFmpegError as err:
            if not found:
                raise VideoError(f"cannot decode video {label}: {err}") from None
            # a damaged tail: keep what decoded; read_clip reports the frames that are missing
    return found
