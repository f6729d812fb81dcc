"""FVD between two sets of videos that are not paired (generated videos against real ones, any counts): the I3D
detector, its SHA-256 check, the frame protocol and the float64 Frechet distance of ``evaluate.py``, with each set's
feature statistics cached so that a real set is featurized once.

report = fvd_between("generated/", "real/")              # folders, CSV files or tar shards, as evaluate.py lists them
print(report.fvd, report.detector["sha256"], report.real.cached)

The protocol ([`FVDProtocol`][]): frames sampled at ``sample_fps``, resized on [0, 1] floats to cover ``height`` x
``width`` and centre-cropped (as ``evaluate.py`` reads videos), cut into consecutive clips of ``clip_frames`` frames
(a shorter rest dropped), and the detector sees the first ``frames`` of each clip at 224 x 224
(``vidtok.metrics.fvd.preprocess_for_i3d``). ``clips="first"`` takes one clip per video.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from ..data.dataset import READ_ERRORS
from ..data.sources import expand_urls
from ..data.videos import Cutting, ListingFailure, VideoListConfig, list_videos, video_pieces
from ..errors import ConfigError, DataSourceError
from ..io.auxiliary_weights import sha256_of
from ..io.files import write_atomic
from ..metrics import FeatureStats, fvd_from_stats
from ..metrics.fvd import I3D, I3D_FRAMES, I3D_SHA256, i3d_features, load_i3d_detector

#: The version of what a cached feature file holds (bumped when the protocol's code changes what it computes).
CACHE_FORMAT = "vidtok-fvd-features-v1"


@dataclass(frozen=True)
class FVDProtocol:
    """How each set's videos become detector input (see the module docstring); ``evaluate.py``'s defaults."""

    height: int = 256
    width: int = 256
    sample_fps: Optional[float] = 30.0
    frames: int = I3D_FRAMES
    clip_frames: Optional[int] = None
    clips: str = "all"

    def checked(self) -> FVDProtocol:
        if self.clips not in ("all", "first"):
            raise ConfigError(f"clips must be 'all' or 'first', got {self.clips!r}")
        for name in ("height", "width", "frames"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.clip_length < self.frames:
            raise ConfigError(f"clips of {self.clip_length} frames are shorter than the {self.frames} FVD takes")
        if self.sample_fps is not None and self.sample_fps <= 0:
            raise ConfigError(f"sample_fps must be positive or null (every frame), got {self.sample_fps}")
        return self

    @property
    def clip_length(self) -> int:
        return self.clip_frames or self.frames

    def cutting(self) -> Cutting:
        first = self.clip_length if self.clips == "first" else None
        return Cutting(size=(self.height, self.width), sample_fps=self.sample_fps, mode="clips",
                       clip_frames=self.clip_length, last="drop", group=4, chunk_frames=self.clip_length,
                       max_frames=first)  # fmt: skip


@dataclass
class SetFeatures:
    """One set's I3D feature statistics: ``videos`` and ``clips`` featurized, ``failed`` (videos that gave no clip,
    with the reason), ``cached`` (read from the cache instead of computed), ``cache_file``."""

    source: str
    stats: FeatureStats
    videos: int
    clips: int
    failed: list[dict] = field(default_factory=list)
    cached: bool = False
    cache_file: Optional[str] = None

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "stats"}


@dataclass
class FVDReport:
    """The distance, both sets, the detector (file, SHA-256, what it is) and the protocol."""

    fvd: float
    generated: SetFeatures
    real: SetFeatures
    detector: dict
    protocol: dict

    def to_dict(self) -> dict[str, Any]:
        return {"fvd": self.fvd, "generated": self.generated.summary(), "real": self.real.summary(),
                "detector": self.detector, "protocol": self.protocol}  # fmt: skip

    def line(self) -> str:
        """The report in one line."""

        def part(s: SetFeatures) -> str:
            return f"{s.source} ({s.videos} videos, {s.clips} clips{', cached' if s.cached else ''})"

        p = self.protocol
        rate = "every frame" if p["sample_fps"] is None else f"{p['sample_fps']:g} fps"
        return (
            f"FVD {self.fvd:.2f}: {part(self.generated)} vs {part(self.real)}; {self.detector['name']} "
            f"sha256 {self.detector['sha256'][:12]}; first {p['frames']} frames of {p['clip_frames']}-frame clips "
            f"({p['clips']}) at {p['height']}x{p['width']}, {rate}"
        )


class Detector:
    """The I3D detector once loaded, with what names it in reports and cache keys (the file's SHA-256, computed
    also when the check is skipped)."""

    def __init__(self, path: Optional[Union[str, os.PathLike]] = None, sha256: Optional[str] = I3D_SHA256,
                 device: Union[str, torch.device] = "cpu"):  # fmt: skip
        from ..io.auxiliary_weights import resolve_weights

        file = resolve_weights(dataclasses.replace(I3D, sha256=sha256), path)  # checked here, hashed once
        self.module = load_i3d_detector(file, device, sha256=None)
        self.device = torch.device(device)
        self.file = file
        self.sha256 = sha256 or sha256_of(file)
        official = self.sha256 == I3D_SHA256
        self.info = {
            "name": "I3D (StyleGAN-V i3d_torchscript.pt)" if official else f"{file.name} (not the reference I3D)",
            "path": str(file),
            "sha256": self.sha256,
            "reference": official,
        }


def set_features(
    source: str,
    protocol: FVDProtocol,
    detector: Detector,
    *,
    cache_dir: Optional[Union[str, os.PathLike]] = None,
    limit: Optional[int] = None,
) -> SetFeatures:
    """The feature statistics of the videos of ``source`` (a folder, a CSV file or tar shards), from the cache when
    the same files were featurized before by the same detector and protocol (``cache_dir``; None: no cache)."""
    protocol = protocol.checked()
    listing = VideoListConfig(dir=str(source), limit=limit)
    listing.check()
    key = _fingerprint(listing, protocol, detector.sha256)
    cache_file = Path(cache_dir) / f"fvd-{key[:32]}.npz" if cache_dir is not None else None
    if cache_file is not None and cache_file.is_file():
        cached = _read_cache(cache_file, str(source))
        if cached is not None:
            return cached
    stats, videos, clips, failed = FeatureStats(), 0, 0, []
    cutting = protocol.cutting()
    for task in list_videos(listing):
        if isinstance(task, ListingFailure):
            failed.append({"key": task.key, "name": task.name, "reason": task.reason})
            continue
        try:
            count = 0
            for piece in video_pieces(task, cutting):
                video = piece.video.to(detector.device, torch.float32)
                stats.update(i3d_features(detector.module, video, protocol.frames).to("cpu", torch.float64))
                count += video.shape[0]
        except READ_ERRORS as err:
            failed.append({"key": task.key, "name": task.name, "reason": str(err)})
            continue
        videos, clips = videos + 1, clips + count
    result = SetFeatures(str(source), stats, videos, clips, failed, False, str(cache_file) if cache_file else None)
    if cache_file is not None and stats.count:
        _write_cache(cache_file, result, key)
    return result


def fvd_between(
    generated: str,
    real: str,
    protocol: FVDProtocol = FVDProtocol(),
    *,
    detector_path: Optional[Union[str, os.PathLike]] = None,
    detector_sha256: Optional[str] = I3D_SHA256,
    cache_dir: Optional[Union[str, os.PathLike]] = "default",
    device: Union[str, torch.device] = "cpu",
    limit: Optional[int] = None,
) -> FVDReport:
    """FVD of ``generated`` against ``real`` (folders, CSV files or tar shards of videos; any counts).

    ``cache_dir``: where each set's statistics are kept (``"default"``: ``fvd/`` in vidtok's cache,
    ``$VIDTOK_CACHE``; None: none). ``limit``: the first N videos of each set. Raises ConfigError /
    DataSourceError / WeightsError before featurizing when an input or the detector is wrong, and DataSourceError
    when a set gives fewer than 2 clips (no covariance)."""
    if cache_dir == "default":
        from ..hub import cache_dir as vidtok_cache

        cache_dir = vidtok_cache() / "fvd"
    protocol = protocol.checked()
    for source in (generated, real):
        VideoListConfig(dir=str(source)).check()
        if not Path(source).exists() and not expand_urls(str(source)):
            raise DataSourceError(f"{source} does not exist")
    detector = Detector(detector_path, detector_sha256, device)
    sets = [set_features(s, protocol, detector, cache_dir=cache_dir, limit=limit) for s in (generated, real)]
    for s in sets:
        if s.stats.count < 2:
            raise DataSourceError(
                f"{s.source} gave {s.stats.count} clips of {protocol.clip_length} frames ({len(s.failed)} videos "
                "failed); FVD needs at least 2 per set"
            )
    fvd = fvd_from_stats(sets[1].stats, sets[0].stats)
    described = dict(dataclasses.asdict(protocol), clip_frames=protocol.clip_length)
    return FVDReport(fvd, sets[0], sets[1], detector.info, described)


def _fingerprint(listing: VideoListConfig, protocol: FVDProtocol, detector_sha256: str) -> str:
    """What decides a set's features: its files (path, size, modification time), the protocol, the detector."""
    if listing.resolved_source() == "shards":
        files = [Path(u) for u in expand_urls(listing.dir)]
    else:
        tasks = [t for t in list_videos(listing) if not isinstance(t, ListingFailure)]
        files = [Path(listing.dir), *(Path(t.source) for t in tasks if isinstance(t.source, (str, os.PathLike)))]
    stamps = []
    for f in files:
        st = f.stat() if f.is_file() else None
        stamps.append([str(f.resolve()), st.st_size, st.st_mtime_ns] if st else [str(f), None, None])
    what = {"format": CACHE_FORMAT, "protocol": dataclasses.asdict(protocol), "detector": detector_sha256,
            "limit": listing.limit, "files": stamps}  # fmt: skip
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def _write_cache(path: Path, features: SetFeatures, key: str) -> None:
    import io

    buffer = io.BytesIO()
    info = json.dumps({"format": CACHE_FORMAT, "key": key, **features.summary()})
    s = features.stats
    np.savez(buffer, count=np.array(s.count), sum=s.sum, sum_outer=s.sum_outer, info=np.array(info))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, buffer.getvalue())


def _read_cache(path: Path, source: str) -> Optional[SetFeatures]:
    """A cached set's features, or None when the file is not one (then it is computed again and replaced)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            info = json.loads(str(data["info"]))
            stats = FeatureStats()
            stats.count, stats.sum, stats.sum_outer = int(data["count"]), data["sum"], data["sum_outer"]
    except (OSError, ValueError, KeyError):
        return None
    if info.get("format") != CACHE_FORMAT:
        return None
    return SetFeatures(source, stats, info["videos"], info["clips"], info["failed"], True, str(path))
