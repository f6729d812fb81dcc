"""Accumulating reconstruction metrics over clips, across processes when torch.distributed is initialised."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any, Optional, Union

import torch
from torch import Tensor

from vidtok.distributed import gather_objects
from vidtok.metrics.frame import check_videos, psnr_per_frame, ssim_per_frame
from vidtok.metrics.fvd import I3D_FRAMES, I3D_SHA256, FeatureStats, fvd_from_stats, i3d_features, load_i3d_detector
from vidtok.metrics.lpips import LPIPS


def exact_mean(values: Sequence[float]) -> float:
    # fsum is exactly rounded, so the result does not depend on the order clips were gathered in.
    return math.fsum(values) / len(values) if values else math.nan


class FrameScorer:
    """Per-frame PSNR / SSIM / LPIPS of pairs of clips, and I3D features of clips for FVD.

    Everything is computed in float32 on ``device`` whatever precision the model ran in, one clip at a time where
    batching could change the rounding, so a clip's numbers do not depend on the clips it was batched with.
    ``ssim_downsample`` average-pools large frames first as the original evaluation does (see
    [`ssim_per_frame`][vidtok.metrics.ssim_per_frame]). ``lpips`` is True (build the network), False, or an existing
    [`LPIPS`][vidtok.metrics.LPIPS] (a training run passes its loss's, so one network serves both); ``fvd`` likewise
    True (load the I3D detector), False, or a detector already loaded and checked.
    """

    def __init__(
        self,
        lpips: Union[bool, LPIPS] = True,
        vgg_path: Optional[Union[str, os.PathLike]] = None,
        fvd: Union[bool, torch.nn.Module] = False,
        detector_path: Optional[Union[str, os.PathLike]] = None,
        device: Union[str, torch.device] = "cpu",
        detector_sha256: Optional[str] = I3D_SHA256,
        fvd_frames: int = I3D_FRAMES,
        lpips_frames_per_batch: int = 16,
        ssim_downsample: bool = False,
    ) -> None:
        self.device = torch.device(device)
        if isinstance(lpips, LPIPS):
            self.lpips: Optional[LPIPS] = lpips.to(self.device)
        else:
            self.lpips = LPIPS(vgg_path=vgg_path).to(self.device) if lpips else None
        self.lpips_frames_per_batch = lpips_frames_per_batch
        if isinstance(fvd, torch.nn.Module):
            self.detector: Optional[torch.nn.Module] = fvd
        else:
            self.detector = load_i3d_detector(detector_path, self.device, detector_sha256) if fvd else None
        self.fvd_frames = fvd_frames
        self.ssim_downsample = ssim_downsample

    @property
    def metric_names(self) -> tuple[str, ...]:
        return ("psnr", "ssim", "lpips") if self.lpips is not None else ("psnr", "ssim")

    @torch.no_grad()
    def score(self, real: Tensor, fake: Tensor) -> dict[str, Tensor]:
        """``{"psnr", "ssim", ["lpips"]}`` per frame, each (B, T) float32 on the CPU; inputs (B, 3, T, H, W)."""
        check_videos(real, fake)
        with torch.autocast(self.device.type, enabled=False):
            real = real.detach().to(self.device, torch.float32)
            fake = fake.detach().to(self.device, torch.float32)
            out = {
                "psnr": psnr_per_frame(real, fake).cpu(),
                "ssim": ssim_per_frame(real, fake, downsample=self.ssim_downsample).cpu(),
            }
            if self.lpips is not None:
                out["lpips"] = self.lpips.per_frame(real, fake, self.lpips_frames_per_batch).cpu()
        return out

    @torch.no_grad()
    def features(self, video: Tensor) -> Tensor:
        """I3D features (B, D) float64 on the CPU of the first ``fvd_frames`` frames of each clip (B, 3, T, H, W)."""
        if self.detector is None:
            raise RuntimeError("this scorer was built without FVD (fvd=False)")
        with torch.autocast(self.device.type, enabled=False):
            video = video.detach().to(self.device, torch.float32)
            return i3d_features(self.detector, video, self.fvd_frames).to("cpu", torch.float64)


class VideoMetrics:
    """PSNR / SSIM / LPIPS per clip (means of per-frame values) and optionally FVD over all clips.

    ``update(real, fake, names)`` takes (B, 3, T, H, W) tensors in [-1, 1] and one id per clip. ``records`` holds
    this process's clips; ``compute()`` and ``all_records()`` gather every process's (collectives: call them on
    every rank). Summary means are over clips, each clip weighing the same whatever its length. FVD compares the
    I3D feature statistics of all real clips with those of all reconstructed clips (first ``fvd_frames`` frames).
    """

    def __init__(self, **scorer_options: Any) -> None:
        """``scorer_options``: those of [`FrameScorer`][] (``lpips``, ``vgg_path``, ``fvd``, ``detector_path``,
        ``device``, ...)."""
        self.scorer = FrameScorer(**scorer_options)
        self.records: list[dict[str, Any]] = []
        self.gathered_records: list[dict[str, Any]] = []
        self.real_stats = FeatureStats()
        self.fake_stats = FeatureStats()

    def reset(self) -> None:
        """Forget every clip (this process's records and feature statistics)."""
        self.records = []
        self.gathered_records = []
        self.real_stats = FeatureStats()
        self.fake_stats = FeatureStats()

    @torch.no_grad()
    def update(self, real: Tensor, fake: Tensor, names: Sequence[str]) -> None:
        """Score a batch of clips: ``real`` and ``fake`` (B, 3, T, H, W) in [-1, 1], ``names`` one id per clip."""
        check_videos(real, fake)
        if isinstance(names, str) or len(names) != real.shape[0]:
            found = repr(names) if isinstance(names, str) else f"{len(names)} names"
            raise ValueError(f"names: expected a list of {real.shape[0]} clip ids (one per clip), found {found}")
        scores = self.scorer.score(real, fake)
        psnr, ssim, lpips = scores["psnr"], scores["ssim"], scores.get("lpips")
        if self.scorer.detector is not None:
            self.real_stats.update(self.scorer.features(real))
            self.fake_stats.update(self.scorer.features(fake))
        for i, name in enumerate(names):
            rec: dict[str, Any] = {
                "name": str(name),
                "frames": int(real.shape[2]),
                "psnr": exact_mean(psnr[i].tolist()),
                "ssim": exact_mean(ssim[i].tolist()),
                "lpips": exact_mean(lpips[i].tolist()) if lpips is not None else None,
                "psnr_per_frame": psnr[i].tolist(),
                "ssim_per_frame": ssim[i].tolist(),
                "lpips_per_frame": lpips[i].tolist() if lpips is not None else None,
            }
            self.records.append(rec)

    def all_records(self) -> list[dict[str, Any]]:
        """Every process's records, rank 0's first (collective under torch.distributed)."""
        return [r for part in gather_objects(self.records) for r in part]

    def compute(self) -> dict[str, float]:
        """Summary over all processes' clips: ``psnr``, ``ssim``, ``lpips`` (if enabled), ``clips``, ``fvd`` (if
        enabled; NaN with fewer than 2 clips). Identical on every rank; also sets ``gathered_records``."""
        parts = gather_objects((self.records, self.real_stats, self.fake_stats))
        self.gathered_records = [r for recs, _, _ in parts for r in recs]
        recs = self.gathered_records
        summary: dict[str, float] = {
            "psnr": exact_mean([r["psnr"] for r in recs]),
            "ssim": exact_mean([r["ssim"] for r in recs]),
        }
        if self.scorer.lpips is not None:
            summary["lpips"] = exact_mean([r["lpips"] for r in recs])
        summary["clips"] = len(recs)
        if self.scorer.detector is not None:
            real, fake = FeatureStats(), FeatureStats()
            for _, r, f in parts:
                real.merge(r)
                fake.merge(f)
            summary["fvd"] = fvd_from_stats(real, fake)
        return summary
