"""Training paths: with autograd on, the tokenizer computes the same function as inference, with correct gradients.

Inference runs fused, in-place kernels that autograd never sees; training runs the plain layers. These
tests pin the two to each other and check the plain layers' gradients against finite differences.
"""

from __future__ import annotations

import random

import pytest
import torch

from conftest import tiny_tokenizer

PRESETS = [
    "vidtok_kl_causal_488_4chn",
    "vidtok_kl_causal_488_4chn_v1_1",
    "vidtok_kl_noncausal_488_4chn",
    "vidtok_fsq_causal_41616_262144",
    "vidtok_kl_causal_288_8chn_v1_1",
    "vidtok_fsq_causal_888_32768_v1_1",
]


def clip(tok, size: int, dtype=torch.float32) -> torch.Tensor:
    f = tok.config.temporal_factor
    frames = 2 * f + 1 if tok.config.causal else 2 * f
    gen = torch.Generator().manual_seed(1)
    return (torch.rand(1, 3, frames, size, size, generator=gen, dtype=dtype) * 2 - 1).to(dtype)


@pytest.mark.parametrize("name", PRESETS)
def test_training_forward_equals_inference(name: str) -> None:
    tok = tiny_tokenizer(name, ch=8)
    x = clip(tok, 2 * tok.config.spatial_factor)
    with torch.no_grad():
        expected = tok(x)
    tok.train().requires_grad_(True)
    got = tok(x)
    assert got.requires_grad
    torch.testing.assert_close(got.detach(), expected, atol=2e-5, rtol=1e-4)


def _loss(tok, x: torch.Tensor) -> torch.Tensor:
    moments = tok.encode_moments(x)
    z = moments[:, : moments.shape[1] // 2] if not tok.config.is_discrete else moments  # FSQ rounding is flat
    y = tok.decode(z)[:, :, : x.shape[2]]
    return (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum() + y.pow(2).mean()


@pytest.mark.parametrize(
    "name", ["vidtok_kl_causal_488_4chn", "vidtok_kl_causal_488_4chn_v1_1", "vidtok_kl_noncausal_488_4chn"]
)
def test_gradients_match_finite_differences(name: str) -> None:
    tok = tiny_tokenizer(name, ch=4).double().train().requires_grad_(True)
    x = clip(tok, 16, torch.float64)
    named = list(tok.named_parameters())
    grads = torch.autograd.grad(_loss(tok, x), [p for _, p in named])
    picks = random.Random(0).sample(range(len(named)), 12)
    eps = 1e-6
    for i in picks:
        name_i, p = named[i]
        d = torch.randn(p.shape, generator=torch.Generator().manual_seed(i), dtype=p.dtype)
        with torch.no_grad():
            p.add_(eps * d)
            up = _loss(tok, x)
            p.sub_(2 * eps * d)
            down = _loss(tok, x)
            p.add_(eps * d)
        numeric = float((up - down) / (2 * eps))
        analytic = float((grads[i] * d).sum())
        assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-7), name_i
