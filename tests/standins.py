"""Stand-ins for pretrained networks that cannot be downloaded here: a random VGG16 file in a temporary TORCH_HOME
(for LPIPS) and a tiny TorchScript module with the I3D detector's call signature (for FVD)."""

from __future__ import annotations

import hashlib
import math
import urllib.error
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from vidtok.io.auxiliary_weights import VGG16


def random_vgg16_file(path: Path, seed: int = 0) -> Path:
    """A torchvision-format VGG16 state dict with random convolutions (Kaiming-scaled). The classifier, which strict
    loaders need and LPIPS does not use, is stored as stride-0 views of one zero, so the file is 59 MB, not 528."""
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in torchvision.models.vgg16().state_dict().items()}
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for k, shape in shapes.items():
        if not k.startswith("features."):
            state[k] = torch.zeros(()).expand(shape)
        elif len(shape) == 4:
            state[k] = torch.randn(shape, generator=gen) * math.sqrt(2.0 / math.prod(shape[1:]))
        else:
            state[k] = torch.randn(shape, generator=gen) * 0.01
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def make_vgg_home(home: Path, seed: int = 0) -> Path:
    """A TORCH_HOME whose hub cache holds a random VGG16 under torchvision's file name (not hash-checked there)."""
    random_vgg16_file(home / "hub" / "checkpoints" / VGG16.filename, seed)
    return home


def use_torch_home(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # in case anything called torch.hub.set_dir
    for var in ("VIDTOK_VGG16", "VIDTOK_I3D"):
        monkeypatch.delenv(var, raising=False)


def go_offline(monkeypatch: pytest.MonkeyPatch, home: Path) -> Path:
    """An empty TORCH_HOME and no network: every download fails like it does on an offline machine."""
    use_torch_home(monkeypatch, home)

    def no_network(url: str, dst: str, *args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return home


class StandInI3D(nn.Module):
    """Same call signature as the I3D TorchScript detector; refuses input in any other convention than ours."""

    def __init__(self, frames: int, dim: int = 4) -> None:
        super().__init__()
        self.frames = frames
        gen = torch.Generator().manual_seed(1)
        self.weight = nn.Parameter(torch.randn(dim, 3 * 2 * 3 * 3, generator=gen))

    def forward(self, x: Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False) -> Tensor:
        if rescale or resize or not return_features:
            raise RuntimeError("expected rescale=False, resize=False, return_features=True")
        if x.dim() != 5 or x.shape[1] != 3 or x.shape[2] != self.frames or x.shape[3] != 224 or x.shape[4] != 224:
            raise RuntimeError("expected videos shaped (N, 3, frames, 224, 224)")
        if float(x.min()) < -1.0 or float(x.max()) > 1.0:
            raise RuntimeError("expected values in [-1, 1]")
        pooled = F.adaptive_avg_pool3d(x, [2, 3, 3]).flatten(1)
        return torch.tanh(pooled @ self.weight.t() * 4.0) * 5.0


def save_detector(path: Path, frames: int) -> str:
    """Script and save a stand-in detector; its SHA-256."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch >= 2.10 deprecates TorchScript; I3D ships as one
        torch.jit.script(StandInI3D(frames)).save(str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest()
