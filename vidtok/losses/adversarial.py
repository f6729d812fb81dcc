"""GAN objectives: discriminator and generator losses, LeCAM regularisation, the adaptive generator weight."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


def hinge_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """0.5 * (mean relu(1 - real) + mean relu(1 + fake))."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def vanilla_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """0.5 * (mean softplus(-real) + mean softplus(fake)): binary cross-entropy with logits."""
    return 0.5 * (F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean())


def non_saturating_g_loss(logits_fake: Tensor) -> Tensor:
    """Cross-entropy of each sample's mean patch logit against the label "real": mean softplus(-l).

    Written as the numerically stable ``max(l, 0) - l + log1p(exp(-|l|))`` of the original, which equals
    softplus(-l) without softplus's large-input threshold.
    """
    logit = logits_fake.reshape(logits_fake.shape[0], -1).mean(dim=1)
    return (logit.clamp(min=0) - logit + torch.log1p(torch.exp(-logit.abs()))).mean()


def hinge_g_loss(logits_fake: Tensor) -> Tensor:
    """-mean(logits): the generator side of the hinge GAN."""
    return -logits_fake.mean()


DISC_LOSSES = {"hinge": hinge_d_loss, "vanilla": vanilla_d_loss}
GEN_LOSSES = {"non_saturating": non_saturating_g_loss, "hinge": hinge_g_loss}


class LeCAM(nn.Module):
    """LeCAM regularisation (Tseng et al., 2021) with exponential moving averages of the mean real and
    fake logits. The averages are float64 buffers, so they are saved in and restored from checkpoints."""

    real_ema: Tensor
    fake_ema: Tensor

    def __init__(self, decay: float = 0.999, init: float = 0.0):
        super().__init__()
        self.decay = decay
        self.register_buffer("real_ema", torch.tensor(init, dtype=torch.float64))
        self.register_buffer("fake_ema", torch.tensor(init, dtype=torch.float64))

    @torch.no_grad()
    def update(self, logits_real: Tensor, logits_fake: Tensor) -> None:
        """ema <- decay * ema + (1 - decay) * mean(logits), for real and fake."""
        for ema, logits in ((self.real_ema, logits_real), (self.fake_ema, logits_fake)):
            ema.copy_(ema * self.decay + logits.detach().mean().double() * (1 - self.decay))

    def forward(self, logits_real: Tensor, logits_fake: Tensor) -> Tensor:
        """mean relu(real - fake_ema)^2 + mean relu(real_ema - fake)^2 (in the logits' dtype)."""
        fake_ema = self.fake_ema.to(logits_real.dtype)
        real_ema = self.real_ema.to(logits_fake.dtype)
        return F.relu(logits_real - fake_ema).pow(2).mean() + F.relu(real_ema - logits_fake).pow(2).mean()


def adaptive_generator_weight(
    nll_loss: Tensor,
    g_loss: Tensor,
    last_layer: Tensor,
    disc_weight: float = 1.0,
    eps: float = 1e-4,
    max_weight: float = 1e4,
) -> Tensor:
    """disc_weight * clamp(||d nll / d w|| / (||d g / d w|| + eps), 0, max_weight), detached, where w is
    ``last_layer`` (the decoder's output conv weight). Keeps the graph for the caller's backward."""
    nll_grad = torch.autograd.grad(nll_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    weight = torch.norm(nll_grad) / (torch.norm(g_grad) + eps)
    return weight.clamp(0.0, max_weight).detach() * disc_weight
