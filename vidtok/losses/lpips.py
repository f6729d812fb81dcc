"""LPIPS (VGG16, v0.1 linear heads): the perceptual term of the reconstruction loss.

The metric of Zhang et al. (2018): both images are shifted and scaled per channel, passed through the
VGG16 convolutional stack, and at relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3 the features are
normalised to unit length over channels, their squared difference is weighted per channel by a
learned 1x1 convolution, averaged over space and summed over the five layers.

Backbone weights come from torchvision's ImageNet VGG16 file (found by :func:`vidtok.weights.resolve_weights`);
the linear heads are the standard LPIPS v0.1 ``vgg.pth``, which torchmetrics ships inside its package.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn as nn
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ..weights import VGG16, resolve_weights

#: Channels at the five feature taps (relu1_2 .. relu5_3).
CHANNELS = (64, 128, 256, 512, 512)
#: Index in ``torchvision.models.vgg16().features`` of the ReLU that ends each tapped block.
TAPS = (3, 8, 15, 22, 29)
#: Input normalisation of the LPIPS ScalingLayer, for inputs in [-1, 1].
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


def default_heads_path() -> Path:
    """The LPIPS v0.1 VGG linear-head weights bundled with torchmetrics (located without importing it)."""
    spec = importlib.util.find_spec("torchmetrics")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "LPIPS linear heads: torchmetrics (which ships lpips_models/vgg.pth) is not installed; "
            "install it or pass heads_path"
        )
    return Path(spec.origin).parent / "functional" / "image" / "lpips_models" / "vgg.pth"


def _vgg16_features() -> nn.Sequential:
    """torchvision's ``vgg16().features`` up to relu5_3 (same indices, so its state-dict keys load), with
    torchvision's initialisation, built without the 120M-parameter classifier."""
    layers: list[nn.Module] = []
    c_in = 3
    for block, (c_out, convs) in enumerate(zip(CHANNELS, (2, 2, 3, 3, 3), strict=True)):
        if block:
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        for _ in range(convs):
            conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            layers += [conv, nn.ReLU(inplace=True)]
            c_in = c_out
    return nn.Sequential(*layers)


def _unit_normalize(x: Tensor, eps: float = 1e-10) -> Tensor:
    return x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class LPIPS(nn.Module):
    """VGG16 LPIPS distance: (N, 3, H, W) pairs in [-1, 1] -> (N, 1, 1, 1).

    Frozen: always in eval mode and its parameters never require grad (gradients still flow to the
    inputs). ``pretrained=False`` keeps torchvision's random backbone initialisation (tests);
    the heads are always loaded. ``frames_per_pass`` bounds how many images go through VGG at once,
    and ``checkpoint=True`` recomputes each pass in backward instead of storing its activations.
    """

    def __init__(
        self,
        pretrained: bool = True,
        vgg_path: Optional[Union[str, os.PathLike]] = None,
        heads_path: Optional[Union[str, os.PathLike]] = None,
        frames_per_pass: Optional[int] = None,
        checkpoint: bool = False,
    ):
        super().__init__()
        if frames_per_pass is not None and frames_per_pass < 1:
            raise ValueError(f"frames_per_pass must be a positive integer or None, got {frames_per_pass}")
        self.frames_per_pass = frames_per_pass
        self.checkpoint = checkpoint
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.features = _vgg16_features()
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in CHANNELS)
        if pretrained:
            self.load_backbone(resolve_weights(VGG16, vgg_path))
        self.load_heads(default_heads_path() if heads_path is None else heads_path)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> LPIPS:
        """Stays in eval mode whatever ``mode`` says (a fixed metric, not a trained part)."""
        return super().train(False)

    def load_backbone(self, path: Union[str, os.PathLike]) -> None:
        """Load the convolutions from a torchvision VGG16 state dict file (``features.<i>.*`` keys)."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        wanted = {f"features.{k}" for k in self.features.state_dict()}
        missing = sorted(wanted - set(state))
        if missing:
            raise ValueError(f"{path} is not a torchvision VGG16 state dict: it lacks {missing[:4]}")
        self.features.load_state_dict({k[len("features.") :]: state[k] for k in wanted})

    def load_heads(self, path: Union[str, os.PathLike]) -> None:
        """Load the five 1x1 heads from an LPIPS ``vgg.pth`` (``lin<k>.model.1.weight`` keys)."""
        if not Path(path).is_file():
            raise FileNotFoundError(f"LPIPS linear-head weights (vgg.pth) not found at {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        keys = [f"lin{k}.model.1.weight" for k in range(len(CHANNELS))]
        missing = [k for k in keys if k not in state]
        if missing:
            raise ValueError(f"{path} is not an LPIPS VGG head file: expected keys {keys}, missing {missing}")
        with torch.no_grad():
            for head, key in zip(self.heads, keys, strict=True):
                if state[key].shape != head.weight.shape:
                    raise ValueError(
                        f"{path}: {key} has shape {tuple(state[key].shape)}, expected {tuple(head.weight.shape)}"
                    )
                head.weight.copy_(state[key])

    def _taps(self, x: Tensor) -> list[Tensor]:
        out = []
        h = (x - self.shift) / self.scale
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in TAPS:
                out.append(h)
        return out

    def _distance(self, x: Tensor, y: Tensor) -> Tensor:
        total = None
        for head, fx, fy in zip(self.heads, self._taps(x), self._taps(y), strict=True):
            d = head((_unit_normalize(fx) - _unit_normalize(fy)).pow(2)).mean(dim=(2, 3), keepdim=True)
            total = d if total is None else total + d
        return total

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
            parts.append(checkpoint(self._distance, x, y, use_reentrant=False) if recompute else self._distance(x, y))
        return parts[0] if len(parts) == 1 else torch.cat(parts)
