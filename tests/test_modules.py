"""Building blocks: layouts, causality, temporal resampling, identity initialisation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vidtok.modules import (
    FrameConv2d,
    ResnetBlock,
    TimeConv1d,
    TimeDownsample,
    TimeUpsample,
    VolumeConv,
    conv3d,
    pad_time_front,
    time_conv,
    unwrap_conv,
    upsample_time_linear,
)
from vidtok.modules.streaming import streaming

torch.manual_seed(0)


def test_frame_conv_equals_conv2d_on_each_frame() -> None:
    conv = FrameConv2d(4, 6, 3, stride=2, padding=1)
    x = torch.randn(2, 4, 5, 9, 11)
    frames = x.transpose(1, 2).reshape(10, 4, 9, 11)
    ref = F.conv2d(frames, conv.weight, conv.bias, stride=2, padding=1)
    ours = conv(x)
    assert torch.allclose(ours, ref.reshape(2, 5, 6, 5, 6).transpose(1, 2), atol=1e-5)


def test_time_conv_equals_conv1d_on_each_pixel() -> None:
    conv = TimeConv1d(4, 6, 3, padding=1)
    x = torch.randn(2, 4, 7, 3, 5)
    series = x.permute(0, 3, 4, 1, 2).reshape(30, 4, 7)
    ref = F.conv1d(series, conv.weight, conv.bias, padding=1).reshape(2, 3, 5, 6, 7).permute(0, 3, 4, 1, 2)
    assert torch.allclose(conv(x), ref, atol=1e-5)


@pytest.mark.parametrize("channels, bias, padding", [(3, True, (0, 1, 1)), (4, False, (1, 1, 1)), (8, True, (0, 1, 1))])
@pytest.mark.parametrize("buffer", [1 << 23, 1])  # one block of frames, or one frame at a time
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last_3d])
def test_volume_conv_inference_equals_conv3d(channels, bias, padding, buffer, layout, monkeypatch) -> None:
    monkeypatch.setattr("vidtok.modules.conv.PATCH_BUFFER_ELEMENTS", buffer)
    conv = VolumeConv(channels, 5, 3, padding=padding, bias=bias)
    x = torch.randn(2, channels, 6, 7, 9).contiguous(memory_format=layout)
    ref = F.conv3d(x, conv.weight, conv.bias, padding=padding)
    with torch.inference_mode():
        out = conv(x)
    # <= 4 input channels: the patch-product path, whose output is channels-last whatever the input; more: the
    # oneDNN convolution, whose output keeps the input's layout (the model feeds it channels-last activations)
    want = torch.channels_last_3d if channels <= 4 else layout
    assert out.is_contiguous(memory_format=want), (channels, layout)
    assert torch.allclose(out, ref, atol=1e-5)


@pytest.mark.parametrize("frames", [1, 3, 7, 8, 12])  # both sides of FUSED_TIME_CONV_MIN_FRAMES
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("zero_past", [False, True])
def test_causal_time_conv_inference_equals_padded_conv(frames: int, batch: int, zero_past: bool) -> None:
    conv = TimeConv1d(4, 6, 3)
    x = torch.randn(batch, 4, frames, 3, 5).contiguous(memory_format=torch.channels_last_3d)
    past = torch.zeros(batch, 4, 2, 3, 5) if zero_past else torch.randn(batch, 4, 2, 3, 5)
    ref = conv(torch.cat([past, x], 2))
    with torch.inference_mode():
        out = conv.causal(x, None if zero_past else past)
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, atol=1e-5)


@pytest.mark.parametrize("pad", ["zeros", "replicate"])
@pytest.mark.parametrize(
    "make",
    [
        lambda pad: conv3d(3, 3, 3, causal=True, temporal_pad=pad),
        lambda pad: time_conv(3, 3, 3, causal=True, temporal_pad=pad),
        lambda pad: TimeUpsample(3, causal=True, temporal_pad=pad, mode="nearest"),
    ],
)
def test_causal_layers_ignore_the_future(make, pad: str) -> None:
    layer = make(pad)
    x = torch.randn(1, 3, 8, 4, 4)
    y = x.clone()
    y[:, :, 5:] = torch.randn_like(y[:, :, 5:])
    out_x, out_y = layer(x), layer(y)
    keep = out_x.shape[2] * 5 // 8
    assert torch.allclose(out_x[:, :, :keep], out_y[:, :, :keep])
    assert not torch.allclose(out_x, out_y)


def test_causal_time_downsample_groups_pairs() -> None:
    """Output i depends on frames <= 2i + 1 only."""
    layer = TimeDownsample(3, causal=True, temporal_pad="replicate")
    x = torch.randn(1, 3, 8, 2, 2)
    y = x.clone()
    y[:, :, 6:] += 1
    assert torch.allclose(layer(x)[:, :, :3], layer(y)[:, :, :3])


def test_pad_time_front_modes() -> None:
    x = torch.arange(1.0, 4.0).view(1, 1, 3)
    assert pad_time_front(x, 2, "zeros").flatten().tolist() == [0, 0, 1, 2, 3]
    assert pad_time_front(x, 2, "replicate").flatten().tolist() == [1, 1, 1, 2, 3]


def test_linear_time_upsample_keeps_the_first_group_apart() -> None:
    x = torch.tensor([0.0, 4.0, 8.0, 12.0]).view(1, 1, 4, 1, 1)
    # first group of 1: frame 0 repeated; the rest interpolated on its own (edges clamped)
    assert upsample_time_linear(x, 1).flatten().tolist() == [0, 0, 4, 5, 7, 9, 11, 12]
    assert upsample_time_linear(x, 2).flatten().tolist() == [0, 1, 3, 4, 8, 9, 11, 12]
    assert upsample_time_linear(x, 4).flatten().tolist() == [0, 1, 3, 5, 7, 9, 11, 12]


@pytest.mark.parametrize("causal, pad", [(True, "zeros"), (True, "replicate"), (False, "zeros")])
@pytest.mark.parametrize("frames, chunk", [(5, 1 << 24), (5, 1), (1, 1 << 24), (2, 1)])
@pytest.mark.parametrize("grad", [True, False])
def test_nearest_time_upsample_equals_repeat_then_conv(causal, pad, frames, chunk, grad, monkeypatch) -> None:
    """The folded 2-tap computation is the original's repeat-every-frame-then-3x3x3-conv, whole or
    a frame at a time (``chunk``), with autograd or in place."""
    monkeypatch.setattr("vidtok.modules.resample.UPSAMPLE_CHUNK_ELEMENTS", chunk)
    up = TimeUpsample(4, causal=causal, temporal_pad=pad, mode="nearest")
    torch.nn.init.normal_(up.mix_factor)
    x = torch.randn(2, 4, frames, 6, 7)
    repeated = x.repeat_interleave(2, dim=2)
    alpha = torch.sigmoid(up.mix_factor)
    expected = alpha * repeated + (1 - alpha) * up.conv(repeated)
    with torch.set_grad_enabled(grad):
        assert torch.allclose(up(x), expected, atol=1e-5)


@pytest.mark.parametrize("pieces", [(7,), (1, 1, 1, 1, 1, 1, 1), (2, 3, 2), (1, 4, 2), (3, 1, 3)])
@pytest.mark.parametrize("head", [1, 2])
def test_linear_time_upsample_in_a_stream_equals_one_pass(pieces: tuple[int, ...], head: int, monkeypatch) -> None:
    """The fused inference path, fed chunk by chunk (the conv's cache and the held-back output carried
    between chunks), equals the autograd path on the whole sequence."""
    monkeypatch.setattr("vidtok.modules.resample.UPSAMPLE_CHUNK_ELEMENTS", 1)  # bounded pieces inside, too
    up = TimeUpsample(4, causal=True, temporal_pad="replicate", mode="linear")
    torch.nn.init.normal_(up.mix_factor)
    torch.nn.init.normal_(unwrap_conv(up.conv).weight, std=0.3)
    x = torch.randn(2, 4, sum(pieces), 5, 6)
    expected = up(x, first_group=head)  # autograd: interpolate, then the causal conv
    outs, start = [], 0
    with torch.no_grad(), streaming(up) as state:
        for i, n in enumerate(pieces):
            state.final = i == len(pieces) - 1
            outs.append(up(x[:, :, start : start + n], first_group=head))
            start += n
    assert torch.allclose(torch.cat(outs, dim=2), expected, atol=1e-5)


@pytest.mark.parametrize("cin, cout", [(4, 4), (4, 6)])
def test_per_frame_block_in_chunks_equals_whole(cin: int, cout: int, monkeypatch) -> None:
    block = ResnetBlock(cin, cout, lambda i, o, k: FrameConv2d(i, o, k, padding=k // 2), per_frame=True)
    x = torch.randn(2, cin, 7, 5, 6)
    whole = block(x)  # autograd on: never chunked
    monkeypatch.setattr("vidtok.modules.blocks.BLOCK_CHUNK_ELEMENTS", 2 * cin * 5 * 6)  # two frames at a time
    with torch.inference_mode():
        chunked = block(x)
    assert torch.allclose(chunked, whole, atol=1e-5)


@pytest.mark.parametrize(
    "mode, causal, pad", [("linear", True, "replicate"), ("nearest", True, "zeros"), ("nearest", False, "zeros")]
)
@pytest.mark.parametrize("frames, first_group", [(1, 1), (2, 1), (5, 1), (4, 2), (5, 3)])
def test_time_upsample_inference_equals_autograd_path(mode, causal, pad, frames, first_group) -> None:
    """Inference convolves each input frame once per tap and combines the results; the autograd path
    convolves the resampled sequence. Float64: equal up to rounding of the reordered sums."""
    up = TimeUpsample(4, causal=causal, temporal_pad=pad, mode=mode).double()
    torch.nn.init.normal_(up.mix_factor)
    torch.nn.init.normal_(unwrap_conv(up.conv).bias)
    x = torch.randn(2, 4, frames, 3, 5, dtype=torch.float64)
    expected = up(x, first_group=first_group)
    with torch.inference_mode():
        out = up(x, first_group=first_group)
    assert out.shape == expected.shape
    assert (out - expected).abs().max() < 1e-12


def test_temporal_blocks_start_as_identity() -> None:
    block = ResnetBlock(4, 4, lambda i, o, k: time_conv(i, o, k, causal=True), zero_init=True)
    x = torch.randn(1, 4, 5, 3, 3)
    assert torch.equal(block(x), x)
