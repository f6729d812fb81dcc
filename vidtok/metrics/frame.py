"""Per-frame reconstruction metrics (PSNR, SSIM, LPIPS) for videos shaped (B, 3, T, H, W) in [-1, 1].

Conventions (those of the original VidTok evaluation, computed with torchmetrics):

* Both videos are clamped to [-1, 1] (decoders overshoot) and every metric is computed frame by frame.
* PSNR and SSIM see [0, 1] data with ``data_range=1``; SSIM is not shift-invariant, so the mapping matters.
* PSNR is ``10 log10(1 / MSE)`` per frame over all channels and pixels, capped at [`PSNR_MAX_DB`][] (80 dB, the
  ceiling that the original's ``-10 log10(MSE + 1e-8)`` has) so that a perfect frame does not make a mean infinite.
* SSIM uses an 11-tap Gaussian window with sigma 1.5, K1=0.01, K2=0.03, averaged over channels and over the *valid*
  region: torchmetrics' SSIM map (which reflect-pads by 5 px) with those 5 px borders cropped, i.e. only windows that
  lie fully inside the frame, as in the original VidTok code, Wang et al.'s reference and scikit-image.
  ``border="reflect"`` gives torchmetrics' own number instead (mean over the padded full-size map).
* LPIPS ([`vidtok.metrics.lpips`][]) is the ``lpips`` package's VGG16 network on [-1, 1] inputs.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

PSNR_MAX_DB = 80.0
SSIM_KERNEL = 11
SSIM_SIGMA = 1.5
_SSIM_PAD = (SSIM_KERNEL - 1) // 2
# Frames per SSIM call: torchmetrics holds 5 padded copies of the batch at once.
_SSIM_FRAMES = 32


def check_videos(real: Tensor, fake: Tensor) -> None:
    """Raise ``ValueError`` unless ``real`` and ``fake`` are same-shaped (B, 3, T, H, W) tensors."""
    for name, v in (("real", real), ("fake", fake)):
        if not isinstance(v, Tensor):
            raise ValueError(f"{name}: expected a torch.Tensor (B, 3, T, H, W), found {type(v).__name__}")
        if v.dim() != 5 or v.shape[1] != 3:
            raise ValueError(f"{name}: expected shape (B, 3, T, H, W), found {tuple(v.shape)}")
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, found {tuple(real.shape)} and {tuple(fake.shape)}")


def to_frames(video: Tensor) -> Tensor:
    """(B, 3, T, H, W) -> (B*T, 3, H, W), frames of the first video first."""
    return rearrange(video, "b c t h w -> (b t) c h w")


def _unit_frames(video: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Clamp to [-1, 1], map to [0, 1], flatten to frames."""
    return to_frames(video.to(dtype).clamp(-1, 1).add(1).div(2))


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB for a mean squared error of [0, 1] data: ``10 log10(1 / MSE)``, capped at [`PSNR_MAX_DB`][]
    (so a perfect reconstruction gives 80 dB, not infinity). The one rule every PSNR in vidtok follows."""
    if mse < 0 or math.isnan(mse):
        raise ValueError(f"a mean squared error must be >= 0, found {mse}")
    return PSNR_MAX_DB if mse <= 10 ** (-PSNR_MAX_DB / 10) else min(PSNR_MAX_DB, -10 * math.log10(mse))


@torch.no_grad()
def psnr(real: Tensor, fake: Tensor) -> float:
    """One PSNR (dB) over every pixel of two same-shaped tensors in [-1, 1] (clamped), by [`psnr_from_mse`][]."""
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, found {tuple(real.shape)} and {tuple(fake.shape)}")
    mse = (real.double().clamp(-1, 1) - fake.double().clamp(-1, 1)).div(2).pow(2).mean().item()
    return psnr_from_mse(mse)


@torch.no_grad()
def psnr_per_frame(real: Tensor, fake: Tensor) -> Tensor:
    """PSNR in dB of every frame, shape (B, T); inputs (B, 3, T, H, W) in [-1, 1], measured on [0, 1] data."""
    check_videos(real, fake)
    b, _, t, _, _ = real.shape
    # float64: a frame's MSE can be ~1e-9 (near-perfect reconstructions), where float32 sums lose digits.
    x, y = _unit_frames(real, torch.float64), _unit_frames(fake, torch.float64)
    from torchmetrics.functional.image import peak_signal_noise_ratio  # slow to import: only where it is used

    psnr = peak_signal_noise_ratio(y, x, data_range=1.0, reduction="none", dim=(1, 2, 3))
    return psnr.clamp(max=PSNR_MAX_DB).to(torch.float32).view(b, t)


@torch.no_grad()
def ssim_per_frame(
    real: Tensor,
    fake: Tensor,
    border: Literal["valid", "reflect"] = "valid",
    downsample: bool = False,
) -> Tensor:
    """SSIM of every frame, shape (B, T); inputs (B, 3, T, H, W) in [-1, 1], measured on [0, 1] data.

    ``border``: ``"valid"`` averages the SSIM map over windows inside the frame (default, as the original);
    ``"reflect"`` is torchmetrics' default (reflect padding, full-size map). ``downsample`` first average-pools
    frames by ``max(1, round(min(H, W) / 256))`` like the original evaluation (a no-op below 384 px).
    """
    check_videos(real, fake)
    if border not in ("valid", "reflect"):
        raise ValueError(f"border must be 'valid' or 'reflect', found {border!r}")
    b, _, t, h, w = real.shape
    x, y = _unit_frames(real), _unit_frames(fake)
    if downsample:
        f = max(1, round(min(h, w) / 256))
        if f > 1:
            x, y = F.avg_pool2d(x, f), F.avg_pool2d(y, f)
    h, w = x.shape[-2:]
    if min(h, w) < SSIM_KERNEL:
        raise ValueError(f"SSIM needs frames of at least {SSIM_KERNEL}x{SSIM_KERNEL} pixels, found {h}x{w}")
    from torchmetrics.functional.image import structural_similarity_index_measure  # slow to import: only here

    out = []
    for xs, ys in zip(x.split(_SSIM_FRAMES), y.split(_SSIM_FRAMES), strict=True):
        kwargs = dict(gaussian_kernel=True, sigma=SSIM_SIGMA, kernel_size=SSIM_KERNEL, data_range=1.0)
        if border == "reflect":
            out.append(structural_similarity_index_measure(ys, xs, reduction="none", **kwargs))
        else:
            _, full = structural_similarity_index_measure(ys, xs, reduction="none", return_full_image=True, **kwargs)
            p = _SSIM_PAD
            out.append(full[..., p : h - p, p : w - p].mean(dim=(1, 2, 3)))
    return torch.cat(out).view(b, t)
