"""Videos of several aspect ratios: encode.py's resize=aspect / buckets and the frame cap, and LatentDataset's
batches of one shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_commands import write_clip
from test_encode import KL_V11, _config, _samples

from vidtok.data import LatentDataset
from vidtok.data.sizing import FrameSizing, parse_size
from vidtok.encoding import encode_dataset
from vidtok.errors import ConfigError
from vidtok.inference.pipeline import ReadSettings, encode_video

from conftest import tiny_tokenizer

#: name -> (height, width) of the source videos: landscape, portrait, square, a wide one
SOURCES = {"land": (36, 64), "port": (64, 36), "square": (40, 40), "wide": (24, 72)}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mixed")
    for i, (name, (h, w)) in enumerate(SOURCES.items()):
        write_clip(root / f"{name}.mp4", frames=21 + 4 * i, height=h, width=w)
    return root


def test_aspect_keeps_the_ratio_rounded_down_to_the_spatial_factor() -> None:
    sizing = FrameSizing("aspect", short_side=256, multiple=8).checked()
    assert sizing.target(720, 1280) == (256, 448)  # 455.1 -> 448: the rest is cropped
    assert sizing.target(1280, 720) == (448, 256)
    assert sizing.target(480, 480) == (256, 256)
    assert sizing.target(1080, 1920) == (256, 448)


def test_buckets_take_the_nearest_aspect_ratio() -> None:
    sizing = FrameSizing.buckets_of(["256x256", [256, 448], "448x256", "192x512"], multiple=8)
    assert sizing.target(720, 1280) == (256, 448)
    assert sizing.target(1280, 720) == (448, 256)
    assert sizing.target(500, 520) == (256, 256)
    assert sizing.target(240, 720) == (192, 512)  # 3:1 is nearer 8:3 than 16:9
    assert FrameSizing.buckets_of(["64x64", "32x32"]).target(10, 10) == (64, 64)  # a tie: the first listed


@pytest.mark.parametrize(
    "sizing, words",
    [
        (FrameSizing("aspect", short_side=250, multiple=8), "multiple of 8"),
        (FrameSizing("aspect", multiple=8), "needs short_side"),
        (FrameSizing("buckets", multiple=8), "needs a list of sizes"),
        (FrameSizing("buckets", buckets=((256, 452),), multiple=8), "['256x452']"),
        (FrameSizing("stretch"), "crop, aspect, buckets"),
    ],
)
def test_sizes_that_do_not_fit_the_model_are_refused_by_name(sizing, words) -> None:
    with pytest.raises(ConfigError, match="resize|buckets") as err:
        sizing.checked()
    assert words in str(err.value)


def test_sizes_are_read_as_typed() -> None:
    assert parse_size("256x448") == parse_size("256X448") == parse_size([256, 448]) == (256, 448)
    with pytest.raises(ConfigError, match="HEIGHTxWIDTH"):
        parse_size("256by448")


def test_buckets_encode_each_video_at_its_size_and_batches_keep_one_shape(weights, mixed, tmp_path) -> None:
    out = tmp_path / "out"
    buckets = ["32x32", "32x56", "56x32", "24x72"]
    result = encode_dataset(_config(weights, mixed, out, resize="buckets", buckets=buckets, batch_size=3))
    assert not result.failed
    samples = _samples(out)
    expect = {"land": (32, 56), "port": (56, 32), "square": (32, 32), "wide": (24, 72)}
    for entry in samples.values():
        meta, tokens = entry["json"], entry["tokens"]
        name = Path(meta["source"]).stem
        assert (meta["height"], meta["width"]) == (tokens.height, tokens.width) == expect[name]
        assert tokens.data.shape[-2:] == (expect[name][0] // 8, expect[name][1] // 8)
    # a sample is what vidtok encode gives for the same frames at the same size
    land = next(e for e in samples.values() if e["json"]["source"].endswith("land.mp4") and e["json"]["clip"] == 0)
    tok = tiny_tokenizer(KL_V11, ch=8)
    alone = encode_video(tok, mixed / "land.mp4", reading=ReadSettings(height=32, width=56, max_frames=17))
    assert (land["tokens"].data - alone.data).abs().max() < 1e-4
    stats = json.loads((out / "stats.json").read_text())
    counts = {}
    for entry in samples.values():
        size = f"{entry['json']['height']}x{entry['json']['width']}"
        counts[size] = counts.get(size, 0) + 1
    assert stats["sizes"] == dict(sorted(counts.items()))

    loader = torch.utils.data.DataLoader(LatentDataset(out, batch_size=2), batch_size=None, num_workers=2)
    batches = list(loader)
    seen = [key for batch in batches for key in batch["key"]]
    assert sorted(seen) == sorted(samples)  # every sample once over the two workers
    for batch in batches:
        assert batch["latents"].shape[0] == len(batch["key"]) == len(batch["meta"]) <= 2
        for i, key in enumerate(batch["key"]):
            assert torch.equal(batch["latents"][i : i + 1], samples[key]["tokens"].data)
    full = [b for b in LatentDataset(out, batch_size=2, drop_last=True)]
    assert all(len(b["key"]) == 2 for b in full)


def test_aspect_and_the_frame_cap_in_whole_mode(weights, mixed, tmp_path) -> None:
    out = tmp_path / "out"
    encode_dataset(_config(weights, mixed, out, resize="aspect", short_side=32, max_frames=13, mode="whole"))
    samples = {Path(e["json"]["source"]).stem: e for e in _samples(out).values()}
    expect = {"land": (32, 56), "port": (56, 32), "square": (32, 32), "wide": (32, 96)}
    for name, entry in samples.items():
        assert (entry["tokens"].height, entry["tokens"].width) == expect[name]
        assert entry["json"]["frames"] == 13 and entry["tokens"].data.shape[2] == 4  # 1 + 12/4 latent frames
    index = [v for f in sorted((out / "index").glob("*.json")) for v in json.loads(f.read_text())["videos"]]
    assert {v["frames"] for v in index} == {13}
    batches = list(LatentDataset(out, batch_size=4))
    shapes = sorted(tuple(b["latents"].shape) for b in batches)  # four sizes: four batches of one
    assert shapes == sorted((1, 4, 4, h // 8, w // 8) for h, w in expect.values())


def test_refusals_name_the_key(weights, mixed, tmp_path) -> None:
    cases = [
        ({"resize": "aspect", "short_side": 30}, "short_side, a positive multiple of 8"),
        ({"resize": "buckets", "buckets": ["32x30"]}, "multiples of 8"),
        ({"resize": "buckets", "buckets": ["wide"]}, "HEIGHTxWIDTH"),
        ({"max_frames": 9}, "max_frames=9 leaves no clip of 17 frames"),
        ({"max_frames": 0}, "max_frames must be >= 1"),
    ]
    for extra, words in cases:
        with pytest.raises(ConfigError) as err:
            encode_dataset(_config(weights, mixed, tmp_path / "out", **extra))
        assert words in str(err.value), (extra, str(err.value))
    assert not list((tmp_path / "out").glob("part-*"))
