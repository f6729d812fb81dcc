"""Reduced precision (autocast) and torch.compile give the fp32 eager results within stated tolerances.

Tolerances, on a width-16 model with perturbed random weights and inputs in [-1, 1]:
* bf16 autocast: reconstructions within 0.1 mean abs / 0.6 max abs of fp32 (bf16 keeps 8 bits of
  mantissa; errors add up over ~60 layers), latents within 0.05 mean abs;
* fp16 autocast: within a quarter of the bf16 bounds;
* torch.compile (fp32): within 1e-4 max abs, as any other reordering of float sums.
"""

from __future__ import annotations

import pytest
import torch

from vidtok.synthetic import moving_shapes

from conftest import tiny_tokenizer

NAMES = ["vidtok_kl_causal_488_4chn", "vidtok_kl_causal_488_4chn_v1_1", "vidtok_kl_noncausal_488_4chn"]


@pytest.mark.parametrize("name", NAMES + ["vidtok_fsq_causal_488_4096"])
@pytest.mark.parametrize("dtype, scale", [(torch.bfloat16, 1.0), (torch.float16, 0.25)])
def test_autocast_matches_fp32(name: str, dtype: torch.dtype, scale: float) -> None:
    tok = tiny_tokenizer(name, ch=16)
    x = moving_shapes(16 if "noncausal" in name else 9, 32, 32)
    with torch.no_grad():
        z32 = tok.encode(x)
        y32 = tok.decode(z32)
        with torch.autocast("cpu", dtype=dtype):
            z = tok.encode(x)
            y = tok.decode(z32)
    assert y.shape == y32.shape and torch.isfinite(y).all()
    if tok.config.is_discrete:
        # codes are exact multiples of 1/4: equal except where a value sits on a rounding boundary
        assert (z.float() != z32).float().mean() < 0.05 * scale + 0.01
    else:
        assert (z.float() - z32).abs().mean() < 0.05 * scale
    err = (y.float() - y32).abs()
    assert err.mean() < 0.1 * scale and err.max() < 0.6 * scale, (err.mean().item(), err.max().item())


def test_autocast_streams_and_chunks() -> None:
    tok = tiny_tokenizer("vidtok_kl_causal_488_4chn_v1_1", ch=16)
    x = moving_shapes(13, 32, 32)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        full = tok(x).float()
        chunked = tok(x, chunk_frames=4, chunk_latents=1).float()
    assert (full - chunked).abs().max() < 0.05


def test_compiled_model_matches_eager() -> None:
    """What compiling can get wrong in our code: dynamo's capture of the passes (guards, specialisation) and the
    state-dict keys. aot_eager runs exactly that capture and AOT autograd, without inductor's code generation,
    whose C++ build on a CPU (over two minutes here) tests torch, not vidtok; the GPU device check compiles with
    inductor (benchmarks/device_check.py, compile section)."""
    tok = tiny_tokenizer("vidtok_kl_causal_488_4chn_v1_1", ch=8)
    x = moving_shapes(9, 32, 32)
    with torch.no_grad():
        z = tok.encode(x)
        y = tok.decode(z)
        tok.compile(backend="aot_eager")
        zc = tok.encode(x)
        yc = tok.decode(z)
    assert (zc - z).abs().max() < 1e-4
    assert (yc - y).abs().max() < 1e-4
    assert set(tok.state_dict()) == set(tiny_tokenizer("vidtok_kl_causal_488_4chn_v1_1", ch=8).state_dict())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16"])
def test_encoder_and_decoder_trace_as_one_graph(name: str, autocast: bool) -> None:
    """torch.compile sees each pass as one graph: a graph break makes dynamo compile the blocks one by one and,
    past its recompile limit, run them eagerly (the device check found two: an ``out=`` into a strided view in
    the blend, and the fused time upsampling's data-dependent frame ranges)."""
    import torch._dynamo as dynamo

    tok = tiny_tokenizer(name, ch=8)
    x = moving_shapes(16 if "noncausal" in name else 17, 32, 32)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        z = tok.encode(x)
        for what, module, arg in (("encoder", tok.encoder, tok._pad_frames(x)), ("decoder", tok.decoder, z)):
            dynamo.reset()
            explained = dynamo.explain(module)(arg)
            reasons = [str(b.reason).splitlines()[0] for b in explained.break_reasons]
            assert explained.graph_break_count == 0, (what, reasons[:3])
