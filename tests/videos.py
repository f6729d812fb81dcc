"""Small real videos for data tests: each frame carries its index, so decoded frames can be identified."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import torch

# Frame i: left half at level 16 * (i // 16) + 8, right half at 16 * (i % 16) + 8 (room for codec noise).
MAX_FRAMES = 256


def indexed_frames(frames: int, height: int = 32, width: int = 48) -> torch.Tensor:
    """uint8 frames (frames, H, W, 3) whose halves encode the frame index."""
    if frames > MAX_FRAMES:
        raise ValueError(f"at most {MAX_FRAMES} indexed frames")
    out = torch.empty(frames, height, width, 3, dtype=torch.uint8)
    for i in range(frames):
        out[i, :, : width // 2] = 16 * (i // 16) + 8
        out[i, :, width // 2 :] = 16 * (i % 16) + 8
    return out


def frame_ids(frames: torch.Tensor) -> list[int]:
    """The indices that :func:`indexed_frames` wrote, read back from decoded uint8 frames (n, H, W, 3)."""
    width = frames.shape[2]
    left = frames[:, 2:-2, 2 : width // 2 - 2].float().mean(dim=(1, 2, 3))
    right = frames[:, 2:-2, width // 2 + 2 : -2].float().mean(dim=(1, 2, 3))
    pairs = zip(left.tolist(), right.tolist(), strict=True)
    return [int(round((a - 8) / 16)) * 16 + int(round((b - 8) / 16)) for a, b in pairs]


def write_indexed_video(
    path: Path,
    frames: int,
    fps: float | Fraction = 24,
    height: int = 32,
    width: int = 48,
    gop: int = 12,
    faststart: bool = False,
    codec: str = "libx264",
) -> Path:
    """A video of :func:`indexed_frames`, a key frame every ``gop`` frames; the container follows the
    file's suffix. H.264 (the default) has B-frames on."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.height, stream.width, stream.pix_fmt = height, width, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "10", "g": str(gop), "bf": "2", "sc_threshold": "0"}
        else:
            stream.options = {"g": str(gop)}
            stream.bit_rate = 2_000_000
        for frame in indexed_frames(frames, height, width).numpy():
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path
