"""Video reconstruction metrics: per-frame PSNR / SSIM / LPIPS, FVD, and a distributed-aware accumulator.

The names below load their module on first use: torchmetrics, lpips and torchvision take seconds to import, and
a command that only needs the PSNR rule (``vidtok reconstruct``) should not wait for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vidtok.metrics.frame import PSNR_MAX_DB, psnr, psnr_from_mse, psnr_per_frame, ssim_per_frame
    from vidtok.metrics.fvd import (
        I3D,
        I3D_FRAMES,
        I3D_KWARGS,
        I3D_RESOLUTION,
        I3D_SHA256,
        FeatureStats,
        frechet_distance,
        fvd_from_stats,
        i3d_features,
        load_i3d_detector,
        preprocess_for_i3d,
    )
    from vidtok.metrics.lpips import LPIPS
    from vidtok.metrics.video import FrameScorer, VideoMetrics


_MODULES = {
    "frame": ("PSNR_MAX_DB", "psnr", "psnr_from_mse", "psnr_per_frame", "ssim_per_frame"),
    "fvd": (
        "I3D",
        "I3D_FRAMES",
        "I3D_KWARGS",
        "I3D_RESOLUTION",
        "I3D_SHA256",
        "FeatureStats",
        "frechet_distance",
        "fvd_from_stats",
        "i3d_features",
        "load_i3d_detector",
        "preprocess_for_i3d",
    ),
    "lpips": ("LPIPS",),
    "video": ("FrameScorer", "VideoMetrics"),
}
_HOME = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)


__all__ = [
    "I3D",
    "I3D_FRAMES",
    "I3D_KWARGS",
    "I3D_RESOLUTION",
    "I3D_SHA256",
    "PSNR_MAX_DB",
    "FeatureStats",
    "FrameScorer",
    "LPIPS",
    "VideoMetrics",
    "frechet_distance",
    "fvd_from_stats",
    "i3d_features",
    "load_i3d_detector",
    "preprocess_for_i3d",
    "psnr",
    "psnr_from_mse",
    "psnr_per_frame",
    "ssim_per_frame",
]
