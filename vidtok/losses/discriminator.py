"""PatchGAN discriminators (pix2pix), 2-D per frame and 3-D per clip, laid out like the original's.

Both are a ``main`` ``nn.Sequential`` with the original's layer indices, so the ``loss.discriminator.*``
entries of an official training checkpoint load into them ([`load_discriminator_state_dict`][]).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn as nn
from torch import Tensor

from ..errors import CheckpointError
from ..io.weight_files import key_mismatches


def init_discriminator_weights(module: nn.Module) -> None:
    """The original's initialisation, for ``Module.apply``: conv weights ~ N(0, 0.02) (biases keep
    PyTorch's default), batch-norm scales ~ N(1, 0.02) and shifts 0."""
    if isinstance(module, (nn.Conv2d, nn.Conv3d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm3d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.constant_(module.bias, 0.0)


def _widths(channels: int, num_layers: int) -> list[int]:
    """Output channels of the stacked convs before the 1-channel head: ndf * min(2**n, 8)."""
    return [channels * min(2**n, 8) for n in range(num_layers + 1)]


def _patchgan(
    conv: type[nn.Module], norm: type[nn.Module], kernel: int, strides: list, in_channels: int, channels: int
) -> nn.Sequential:
    """First conv + LeakyReLU, one (conv, batch norm, LeakyReLU) per entry of ``strides`` (bias-free convs),
    then a 1-channel stride-1 head; the original's layer order, so state-dict keys are ``main.N.*``."""
    w = _widths(channels, len(strides))
    layers: list[nn.Module] = [conv(in_channels, w[0], kernel, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
    for n, stride in enumerate(strides, start=1):
        layers += [
            conv(w[n - 1], w[n], kernel, stride=stride, padding=1, bias=False),
            norm(w[n]),
            nn.LeakyReLU(0.2, True),
        ]
    layers.append(conv(w[-1], 1, kernel, stride=1, padding=1))
    return nn.Sequential(*layers)


class NLayerDiscriminator(nn.Module):
    """2-D PatchGAN: (N, C, H, W) -> patch logits (N, 1, h, w). 4x4 convs; ``num_layers`` stride-2 convs
    (batch norm after all but the first), a stride-1 conv, then a 1-channel stride-1 head."""

    def __init__(self, in_channels: int = 3, channels: int = 64, num_layers: int = 3):
        super().__init__()
        strides = [2 if n < num_layers else 1 for n in range(1, num_layers + 1)]
        self.main = _patchgan(nn.Conv2d, nn.BatchNorm2d, 4, strides, in_channels, channels)
        self.apply(init_discriminator_weights)

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x)


class NLayerDiscriminator3D(nn.Module):
    """3-D PatchGAN: (N, C, T, H, W) -> patch logits (N, 1, t, h, w). 3x3x3 convs; the first halves T, H, W,
    the next ``num_layers - 1`` halve H and W (and T in the second), then a stride-1 conv and the head."""

    def __init__(self, in_channels: int = 3, channels: int = 64, num_layers: int = 3):
        super().__init__()
        strides = [(2 if n == 1 else 1, 2, 2) if n < num_layers else 1 for n in range(1, num_layers + 1)]
        self.main = _patchgan(nn.Conv3d, nn.BatchNorm3d, 3, strides, in_channels, channels)
        self.apply(init_discriminator_weights)

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x)


def load_discriminator_state_dict(
    discriminator: nn.Module, state_dict: Mapping[str, Tensor], prefix: str = "loss.discriminator."
) -> None:
    """Load the ``prefix``-ed entries of a full state dict (e.g. an official checkpoint's ``state_dict``)
    into ``discriminator``, strictly: raises [`CheckpointError`][vidtok.io.weight_files.CheckpointError] naming missing,
    unexpected or mis-shaped keys."""
    sub = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not sub:
        sample = sorted(state_dict)[:5]
        raise CheckpointError(
            f"no discriminator weights: expected keys starting with {prefix!r}, found none among "
            f"{len(state_dict)} keys (e.g. {sample})"
        )
    mismatches = key_mismatches(discriminator.state_dict(), sub, prefix)
    if mismatches:
        raise CheckpointError(
            f"discriminator weights do not fit {type(discriminator).__name__}: "
            + "; ".join(mismatches)
            + " (check loss.disc_type, disc_num_layers and disc_channels)"
        )
    with torch.no_grad():
        discriminator.load_state_dict(sub, strict=True)
