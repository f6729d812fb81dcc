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

import vidtok
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


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16"])
def test_compiled_passes_are_one_graph_each_and_match_eager(name: str, autocast: bool) -> None:
    """torch.compile sees the encoder and the decoder as one graph each (``fullgraph=True`` raises at a graph break,
    naming it: a break makes dynamo compile the blocks one by one and, past its recompile limit, run them eagerly;
    the device check found two, an ``out=`` into a strided view in the blend and the fused time upsampling's
    data-dependent frame ranges), the captured graphs compute what the eager passes do, and compiling in place keeps
    the state-dict keys. The ``eager`` backend runs dynamo's capture, which is what our code can get wrong; inductor's
    code generation (a C++ build of minutes on a CPU) is torch's, and the GPU device check compiles with it."""
    import torch._dynamo as dynamo

    tok = tiny_tokenizer(name, ch=8)
    keys = set(tok.state_dict())
    x = moving_shapes(16 if "noncausal" in name else 17, 32, 32)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        z = tok.encode(x)
        y = tok.decode(z)
        dynamo.reset()
        tok.compile(backend="eager", fullgraph=True)
        zc = tok.encode(x)
        yc = tok.decode(z)
    assert set(tok.state_dict()) == keys
    assert (zc - z).abs().max() < 1e-4 and (yc - y).abs().max() < 1e-4


def graphs_of_a_compiled_pass(name: str, frames: int, size: int, width: int = 128) -> tuple[list[int], dict]:
    """The graphs dynamo makes of the encoder and the decoder of ``name`` at ``width`` for a
    (1, 3, frames, size, size) video, and its graph-break reasons: captured on the meta device (shapes only, no
    arithmetic), with the counting ``eager`` backend."""
    import torch._dynamo as dynamo
    from torch._dynamo.utils import counters

    with torch.device("meta"):
        tok = vidtok.Tokenizer(vidtok.compose_tokenizer_config(name, [f"model.ch={width}"])).eval()
    tok.requires_grad_(False)
    graphs: list[int] = []

    def counting(gm, example_inputs):
        graphs.append(len(gm.graph.nodes))
        return gm.forward

    dynamo.reset()
    counters.clear()
    tok.compile(backend=counting)
    x = torch.empty(1, 3, frames, size, size, device="meta")
    with torch.inference_mode():
        y = tok.decode(tok.encode(x))
    assert y.shape == x.shape and y.device.type == "meta"
    return graphs, dict(counters["graph_break"])


@pytest.mark.slow
def test_full_width_passes_compile_to_one_graph_each() -> None:
    """The device check's compile rows, at their size (full width, 17x256x256), without the arithmetic: per-frame
    blocks split a long input into frame chunks during inference (2 frames at a time at 128 channels x 256x256),
    which a tiny model never does; under the compiler that split must stay one graph (an ``out=`` write into a view
    of the result split the encoder and decoder into 34-37 graphs and hit dynamo's recompile limit)."""
    from vidtok.modules.blocks import BLOCK_CHUNK_ELEMENTS

    assert BLOCK_CHUNK_ELEMENTS // (128 * 256 * 256) < 17  # this size does chunk
    graphs, breaks = graphs_of_a_compiled_pass("vidtok_kl_causal_488_4chn_v1_1", 17, 256)
    assert len(graphs) == 2 and not breaks, (len(graphs), breaks)
