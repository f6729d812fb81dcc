"""The learning rates of the two Adam optimisers (tokenizer and discriminator): scaled with the batch
([`base_learning_rates`][]), warmed up linearly ([`warmup_factor`][], [`set_learning_rates`][]), and the
discriminator's Adam state primed to the original's when the discriminator starts ([`prime_adam`][])."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from .config import OptimConfig


def base_learning_rates(optim: OptimConfig, world: int, batch_size: int, grad_accum: int) -> tuple[float, float]:
    """(generator, discriminator) learning rates; with ``optim.scale_lr`` both are multiplied by processes x
    batch size x accumulation, as the original's ``--scale_lr``."""
    scale = world * batch_size * grad_accum if optim.scale_lr else 1
    return optim.lr * scale, (optim.disc_lr or optim.lr) * scale


def warmup_factor(step: int, warmup_steps: int) -> float:
    """The fraction of the base learning rate used at ``step`` (0-based): rising linearly to 1 over
    ``warmup_steps`` steps, 1 without warm-up."""
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0


def set_learning_rates(pairs: Iterable[tuple[torch.optim.Optimizer, float]], factor: float) -> None:
    """Set every parameter group of each optimiser to its base rate times ``factor``."""
    for opt, base in pairs:
        for group in opt.param_groups:
            group["lr"] = base * factor


def prime_adam(opt: torch.optim.Optimizer, step: int) -> None:
    """Give an Adam that starts at ``step`` the state the original's discriminator Adam has then.

    The original steps that Adam on every batch from the start, with zero gradients until
    ``disc_start``: moments stay zero but the step count advances, so bias correction no longer
    inflates the first real moments and those updates are about 3x a fresh Adam's. vidtok skips
    the discriminator until then and reproduces that state here instead.
    """
    if step == 0:
        return
    for group in opt.param_groups:
        for p in group["params"]:
            opt.state[p] = {
                "step": torch.tensor(float(step)),
                "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
            }
