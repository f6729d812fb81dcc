"""Video reconstruction metrics: per-frame PSNR / SSIM / LPIPS, FVD, and a distributed-aware accumulator."""

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
