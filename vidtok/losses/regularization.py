"""Latent regularisation terms: the KL divergence of KL models and the FSQ entropy and commitment losses.

The FSQ entropy loss (from MAGVIT-v2 / lucidrains' FSQ) scores every latent position against every code
of the implicit codebook: ``p = softmax(2 * inv_temperature * z . c)`` over codes ``c`` (the original's
``-distance * inv_temperature`` with ``distance = -2 z . c``). It rewards confident positions (low
per-position entropy) and even code use over the batch (high entropy of the mean of ``p``). With 262,144
codes the full positions x codes table is far too large, so it is computed in chunks of positions, and
backward recomputes each chunk instead of storing it ([`_ChunkedCodeEntropy`][]).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from ..distributed import is_distributed
from ..models.regularizers import DiagonalGaussian, autocast_off

#: Probabilities below this are clamped before the log, as in the original's entropy.
PROB_EPS = 1e-5


def kl_loss(moments: Tensor) -> Tensor:
    """KL divergence of the posterior N(mean, exp(logvar)) to N(0, 1), summed over all elements and divided
    by the batch size; ``moments`` (B, 2C, ...) is mean and log-variance stacked on channels. float32."""
    return DiagonalGaussian.kl(moments.float()).sum() / moments.shape[0]


def entropy_loss_weight(step: int, weight: float, annealing_steps: int, annealing_factor: float) -> float:
    """The entropy weight at ``step``: ``annealing_factor * weight`` at step 0, falling linearly to ``weight``
    at ``annealing_steps`` and constant afterwards."""
    if step >= annealing_steps:
        return weight
    start = annealing_factor * weight
    return start - (step / annealing_steps) * (start - weight)


def _entropy(prob: Tensor) -> Tensor:
    """Entropy over the last dim, with probabilities clamped at PROB_EPS inside the log (as the original)."""
    return -(prob * prob.clamp(min=PROB_EPS).log()).sum(dim=-1)


def _code_probs(z: Tensor, codebook: Tensor, inv_temperature: float) -> Tensor:
    distance = -2.0 * (z @ codebook.t())
    return (-distance * inv_temperature).softmax(dim=-1)


def _chunk_rows(num_codes: int, chunk_size: int) -> int:
    return max(1, chunk_size // num_codes)


class _ChunkedCodeEntropy(torch.autograd.Function):
    """(z (N, d), codebook (K, d)) -> (sum over positions of the per-position entropy, sum over positions of
    p (K,)), in chunks of ``rows`` positions; backward recomputes each chunk's probabilities."""

    @staticmethod
    def forward(ctx, z: Tensor, codebook: Tensor, inv_temperature: float, rows: int) -> tuple[Tensor, Tensor]:
        ctx.save_for_backward(z, codebook)
        ctx.inv_temperature, ctx.rows = inv_temperature, rows
        entropy_sum = z.new_zeros(())
        prob_sum = z.new_zeros(codebook.shape[0])
        with autocast_off(z.device.type):
            for s in range(0, z.shape[0], rows):
                prob = _code_probs(z[s : s + rows], codebook, inv_temperature)
                entropy_sum += _entropy(prob).sum()
                prob_sum += prob.sum(dim=0)
        return entropy_sum, prob_sum

    @staticmethod
    def backward(ctx, grad_entropy: Tensor, grad_prob: Tensor) -> tuple[Tensor, None, None, None]:
        z, codebook = ctx.saved_tensors
        grad_z = torch.empty_like(z)
        with torch.enable_grad(), autocast_off(z.device.type):
            for s in range(0, z.shape[0], ctx.rows):
                chunk = z[s : s + ctx.rows].detach().requires_grad_(True)
                prob = _code_probs(chunk, codebook, ctx.inv_temperature)
                # d/d chunk of (grad_entropy * sum entropy + grad_prob . sum p): the chain rule through both outputs
                surrogate = grad_entropy * _entropy(prob).sum() + (prob @ grad_prob).sum()
                grad_z[s : s + ctx.rows] = torch.autograd.grad(surrogate, chunk)[0]
        return grad_z, None, None, None


def _mean_over_processes(t: Tensor) -> Tensor:
    """The mean of ``t`` over processes when torch.distributed runs; gradients pass to the local ``t``
    scaled by 1 / world size, as the original's in-place all_reduce followed by a division gives."""
    if not is_distributed():
        return t
    total = t.detach().clone()
    dist.all_reduce(total)
    return (t + (total - t).detach()) / dist.get_world_size()


@dataclass
class FSQEntropyTerms:
    """``entropy_loss = per_sample_entropy - diversity_gamma * codebook_entropy``."""

    entropy_loss: Tensor
    per_sample_entropy: Tensor
    codebook_entropy: Tensor


def fsq_entropy_loss(
    z: Tensor,
    codebook: Tensor,
    inv_temperature: float = 100.0,
    diversity_gamma: float = 1.0,
    chunk_size: int = 2**24,
) -> FSQEntropyTerms:
    """The FSQ entropy loss of pre-quantisation latents ``z`` (B, d, ...) (channels = code dims) against the
    implicit ``codebook`` (K, d). At most ``chunk_size`` probabilities exist at once, in forward and backward;
    computed in float32 with autocast off. The mean code distribution is averaged over processes when
    torch.distributed is initialised."""
    if z.shape[1] != codebook.shape[1]:
        raise ValueError(f"z has {z.shape[1]} channels but the codebook's codes have {codebook.shape[1]} dims")
    flat = z.float().movedim(1, -1).reshape(-1, z.shape[1])
    codebook = codebook.float().to(flat.device)
    n = flat.shape[0]
    entropy_sum, prob_sum = _ChunkedCodeEntropy.apply(
        flat, codebook, float(inv_temperature), _chunk_rows(codebook.shape[0], chunk_size)
    )
    per_sample = entropy_sum / n
    avg_prob = _mean_over_processes(prob_sum / n)
    codebook_entropy = _entropy(avg_prob)
    return FSQEntropyTerms(per_sample - diversity_gamma * codebook_entropy, per_sample, codebook_entropy)


def commitment_loss(z: Tensor, codes: Tensor) -> Tensor:
    """mean((z - sg(codes))^2) in float32: pulls the pre-quantisation latents towards their codes."""
    return F.mse_loss(z.float(), codes.detach().float())
