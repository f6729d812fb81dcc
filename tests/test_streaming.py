"""Chunked and streamed encoding/decoding equal one full pass; caches never outlive a call.

fp32 comparisons use width 16: at width 4 the LayerNorms over 4 channels amplify float rounding
(a different conv algorithm for a shorter clip moves outputs by up to 4e-4 at width 4, 3e-6 at 16).
The float64 test shows the chunked algorithm itself is exact.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import vidtok
from vidtok.modules import TemporalContext, upsample_time_linear

from conftest import random_video, tiny_tokenizer

CAUSAL = [n for n in vidtok.official_names() if "_noncausal_" not in n]
V11 = [n for n in CAUSAL if n.endswith("_v1_1")]
TOL = 1e-4


def no_state_left(tok: vidtok.Tokenizer) -> bool:
    layers = [m for m in tok.modules() if isinstance(m, TemporalContext)]
    return bool(layers) and all(m._stream is None for m in layers)


def clip_for(tok: vidtok.Tokenizer, groups: int = 6, extra: int = 2) -> torch.Tensor:
    f = tok.config.temporal_factor
    return random_video(1 + groups * f + extra, 2 * tok.config.spatial_factor, seed=3)


@pytest.mark.parametrize("name", CAUSAL)
def test_chunked_encode_and_decode_equal_the_full_pass(name: str) -> None:
    tok = tiny_tokenizer(name, ch=16)
    f = tok.config.temporal_factor
    x = clip_for(tok)
    with torch.no_grad():
        z = tok.encode(x)
        y = tok.decode(z)
        for chunk in (f, 2 * f, 4 * f):
            assert (tok.encode(x, chunk_frames=chunk) - z).abs().max() <= TOL, chunk
        for chunk in (1, 2, 3):
            y_chunked = tok.decode(z, chunk_latents=chunk)
            assert y_chunked.shape == y.shape
            assert (y_chunked - y).abs().max() <= TOL, chunk
        assert (tok(x, chunk_frames=2 * f, chunk_latents=2) - tok(x)).abs().max() <= TOL
    assert no_state_left(tok)


@pytest.mark.parametrize(
    "name", ["vidtok_kl_causal_488_4chn_v1_1", "vidtok_fsq_causal_888_32768_v1_1", "vidtok_kl_causal_288_8chn"]
)
def test_chunked_passes_are_exact_in_float64(name: str) -> None:
    tok = tiny_tokenizer(name, ch=4).double()
    f = tok.config.temporal_factor
    x = clip_for(tok).double()
    with torch.no_grad():
        z = tok.encode(x)
        assert (tok.encode(x, chunk_frames=f) - z).abs().max() < 1e-10
        assert (tok.decode(z, chunk_latents=1) - tok.decode(z)).abs().max() < 1e-10


@pytest.mark.parametrize("name", V11 + ["vidtok_kl_causal_488_4chn"])
def test_streams_take_any_piece_sizes(name: str) -> None:
    tok = tiny_tokenizer(name, ch=16)
    f = tok.config.temporal_factor
    x = clip_for(tok, groups=5, extra=3)
    pieces = [1, 2, 5, 1, f + 1, 3, 100]
    with torch.no_grad():
        z_full = tok.encode(x)
        y_full = tok.decode(z_full)
        with tok.encoder_stream(chunk_frames=2 * f) as enc:
            parts, start = [], 0
            for n in pieces:
                parts.append(enc.push(x[:, :, start : start + n]))
                start += n
            parts.append(enc.finish())
        assert enc.frames_in == x.shape[2]
        z = torch.cat(parts, dim=2)
        with tok.decoder_stream(chunk_latents=2) as dec:
            frames = [dec.push(z[:, :, i : i + k]) for i, k in ((0, 1), (1, 3), (4, 0), (4, 100))]
            frames.append(dec.finish())
        y = torch.cat(frames, dim=2)
    assert (z - z_full).abs().max() <= TOL
    assert y.shape == y_full.shape and (y - y_full).abs().max() <= TOL
    assert no_state_left(tok)


def test_stream_caches_do_not_grow_with_the_video() -> None:
    tok = tiny_tokenizer("vidtok_kl_causal_488_4chn_v1_1", ch=16)
    held = []
    with torch.no_grad(), tok.encoder_stream(8) as enc, tok.decoder_stream(2) as dec:
        for _ in range(5):
            dec.push(enc.push(torch.rand(1, 3, 8, 32, 32) * 2 - 1))
            held.append((enc.cache_bytes, dec.cache_bytes))
    assert all(e > 0 and d > 0 for e, d in held[1:])  # v1.1's first chunk waits for frame 1 + 8
    assert held[2] == held[3] == held[4]  # steady once both streams run full chunks
    assert enc.cache_bytes == dec.cache_bytes == 0  # dropped on close


def test_fsq_index_streams() -> None:
    tok = tiny_tokenizer("vidtok_fsq_causal_488_32768_v1_1", ch=16)
    x = clip_for(tok)
    with torch.no_grad():
        idx = tok.encode_indices(x)
        assert torch.equal(tok.encode_indices(x, chunk_frames=8), idx)
        y = tok.decode_indices(idx)
        assert (tok.decode_indices(idx, chunk_latents=2) - y).abs().max() <= TOL
        with tok.decoder_stream(chunk_latents=3, indices=True) as dec:
            parts = [dec.push(idx[:, :4]), dec.push(idx[:, 4:]), dec.finish()]
    assert (torch.cat(parts, dim=2) - y).abs().max() <= TOL


def test_streams_clean_up_on_errors_and_refuse_misuse() -> None:
    tok = tiny_tokenizer("vidtok_kl_causal_488_4chn_v1_1", ch=4)
    x = random_video(9, 16)
    with pytest.raises(vidtok.InputError):
        with tok.encoder_stream(8) as enc:
            enc.push(x)
            enc.push(x * 300)  # out of range: the stream is closed by the with block
    assert no_state_left(tok)
    enc = tok.encoder_stream(8)
    with pytest.raises(RuntimeError, match="already streaming"):
        tok.encoder_stream(8)
    enc.push(x)
    enc.finish()
    with pytest.raises(RuntimeError, match="stream is finished"):
        enc.push(x)
    with pytest.raises(ValueError, match="continue the stream"):
        with tok.encoder_stream(8) as enc:
            enc.push(x)
            enc.push(random_video(4, 24))
    with pytest.raises(ValueError, match="received no frames"):
        tok.encoder_stream(8).finish()
    assert no_state_left(tok)


@pytest.mark.parametrize(
    "call, pattern",
    [
        (lambda tok, x: tok.encode(x, chunk_frames=6), r"chunk_frames must be a positive multiple of 4 .*e.g. 4, 8"),
        (lambda tok, x: tok.encode(x, chunk_frames=0), r"positive multiple of 4"),
        (lambda tok, x: tok.decode(tok.encode(x), chunk_latents=0), r"chunk_latents must be a positive multiple of 1"),
    ],
)
def test_bad_chunk_sizes_name_valid_values(call, pattern: str) -> None:
    tok = tiny_tokenizer("vidtok_kl_causal_488_4chn", ch=4)
    with pytest.raises(ValueError, match=pattern):
        call(tok, random_video(9, 16))
    assert no_state_left(tok)


def test_non_causal_models_refuse_chunking() -> None:
    tok = tiny_tokenizer("vidtok_kl_noncausal_488_4chn", ch=4)
    with pytest.raises(ValueError, match="non-causal.*cannot be processed chunk by chunk"):
        tok.encode(random_video(16, 16), chunk_frames=8)


@pytest.mark.parametrize("head", [1, 2, 4])
def test_linear_upsample_matches_trilinear_interpolation(head: int) -> None:
    x = torch.randn(2, 3, 9, 4, 5)

    def reference(t: torch.Tensor) -> torch.Tensor:
        return F.interpolate(t, scale_factor=(2.0, 1.0, 1.0), mode="trilinear")

    expected = torch.cat([reference(x[:, :, :head]), reference(x[:, :, head:])], dim=2)
    assert torch.allclose(upsample_time_linear(x, head), expected, atol=1e-6)
    # chunked: each call holds back its last output until the next frame is known
    for cuts in ([1, 4, 9], [3, 5, 9], [2, 9], [9]):
        parts, start, prev = [], 0, None
        for end in cuts:
            chunk = x[:, :, start:end]
            parts.append(upsample_time_linear(chunk, head, start, prev, final=end == 9))
            start, prev = end, chunk[:, :, -1:]
        assert torch.allclose(torch.cat(parts, dim=2), expected, atol=1e-6), cuts
