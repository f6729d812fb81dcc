"""The built-in demo dataset (vidtok/assets/demo): the clips are there, decode with vidtok's own reader,
give full clips at the demo's sampling rates, and are credited in ATTRIBUTION.md."""

from __future__ import annotations

import itertools

import pytest

import vidtok.demo as demo
from vidtok.data.config import DataConfig, build_dataset
from vidtok.data.sampling import clip_span
from vidtok.demo import demo_dir, demo_root
from vidtok.io.video import frame_interval, read_info

EXPECTED = {
    "train": [
        "bbb_bird_tree.mp4",
        "bbb_bunny_butterfly.mp4",
        "bbb_bunny_closeup.mp4",
        "bbb_burrow.mp4",
        "bbb_dark_forest.mp4",
        "bbb_foliage.mp4",
        "bbb_forest.mp4",
        "bbb_meadow_pan.mp4",
        "bbb_rodents.mp4",
        "bbb_rodents_trunk.mp4",
        "bbb_sky.mp4",
        "bbb_tree_squirrel.mp4",
    ],
    "val": ["bbb_bird.mp4", "bbb_ears.mp4", "bbb_emerge.mp4", "city_towers.mp4"],
}
# The rates the demo experiment samples at; the clips are cut long enough for 17 frames at these.
SAMPLE_FPS = {"train": 3.0, "val": 8.0}
NUM_FRAMES = 17
MAX_BYTES = 3 * 1024 * 1024


def config(split: str, **overrides) -> DataConfig:
    values = dict(
        source="folder",
        path=str(demo_dir(split)),
        num_frames=NUM_FRAMES,
        sample_fps=SAMPLE_FPS[split],
        height=128,
        width=128,
        batch_size=2,
        num_workers=0,
    )
    values.update(overrides)
    return DataConfig(**values)


@pytest.mark.parametrize("split", ["train", "val"])
def test_each_split_holds_its_clips(split: str) -> None:
    folder = demo_dir(split)
    assert folder.is_dir() and folder.name == split and folder.parent == demo_root()
    assert sorted(p.name for p in folder.iterdir() if p.suffix == ".mp4") == EXPECTED[split]
    assert demo_dir() == demo_dir("train")


def test_the_dataset_is_small() -> None:
    total = sum(p.stat().st_size for p in demo_root().rglob("*") if p.is_file())
    assert total < MAX_BYTES, f"demo assets take {total / 1e6:.2f} MB"


@pytest.mark.parametrize("split", ["train", "val"])
def test_every_clip_is_long_enough_for_its_sampling(split: str) -> None:
    for name in EXPECTED[split]:
        info = read_info(demo_dir(split) / name, count=True)
        assert info.fps in (24.0, 25.0), name
        assert min(info.width, info.height) == 128 and info.width % 2 == 0 and info.height % 2 == 0, name
        need = clip_span(NUM_FRAMES, frame_interval(info.fps, SAMPLE_FPS[split]))
        assert info.frames >= need, f"{name}: {info.frames} frames, a clip at {SAMPLE_FPS[split]} fps needs {need}"
        assert read_info(demo_dir(split) / name).frames == info.frames, f"{name}: header and packets disagree"


def check_full(sample: dict) -> None:
    assert sample["skipped"] == [], sample["skipped"]
    assert sample["video"] is not None and tuple(sample["video"].shape) == (3, NUM_FRAMES, 128, 128)
    assert sample["video"].min() >= -1 and sample["video"].max() <= 1
    assert sample["video"].std() > 0.05, f"{sample['key']} looks blank"
    assert len(set(sample["frames"])) == NUM_FRAMES, f"{sample['key']}: padded with repeated frames"


def test_one_pass_gives_a_full_clip_from_every_training_file() -> None:
    samples = list(build_dataset(config("train"), train=False))
    assert [s["key"] for s in samples] == EXPECTED["train"]
    for sample in samples:
        check_full(sample)


def test_training_draws_full_clips_without_skipping() -> None:
    dataset = build_dataset(config("train"), train=True)
    for sample in itertools.islice(iter(dataset), 4):
        check_full(sample)
    assert dataset.skipped_count == 0


def test_every_validation_file_gives_two_full_clips() -> None:
    # 100 frames sampled every 3rd: 34 frames, exactly two 17-frame clips, neither padded
    samples = list(build_dataset(config("val", clips="all"), train=False))
    assert [(s["key"], s["clip"]) for s in samples] == [(name, i) for name in EXPECTED["val"] for i in (0, 1)]
    for sample in samples:
        check_full(sample)


def test_attribution_names_every_clip() -> None:
    text = (demo_root() / "ATTRIBUTION.md").read_text(encoding="utf-8")
    for split, names in EXPECTED.items():
        for name in names:
            assert f"`{split}/{name}`" in text, f"{split}/{name} is not credited"
    for licence in ("creativecommons.org/licenses/by/3.0", "creativecommons.org/publicdomain/zero/1.0"):
        assert licence in text


def test_unknown_split_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown demo split 'test'.*train, val"):
        demo_dir("test")


def test_a_missing_folder_is_reported(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(demo, "demo_root", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match="demo clips .* are missing"):
        demo_dir("val")
    (tmp_path / "val").mkdir()
    with pytest.raises(FileNotFoundError, match="package data"):
        demo_dir("val")
