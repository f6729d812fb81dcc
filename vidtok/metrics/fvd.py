"""Fréchet Video Distance from I3D features.

Detector: the TorchScript port of the Kinetics-400 I3D used by the TensorFlow FVD reference (``i3d_torchscript.pt``
from StyleGAN-V, also used by most public FVD code). Its forward is
``detector(videos, rescale: bool, resize: bool, return_features: bool) -> (N, 400)``. We follow the common FVD
code's convention (``rescale=False, resize=False, return_features=True``): the detector gets float videos
(N, 3, T, 224, 224) already in [-1, 1] and returns the 400 pre-softmax logits as features. Preprocessing
([`preprocess_for_i3d`][]): the first ``num_frames`` (16) frames of each clip, each frame resized so its shorter side
is 224 (bilinear, ``align_corners=False``, no antialiasing) and center-cropped to 224x224. For square frames this is
the same as StyleGAN-V's in-model ``resize=True`` path (trilinear to (T, 224, 224)).

Statistics are running float64 sums (count, sum, sum of outer products) that merge exactly across processes; the
distance uses the unbiased covariance and a symmetric-eigendecomposition square root, which is exact for the
rank-deficient covariances that few clips give.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from vidtok.errors import WeightsError
from vidtok.io.auxiliary_weights import PretrainedFile, resolve_weights

I3D_RESOLUTION = 224
I3D_FRAMES = 16
I3D_KWARGS = {"rescale": False, "resize": False, "return_features": True}
# SHA-256 of StyleGAN-V's i3d_torchscript.pt as published by several independent FVD codebases (not re-hashed here:
# this machine is offline). A file that does not match is refused; pass detector_sha256=None to skip the check.
I3D_SHA256 = "bec6519f66ea534e953026b4ae2c65553c17bf105611c746d904657e5860a5e2"

I3D = PretrainedFile(
    filename="i3d_torchscript.pt",
    url="https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1",
    env_var="VIDTOK_I3D",
    sha256=I3D_SHA256,
    what="I3D TorchScript detector (StyleGAN-V i3d_torchscript.pt) for FVD",
)

ArrayLike = Union[np.ndarray, Tensor]


def _as_float64(a: ArrayLike) -> np.ndarray:
    if isinstance(a, Tensor):
        a = a.detach().cpu().to(torch.float64).numpy()
    return np.asarray(a, dtype=np.float64)


def _psd_eigvals_clean(w: np.ndarray) -> np.ndarray:
    # Eigenvalues of a PSD matrix that are zero come out as +-1e-16 * max; their square roots (1e-8) would swamp the
    # result for rank-deficient covariances, so round everything below eigh's error bound (as matrix_rank does) to 0.
    tol = float(np.abs(w).max(initial=0.0)) * w.shape[0] * np.finfo(np.float64).eps
    return np.where(w > tol, w, 0.0)


def _psd_sqrt(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(_psd_eigvals_clean(w))) @ v.T


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    ``|mu1 - mu2|^2 + tr(s1) + tr(s2) - 2 tr((s1 s2)^(1/2))`` with ``tr((s1 s2)^(1/2))`` taken as the sum of square
    roots of the eigenvalues of the symmetric PSD matrix ``s1^(1/2) s2 s1^(1/2)`` (same spectrum as ``s1 s2``).
    """
    m1, m2, s1, s2 = (_as_float64(a) for a in (mu1, mu2, sigma1, sigma2))
    if m1.ndim != 1:
        raise ValueError(f"mu1: expected a mean vector (D,), found shape {m1.shape}")
    d = m1.shape[0]
    if m2.shape != (d,):
        raise ValueError(f"mu2: expected shape ({d},) like mu1, found {m2.shape}")
    for name, s in (("sigma1", s1), ("sigma2", s2)):
        if s.shape != (d, d):
            raise ValueError(f"{name}: expected shape ({d}, {d}) for {d}-dim means, found {s.shape}")
    root1 = _psd_sqrt(s1)
    middle = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_covmean = float(np.sqrt(_psd_eigvals_clean(eig)).sum())
    diff = m1 - m2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


class FeatureStats:
    """Running float64 count, sum and sum of outer products of feature vectors; ``merge`` adds another's sums."""

    def __init__(self) -> None:
        self.count = 0
        self.sum: Optional[np.ndarray] = None
        self.sum_outer: Optional[np.ndarray] = None

    @property
    def dim(self) -> Optional[int]:
        return None if self.sum is None else int(self.sum.shape[0])

    def _check_dim(self, d: int) -> None:
        if self.dim is not None and d != self.dim:
            raise ValueError(f"feature dimension changed: these statistics hold {self.dim}-dim features, found {d}")

    @torch.no_grad()
    def update(self, features: ArrayLike) -> None:
        """Add features shaped (N, D)."""
        if features.ndim != 2:
            raise ValueError(f"features: expected shape (N, D), found {tuple(features.shape)}")
        if isinstance(features, Tensor):
            f = features.detach().to(torch.float64)
        else:
            f = torch.from_numpy(_as_float64(features))
        self._check_dim(f.shape[1])
        s, so = f.sum(0).cpu().numpy(), (f.T @ f).cpu().numpy()
        self.count += f.shape[0]
        self.sum = s if self.sum is None else self.sum + s
        self.sum_outer = so if self.sum_outer is None else self.sum_outer + so

    def merge(self, other: FeatureStats) -> FeatureStats:
        """Add ``other``'s sums into these (in place) and return self."""
        if other.count == 0:
            return self
        self._check_dim(other.dim)
        self.count += other.count
        self.sum = other.sum.copy() if self.sum is None else self.sum + other.sum
        self.sum_outer = other.sum_outer.copy() if self.sum_outer is None else self.sum_outer + other.sum_outer
        return self

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean (D,) and unbiased covariance (D, D); needs at least 2 features."""
        if self.count < 2:
            raise ValueError(f"a covariance needs at least 2 feature vectors, found {self.count}")
        mu = self.sum / self.count
        cov = (self.sum_outer - self.count * np.outer(mu, mu)) / (self.count - 1)
        return mu, cov


def fvd_from_stats(real: FeatureStats, fake: FeatureStats) -> float:
    """Fréchet distance between the Gaussians fitted to two sets of features (NaN with fewer than 2 of either)."""
    if min(real.count, fake.count) < 2:
        return math.nan
    return frechet_distance(*real.mean_cov(), *fake.mean_cov())


def load_i3d_detector(
    path: Optional[str | os.PathLike] = None,
    device: Union[str, torch.device] = "cpu",
    sha256: Optional[str] = I3D_SHA256,
) -> torch.jit.ScriptModule:
    """The TorchScript I3D detector, from ``path``, ``$VIDTOK_I3D``, the torch hub cache, or a download.

    ``sha256``: the expected SHA-256 of the file (default: StyleGAN-V's ``i3d_torchscript.pt``); None skips the
    check. Raises [`WeightsError`][vidtok.io.auxiliary_weights.WeightsError] saying where to put the file when it is
    missing or wrong.
    """
    spec = dataclasses.replace(I3D, sha256=sha256)
    file = resolve_weights(spec, path)
    try:
        with warnings.catch_warnings():
            # torch >= 2.10 deprecates TorchScript; the reference I3D exists only in that format.
            warnings.simplefilter("ignore", FutureWarning)
            detector = torch.jit.load(str(file), map_location=device)
    except Exception as exc:  # RuntimeError / pickle errors: not a TorchScript archive
        raise WeightsError(
            f"{I3D.what}: {file} is not a loadable TorchScript file ({exc}); expected {I3D.filename} from {I3D.url}"
        ) from exc
    detector.eval()
    for p in detector.parameters():
        p.requires_grad_(False)
    return detector


@torch.no_grad()
def preprocess_for_i3d(video: Tensor, num_frames: int = I3D_FRAMES) -> Tensor:
    """(B, 3, T, H, W) in [-1, 1] -> (B, 3, num_frames, 224, 224) float32 in [-1, 1], as the detector expects."""
    if video.dim() != 5 or video.shape[1] != 3:
        raise ValueError(f"expected videos shaped (B, 3, T, H, W), found {tuple(video.shape)}")
    b, c, t, h, w = video.shape
    if t < num_frames:
        raise ValueError(f"FVD takes the first {num_frames} frames of each clip; found clips of {t} frames")
    x = video[:, :, :num_frames].to(torch.float32).clamp(-1, 1)
    x = rearrange(x, "b c t h w -> (b t) c h w")
    scale = I3D_RESOLUTION / min(h, w)
    size = (I3D_RESOLUTION, math.ceil(w * scale)) if h <= w else (math.ceil(h * scale), I3D_RESOLUTION)
    if size != (h, w):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    top, left = (size[0] - I3D_RESOLUTION) // 2, (size[1] - I3D_RESOLUTION) // 2
    x = x[:, :, top : top + I3D_RESOLUTION, left : left + I3D_RESOLUTION]
    return rearrange(x, "(b t) c h w -> b c t h w", b=b).contiguous()


@torch.no_grad()
def i3d_features(
    detector: torch.nn.Module, video: Tensor, num_frames: int = I3D_FRAMES, clips_per_batch: int = 1
) -> Tensor:
    """Detector features (B, D) of videos (B, 3, T, H, W) in [-1, 1], ``clips_per_batch`` clips per detector call.

    The default of one clip per call makes a clip's features independent of how clips were batched (float32
    convolutions round differently for other batch shapes), so FVD does not change with batch size or process count.
    """
    out = []
    for chunk in video.split(clips_per_batch):
        feats = detector(preprocess_for_i3d(chunk, num_frames), **I3D_KWARGS)
        if not isinstance(feats, Tensor) or feats.dim() != 2 or feats.shape[0] != chunk.shape[0]:
            found = tuple(feats.shape) if isinstance(feats, Tensor) else type(feats).__name__
            raise ValueError(f"detector: expected features shaped ({chunk.shape[0]}, D), found {found}")
        out.append(feats)
    return torch.cat(out)
