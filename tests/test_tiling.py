"""Spatial tiling: exact blending arithmetic, and tiled model passes close to untiled ones."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vidtok.models.tiling import tile_starts, tiled
from vidtok.synthetic import moving_shapes

from conftest import tiny_tokenizer


def test_tile_starts_cover_the_frame_with_full_tiles() -> None:
    assert tile_starts(64, 64, 16) == [0]
    assert tile_starts(40, 64, 16) == [0]
    assert tile_starts(160, 64, 16) == [0, 48, 96]
    for size, tile, overlap in ((1080, 256, 64), (1920, 256, 32), (100, 48, 8)):
        starts = tile_starts(size, tile, overlap)
        assert starts[0] == 0 and starts[-1] == size - tile
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:], strict=False))


@pytest.mark.parametrize("tile, overlap", [(16, 0), (16, 8), (24, 8), (32, 16)])
def test_blending_reproduces_any_function_that_commutes_with_cropping(tile: int, overlap: int) -> None:
    """Weights are normalised per pixel, so a pointwise or nearest-upsampling fn is reproduced exactly."""
    x = torch.randn(1, 2, 3, 40, 56)
    assert torch.allclose(tiled(lambda t, _: t * 3, x, tile, overlap, 1.0), x * 3, atol=1e-6)
    up = tiled(lambda t, _: F.interpolate(t, scale_factor=(1, 2, 2)), x, tile, overlap, 2.0)
    assert torch.allclose(up, F.interpolate(x, scale_factor=(1, 2, 2)), atol=1e-6)
    down = tiled(lambda t, _: t[..., ::4, ::4], x, tile, overlap, 0.25)
    assert torch.allclose(down, x[..., ::4, ::4], atol=1e-6)


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer("vidtok_kl_causal_488_4chn_v1_1", ch=8)


def test_a_tile_as_large_as_the_frame_is_the_untiled_pass(tok) -> None:
    x = moving_shapes(5, 32, 48)
    with torch.no_grad():
        assert torch.equal(tok.encode(x, tile=64), tok.encode(x))
        z = tok.encode(x)
        assert torch.equal(tok.decode(z, tile=64), tok.decode(z))


def test_overlap_brings_tiles_closer_to_the_untiled_pass(tok) -> None:
    x = moving_shapes(5, 64, 96)
    with torch.no_grad():
        z = tok.encode(x)
        y = tok.decode(z)

        def gaps(overlap: int) -> tuple[float, float]:
            zt = tok.encode(x, tile=48, tile_overlap=overlap)
            yt = tok.decode(z, tile=48, tile_overlap=overlap)
            assert zt.shape == z.shape and yt.shape == y.shape
            return (zt - z).abs().mean().item(), (yt - y).abs().mean().item()

        no_overlap, overlap = gaps(0), gaps(16)
    assert overlap[0] < no_overlap[0] and overlap[1] < no_overlap[1]


def test_tiles_and_chunks_combine(tok) -> None:
    x = moving_shapes(13, 64, 64)
    with torch.no_grad():
        tiled_only = tok.encode(x, tile=32, tile_overlap=8)
        both = tok.encode(x, tile=32, tile_overlap=8, chunk_frames=4)
        assert (both - tiled_only).abs().max() < 1e-4
        z = tok.encode(x)
        y = tok.decode(z, tile=32, tile_overlap=8)
        assert (tok.decode(z, tile=32, tile_overlap=8, chunk_latents=1) - y).abs().max() < 1e-4
        assert tok(x, tile=32, chunk_frames=8, chunk_latents=2).shape == x.shape


def test_fsq_tiles_are_blended_before_quantisation() -> None:
    tok = tiny_tokenizer("vidtok_fsq_causal_488_4096", ch=8)
    x = moving_shapes(5, 48, 48)
    with torch.no_grad():
        codes = tok.encode(x, tile=32, tile_overlap=16)
        idx = tok.encode_indices(x, tile=32, tile_overlap=16)
    assert torch.equal(tok.indices_to_latents(idx), codes)  # still valid codes, not averages of codes


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"tile": 20}, r"tile must be a positive multiple of 8 pixels .*e.g. 128, 256, 512.*got 20"),
        ({"tile": 32, "tile_overlap": 4}, r"tile_overlap must be a multiple of 8 .*got 4"),
        ({"tile": 32, "tile_overlap": 32}, r"smaller than the tile \(32\)"),
    ],
)
def test_bad_tile_sizes_name_valid_values(tok, kwargs: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        tok.encode(moving_shapes(1, 32, 32), **kwargs)
