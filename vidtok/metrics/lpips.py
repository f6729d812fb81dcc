"""LPIPS (Zhang et al. 2018, VGG16 trunk, v0.1 linear heads): the one network behind the perceptual loss and metric.

The network is the ``lpips`` package's own ``lpips.LPIPS(net="vgg")``, the authors' reference code, with the linear
heads that package ships. The original VidTok's loss and evaluation use the same computation (taming-transformers'
copy of it: same layers, scaling, normalisation and order of sums, and the same ``vgg.pth`` heads, MD5
d507d7349b931f0638a25a48a722f98a), so the values are bit-identical to the original's (checked against a checkout by
``tests/test_losses.py`` with ``VIDTOK_ORIGINAL``). The VGG16 ImageNet backbone is read from the file that
[`vidtok.io.auxiliary_weights.resolve_weights`][] finds (a path, ``$VIDTOK_VGG16``, torch hub's cache, or a
download), instead of torchvision's own download, so an offline machine gets an error saying where to put it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Optional, Union

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from vidtok.io.auxiliary_weights import VGG16, resolve_weights
from vidtok.metrics.frame import check_videos, to_frames

#: torchvision ``vgg16().features`` indices that go into each of LPIPS' five slices (up to relu1_2 ... relu5_3).
VGG_SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))


def heads_path() -> Path:
    """The LPIPS v0.1 VGG linear heads that the ``lpips`` package ships (``lpips/weights/v0.1/vgg.pth``)."""
    import lpips

    return Path(lpips.__file__).parent / "weights" / "v0.1" / "vgg.pth"


def _reference_network() -> nn.Module:
    """``lpips.LPIPS(net="vgg")`` with uninitialised weights: built on the meta device, so torchvision's 120M-parameter
    VGG classifier, which LPIPS discards, is never allocated or initialised; every tensor is then loaded."""
    import lpips

    with torch.device("meta"), warnings.catch_warnings():
        # lpips 0.1.4 passes torchvision's deprecated ``pretrained=`` flag; the warning is not ours to act on
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
        net = lpips.LPIPS(net="vgg", version="0.1", pretrained=False, pnet_rand=True, verbose=False)
    net = net.to_empty(device="cpu")
    net.scaling_layer = lpips.ScalingLayer()  # its constants are buffers made in __init__: rebuilt for real
    return net


def _vgg_state(path: Union[str, os.PathLike]) -> dict[str, Tensor]:
    """A torchvision VGG16 state dict file renamed for LPIPS' trunk (``features.N.*`` -> ``sliceK.N.*``)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    mapped = {}
    for k, (lo, hi) in enumerate(VGG_SLICES, start=1):
        for i in range(lo, hi):
            for p in ("weight", "bias"):
                if f"features.{i}.{p}" in state:
                    mapped[f"slice{k}.{i}.{p}"] = state[f"features.{i}.{p}"]
    if not mapped or "features.28.bias" not in state:
        raise ValueError(
            f"{path}: expected a torchvision vgg16 state dict (features.0.weight ... features.28.bias); "
            f"found keys like {sorted(state)[:4]}"
        )
    return mapped


def _random_vgg_state(net: nn.Module) -> dict[str, Tensor]:
    """torchvision's initialisation of the VGG16 convolutions (Kaiming normal, fan out; zero biases)."""
    state = {}
    for name, value in net.state_dict().items():
        fresh = torch.empty_like(value)
        if name.endswith("weight"):
            nn.init.kaiming_normal_(fresh, mode="fan_out", nonlinearity="relu")
        else:
            nn.init.zeros_(fresh)
        state[name] = fresh
    return state


class LPIPS(nn.Module):
    """VGG16 LPIPS distance, frozen: ``forward(input, target)`` on (N, 3, H, W) images in [-1, 1] -> (N, 1, 1, 1)
    (differentiable in the inputs: the training loss), [`per_frame`][] on videos -> (B, T) (the metric).

    Always in eval mode and its parameters never require grad. ``pretrained=False`` gives a randomly initialised
    backbone (tests); the heads are always the package's. ``frames_per_pass`` bounds how many images go through VGG
    at once in ``forward``, and ``checkpoint=True`` recomputes each pass in backward instead of storing activations.
    """

    def __init__(
        self,
        pretrained: bool = True,
        vgg_path: Optional[Union[str, os.PathLike]] = None,
        frames_per_pass: Optional[int] = None,
        checkpoint: bool = False,
    ) -> None:
        super().__init__()
        if frames_per_pass is not None and frames_per_pass < 1:
            raise ValueError(f"frames_per_pass must be a positive integer or None, got {frames_per_pass}")
        self.frames_per_pass = frames_per_pass
        self.checkpoint = checkpoint
        self.net = _reference_network()
        trunk = _vgg_state(resolve_weights(VGG16, vgg_path)) if pretrained else _random_vgg_state(self.net.net)
        self.net.net.load_state_dict(trunk, strict=True)
        heads = torch.load(heads_path(), map_location="cpu", weights_only=True)
        self.net.lins.load_state_dict({k.removeprefix("lin"): v for k, v in heads.items()}, strict=True)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> LPIPS:
        """Stays in eval mode whatever ``mode`` says (a fixed metric, not a trained part)."""
        return super().train(False)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Distance per image pair, (N, 1, 1, 1)."""
        if input.ndim != 4 or input.shape[1] != 3 or input.shape != target.shape:
            raise ValueError(
                f"LPIPS expects two (N, 3, H, W) images of equal shape, got {tuple(input.shape)} "
                f"and {tuple(target.shape)}"
            )
        n = input.shape[0]
        step = n if self.frames_per_pass is None else self.frames_per_pass
        recompute = self.checkpoint and torch.is_grad_enabled() and (input.requires_grad or target.requires_grad)
        parts = []
        for s in range(0, n, step):
            x, y = input[s : s + step], target[s : s + step]
            parts.append(checkpoint(self.net, x, y, use_reentrant=False) if recompute else self.net(x, y))
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    @torch.no_grad()
    def per_frame(self, real: Tensor, fake: Tensor, frames_per_pass: int = 16) -> Tensor:
        """LPIPS of every frame of two (B, 3, T, H, W) videos in [-1, 1] (clamped), (B, T) float32 on this module's
        device. Each clip's frames go through the network ``frames_per_pass`` at a time, never mixed with other
        clips' frames, so a clip's values do not depend on the batch it came in."""
        check_videos(real, fake)
        if frames_per_pass < 1:
            raise ValueError(f"frames_per_pass must be >= 1, found {frames_per_pass}")
        b, _, t, _, _ = real.shape
        device = next(self.parameters()).device
        out = []
        for i in range(b):
            x = to_frames(real[i : i + 1].to(device=device, dtype=torch.float32).clamp(-1, 1))
            y = to_frames(fake[i : i + 1].to(device=device, dtype=torch.float32).clamp(-1, 1))
            n = frames_per_pass
            out += [self.net(xs, ys).flatten() for xs, ys in zip(x.split(n), y.split(n), strict=True)]
        return torch.cat(out).view(b, t)
