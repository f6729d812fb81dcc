"""The tokenizer's contract on tiny widths, for every official preset: frame counts, causality,
determinism, FSQ index round trips, KL sampling."""

from __future__ import annotations

import math

import pytest
import torch

import vidtok

from conftest import random_video, tiny_tokenizer

NAMES = vidtok.official_names()
CAUSAL = [n for n in NAMES if "_noncausal_" not in n]
NONCAUSAL = [n for n in NAMES if "_noncausal_" in n]
FSQ_NAMES = [n for n in NAMES if n.startswith("vidtok_fsq")]


def size_for(tok: vidtok.Tokenizer) -> int:
    return 2 * tok.config.spatial_factor


@pytest.mark.parametrize("name", CAUSAL)
def test_causal_frame_counts(name: str) -> None:
    tok = tiny_tokenizer(name, ch=4)
    f = tok.config.temporal_factor
    size = size_for(tok)
    for frames in (1, 2, f, f + 1, 2 * f + 3):
        x = random_video(frames, size)
        with torch.no_grad():
            z = tok.encode(x)
            rec = tok.decode(z)
            out = tok(x)
        t = 1 + math.ceil((frames - 1) / f)
        assert z.shape == (
            1,
            tok.config.latent_channels,
            t,
            size // tok.config.spatial_factor,
            size // tok.config.spatial_factor,
        ), (frames, z.shape)
        assert tok.latent_frames(frames) == t
        assert rec.shape[2] == 1 + f * (t - 1) == tok.decoded_frames(t)
        assert out.shape == x.shape


@pytest.mark.parametrize("name", NONCAUSAL)
def test_noncausal_frame_counts(name: str) -> None:
    tok = tiny_tokenizer(name, ch=4)
    f = tok.config.temporal_factor
    size = size_for(tok)
    for frames in (f, 3 * f):
        x = random_video(frames, size)
        with torch.no_grad():
            z = tok.encode(x)
            assert z.shape[2] == frames // f
            assert tok.decode(z).shape == x.shape
            assert tok(x).shape == x.shape
    for frames in (1, f - 1, f + 1, 17):
        with pytest.raises(vidtok.InputError, match=rf"multiple of {f} frames .*got T={frames}"):
            tok.encode(random_video(frames, size))


@pytest.mark.parametrize("name", CAUSAL)
def test_causal_latents_do_not_depend_on_future_frames(name: str) -> None:
    """Latent k depends only on frames up to its group: encoding a prefix gives a prefix of the latents,
    whatever comes later (the end padding of an incomplete group included)."""
    tok = tiny_tokenizer(name, ch=4)
    f = tok.config.temporal_factor
    size = size_for(tok)
    x = random_video(1 + 2 * f + 2, size)
    with torch.no_grad():
        full = tok.encode(x)
        for frames in (1, 1 + f, 1 + 2 * f):
            prefix = tok.encode(x[:, :, :frames])
            assert torch.allclose(prefix, full[:, :, : prefix.shape[2]], atol=1e-5), frames


@pytest.mark.parametrize("name", ["vidtok_kl_causal_488_4chn", "vidtok_kl_noncausal_488_4chn"])
def test_batch_elements_are_independent(name: str) -> None:
    tok = tiny_tokenizer(name, ch=4)
    x = random_video(16 if "noncausal" in name else 9, 16, batch=2)
    with torch.no_grad():
        both = tok(x)
        first = tok(x[:1])
    assert (both[:1] - first).abs().max() < 1e-4


def test_kl_encode_is_deterministic_and_sampling_is_opt_in() -> None:
    tok = tiny_tokenizer("vidtok_kl_causal_488_4chn", ch=4)
    x = random_video(5, 16)
    with torch.no_grad():
        mean_a, mean_b = tok.encode(x), tok.encode(x)
        s1 = tok.encode(x, sample=True, generator=torch.Generator().manual_seed(1))
        s2 = tok.encode(x, sample=True, generator=torch.Generator().manual_seed(1))
        s3 = tok.encode(x, sample=True, generator=torch.Generator().manual_seed(2))
        moments = tok.encode_moments(x)
    assert torch.equal(mean_a, mean_b)
    assert torch.equal(mean_a, moments[:, :4])
    assert torch.equal(s1, s2) and not torch.equal(s1, s3) and not torch.equal(s1, mean_a)
    std = torch.exp(0.5 * moments[:, 4:].clamp(-30, 20))
    assert ((s1 - mean_a) / std).abs().max() < 6


@pytest.mark.parametrize("name", FSQ_NAMES)
def test_fsq_index_round_trip(name: str) -> None:
    tok = tiny_tokenizer(name, ch=4)
    f = tok.config.temporal_factor
    x = random_video(1 + f if tok.config.causal else 2 * f, size_for(tok))
    with torch.no_grad():
        codes = tok.encode(x)
        idx = tok.encode_indices(x)
        assert idx.dtype == torch.int64 and idx.shape == (codes.shape[0], *codes.shape[2:])
        assert 0 <= idx.min() and idx.max() < tok.config.codebook_size
        assert torch.equal(tok.indices_to_latents(idx), codes)
        assert torch.equal(tok.decode_indices(idx), tok.decode(codes))
        assert torch.equal(tok.decode_indices(idx.int()), tok.decode(codes))


def test_fsq_codes_to_indices_is_a_bijection() -> None:
    """Every code of a mixed-radix FSQ maps to a distinct index and back (odd and even levels)."""
    from vidtok.models import FSQ

    for levels in ([8, 5, 3], [8, 8, 8, 8], [2, 7]):
        fsq = FSQ(levels)
        indices = torch.arange(fsq.codebook_size).view(1, -1)
        codes = fsq.indices_to_codes(indices)
        assert codes.shape == (1, len(levels), fsq.codebook_size)
        assert torch.equal(fsq.codes_to_indices(codes), indices)
        assert codes.min() >= -1 and codes.max() <= 1
        # quantising a code again is a no-op: codes are fixed points of the quantiser
        assert torch.equal(fsq(_inverse_bound(fsq, codes)), codes)


def _inverse_bound(fsq, codes: torch.Tensor) -> torch.Tensor:
    v = lambda t: t.view(1, -1, 1)  # noqa: E731
    scaled = codes * v(fsq._half_width)
    return torch.atanh((scaled + v(fsq._offset)) / v(fsq._half_l)) - v(fsq._shift)


def test_fsq_runs_in_float32_under_autocast() -> None:
    tok = tiny_tokenizer("vidtok_fsq_causal_488_4096", ch=4)
    x = random_video(5, 16)
    with torch.no_grad():
        ref = tok.encode_indices(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            codes = tok.regularizer(tok.encode_moments(x).float())
    assert codes.dtype == torch.float32
    assert torch.equal(tok.regularizer.codes_to_indices(codes), ref)


def test_config_reports_what_the_model_is() -> None:
    cfg = vidtok.compose_tokenizer_config("vidtok_fsq_causal_888_32768_v1_1")
    assert (cfg.causal, cfg.factors, cfg.latent_channels, cfg.codebook_size, cfg.version) == (
        True,
        (8, 8, 8),
        5,
        32768,
        "v1.1",
    )
    cfg = vidtok.compose_tokenizer_config("vidtok_kl_noncausal_41616_16chn")
    assert (cfg.causal, cfg.factors, cfg.latent_channels, cfg.codebook_size, cfg.version) == (
        False,
        (4, 16, 16),
        16,
        None,
        "v1.0",
    )


def test_v1_0_and_v1_1_share_keys_but_not_outputs() -> None:
    """The trap the diffusers port falls into: same state dict, different maths."""
    v10 = tiny_tokenizer("vidtok_kl_causal_488_4chn", ch=4)
    v11 = vidtok.build_tokenizer(vidtok.compose_tokenizer_config("vidtok_kl_causal_488_4chn_v1_1", ["model.ch=4"]))
    v11.load_state_dict(v10.state_dict())
    v11.eval()
    x = random_video(9, 16)
    with torch.no_grad():
        assert (v10(x) - v11(x)).abs().max() > 1e-2


def test_gradients_flow_and_checkpointing_matches() -> None:
    cfg = vidtok.compose_tokenizer_config("vidtok_kl_causal_488_4chn_v1_1", ["model.ch=4"])
    x = random_video(5, 16)
    grads = []
    for ckpt in (False, True):
        cfg.model.gradient_checkpointing = ckpt
        torch.manual_seed(0)
        tok = vidtok.build_tokenizer(cfg).train()
        tok(x).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in tok.parameters() if p.grad is not None]))
    assert grads[0].abs().sum() > 0
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_fsq_passes_gradients_straight_through() -> None:
    from vidtok.models import FSQ

    fsq = FSQ([8, 5])
    z = torch.randn(2, 2, 3, requires_grad=True)
    fsq(z).sum().backward()
    bound_grad = torch.autograd.grad(_bound(fsq, z).sum(), z)[0]
    assert torch.allclose(z.grad, bound_grad / fsq._half_width.view(1, -1, 1))


def _bound(fsq, z: torch.Tensor) -> torch.Tensor:
    v = lambda t: t.view(1, -1, 1)  # noqa: E731
    return (z + v(fsq._shift)).tanh() * v(fsq._half_l) - v(fsq._offset)
