"""Finding pretrained auxiliary weights (VGG16 for LPIPS, I3D for FVD) that are downloaded on first use.

Lookup order: an explicit path, then an environment variable, then torch hub's cache
(``$TORCH_HOME/hub/checkpoints/<file name>``), then a download into that cache. Offline machines
put the file in one of the first three places; the error says where and which URL to fetch it from.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ..errors import WeightsError


@dataclass(frozen=True)
class PretrainedFile:
    """A downloadable weight file: where it comes from, and optionally its SHA-256 to verify."""

    filename: str
    url: str
    env_var: str
    sha256: Optional[str] = None
    what: str = "weights"


VGG16 = PretrainedFile(
    filename="vgg16-397923af.pth",
    url="https://download.pytorch.org/models/vgg16-397923af.pth",
    env_var="VIDTOK_VGG16",
    what="VGG16 ImageNet weights (torchvision) for LPIPS",
)


def hub_cache_dir() -> Path:
    """Torch hub's checkpoint cache (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified(path: Path, spec: PretrainedFile) -> Path:
    if spec.sha256 is not None:
        found = sha256_of(path)
        if found != spec.sha256:
            raise WeightsError(
                f"{spec.what}: {path} has SHA-256 {found}, expected {spec.sha256} (corrupt or a different file); "
                f"delete it and fetch {spec.url}"
            )
    return path


def resolve_weights(spec: PretrainedFile, path: Optional[str | os.PathLike] = None, download: bool = True) -> Path:
    """The local file for ``spec``: ``path`` if given, else ``$<env_var>``, else the hub cache, else
    downloaded there (when ``download``). Raises [`WeightsError`][] saying where to put the file."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise WeightsError(f"{spec.what}: no file at {p}")
        return _verified(p, spec)
    env = os.environ.get(spec.env_var)
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise WeightsError(f"{spec.what}: ${spec.env_var} points to {p}, which is not a file")
        return _verified(p, spec)
    cached = hub_cache_dir() / spec.filename
    if cached.is_file():
        return _verified(cached, spec)
    if download:
        cached.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(spec.url, str(cached), progress=False)
        except Exception as exc:  # URLError, HTTPError, timeouts: all mean "not here"
            cached.unlink(missing_ok=True)
            raise WeightsError(
                f"{spec.what} are not on this machine and could not be downloaded from {spec.url} ({exc}). "
                f"Fetch that file elsewhere and put it at {cached}, or point ${spec.env_var} (or the config's "
                "path option) to it"
            ) from exc
        return _verified(cached, spec)
    raise WeightsError(
        f"{spec.what} not found: pass a path, set ${spec.env_var}, or put {spec.filename} in {hub_cache_dir()}"
    )
