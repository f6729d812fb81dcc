"""The data layer: decoding and seeking, frame sampling, transforms, CSV / folder / shard sources, the shard
writer, and datasets split over ranks and workers that survive damaged inputs. Videos are generated here."""

from __future__ import annotations

import itertools
import json
import random
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader
from videos import frame_ids, write_indexed_video

from vidtok.data import (
    Failure,
    VideoClipDataset,
    clip_indices,
    collate_clips,
    csv_records,
    eval_clips,
    expand_urls,
    folder_records,
    frame_interval,
    frames_to_clip,
    read_clip,
    read_info,
    shard_records,
    write_shards,
)
from vidtok.data import shards as shards_module
from vidtok.data.sampling import padded_indices
from vidtok.errors import DataError, DataSourceError, ShardWriterError, ShortVideoError, VideoError
from vidtok.io import video as video_module
from vidtok.io.video import cover_size

# -- sampling ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fps", "sample_fps", "interval"), [(30, 30, 1), (30000 / 1001, 30, 1), (60, 30, 2), (24, 30, 1), (50, 8, 6)]
)
def test_frame_interval_rounds_fps_ratio(fps: float, sample_fps: float, interval: int) -> None:
    assert frame_interval(fps, sample_fps) == interval


def test_clip_indices_and_padding() -> None:
    assert clip_indices(3, 4, 2) == [3, 5, 7, 9]
    assert padded_indices(10, 3, 4, 2) == [3, 5, 7, 9]
    assert padded_indices(8, 3, 4, 2) == [3, 5, 7, 7]
    with pytest.raises(ShortVideoError):
        padded_indices(3, 5, 2, 1)


def test_eval_clips_follow_the_original_validation_protocol() -> None:
    # 40 frames at interval 2 -> 20 sampled; clips of 8: two full, the third completed with its last frame
    clips = eval_clips(40, 8, 2, last="repeat")
    assert clips[0] == list(range(0, 16, 2)) and clips[1] == list(range(16, 32, 2))
    assert clips[2] == [32, 34, 36, 38, 38, 38, 38, 38]
    assert eval_clips(40, 8, 2, last="drop") == clips[:2]


# -- decoding ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    return write_indexed_video(tmp_path_factory.mktemp("long") / "long.mp4", 120, fps=Fraction(30000, 1001), gop=10)


def test_indexed_videos_decode_to_their_indices(long_video: Path) -> None:
    from vidtok.io.video import iter_frames

    frames = torch.cat(list(iter_frames(long_video)))
    assert frame_ids(frames) == list(range(120))


@pytest.mark.parametrize("indices", [[0, 1, 2], [5, 5, 9, 7], list(range(40, 57)), list(range(90, 120, 3)), [119]])
def test_read_clip_returns_the_requested_frames(long_video: Path, indices: list[int]) -> None:
    assert frame_ids(read_clip(long_video, indices)) == indices


def test_late_clips_seek_instead_of_decoding_everything(long_video: Path, monkeypatch) -> None:
    decoded = []

    def counting(name):
        original = getattr(video_module, name)

        def count(source, wanted, label):
            found = original(source, wanted, label)
            decoded.append((name, found is not None))
            return found

        return count

    monkeypatch.setattr(video_module, "_seek_frames", counting("_seek_frames"))
    monkeypatch.setattr(video_module, "_front_frames", counting("_front_frames"))
    assert frame_ids(read_clip(long_video, [100, 101, 102])) == [100, 101, 102]
    assert decoded == [("_seek_frames", True)]  # one seeking pass, trusted: no fallback to decoding from the start
    decoded.clear()
    assert frame_ids(read_clip(long_video, [3, 4])) == [3, 4]
    assert decoded == [("_front_frames", True)]  # an early clip decodes from the start


@pytest.mark.parametrize("fps", [24, 25, 60])
def test_seeking_agrees_with_full_decoding_across_frame_rates(tmp_path: Path, fps: int) -> None:
    path = write_indexed_video(tmp_path / f"v{fps}.mp4", 90, fps=fps, gop=7)
    rng = random.Random(fps)
    for _ in range(5):
        start = rng.randint(0, 70)
        indices = list(range(start, start + 17, rng.choice([1, 2])))
        indices = [i for i in indices if i < 90]
        assert frame_ids(read_clip(path, indices)) == indices


@pytest.mark.parametrize(
    ("suffix", "codec"), [("mkv", "libx264"), ("webm", "libvpx-vp9"), ("avi", "mpeg4"), ("mov", "libx264")]
)
def test_other_containers_decode_and_seek(tmp_path: Path, suffix: str, codec: str) -> None:
    path = write_indexed_video(tmp_path / f"v.{suffix}", 70, fps=25, gop=10, codec=codec)
    assert read_info(path).frames == 70  # from the header, or counted where the container has none
    for indices in ([0, 1, 2], list(range(40, 57, 2)), [69]):
        assert frame_ids(read_clip(path, indices)) == indices


def test_bytes_and_paths_decode_alike(long_video: Path) -> None:
    data = long_video.read_bytes()
    assert torch.equal(read_clip(data, [30, 31, 60]), read_clip(long_video, [30, 31, 60]))
    info = read_info(data, "clip", count=True)
    assert (info.frames, info.width, info.height) == (120, 48, 32)
    assert info.fps == pytest.approx(30000 / 1001)


def test_missing_frames_and_bad_sources_name_the_video(long_video: Path, tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="long.mp4 has no frame 130"):
        read_clip(long_video, [118, 130])
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoError, match="empty.mp4 is empty"):
        read_clip(empty, [0])
    with pytest.raises(VideoError, match="clip-7"):
        read_clip(b"not a video at all" * 20, [0], name="clip-7")


# -- transforms -------------------------------------------------------------------------------------


def test_frames_to_clip_matches_the_original_torchvision_pipeline() -> None:
    from torchvision.transforms import v2

    frames = torch.randint(0, 256, (5, 72, 120, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    clip = frames_to_clip(frames, (48, 48))
    reference = v2.Compose([v2.Resize(48, antialias=True), v2.CenterCrop((48, 48)), v2.Normalize([0.5] * 3, [0.5] * 3)])
    expected = reference(frames.permute(0, 3, 1, 2).float() / 255).permute(1, 0, 2, 3)
    assert clip.shape == (3, 5, 48, 48)
    torch.testing.assert_close(clip, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("src", "target"), [((72, 120), (32, 64)), ((120, 72), (64, 32)), ((40, 40), (40, 40))])
def test_resize_covers_then_crops_any_aspect(src: tuple[int, int], target: tuple[int, int]) -> None:
    h, w = cover_size(*src, *target)
    assert h >= target[0] and w >= target[1] and (h == target[0] or w == target[1])
    frames = torch.randint(0, 256, (2, *src, 3), dtype=torch.uint8)
    clip = frames_to_clip(frames, target, random.Random(0), flip=True)
    assert clip.shape == (3, 2, *target) and clip.min() >= -1 and clip.max() <= 1


# -- sources ----------------------------------------------------------------------------------------


def test_expand_urls_braces_lists_and_padding() -> None:
    assert expand_urls("s-{000..002}.tar") == ["s-000.tar", "s-001.tar", "s-002.tar"]
    assert expand_urls("a-{1..2}-{x,y}.tar::b.tar") == ["a-1-x.tar", "a-1-y.tar", "a-2-x.tar", "a-2-y.tar", "b.tar"]
    assert expand_urls(["pipe:cat x.tar"]) == ["pipe:cat x.tar"]


def test_csv_and_folder_sources(tmp_path: Path) -> None:
    for rel in ["b/2.mp4", "a/1.mp4", "c.MOV", "notes.txt"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    assert [r.key for r in folder_records(tmp_path)] == ["a/1.mp4", "b/2.mp4", "c.MOV"]
    (tmp_path / "meta.csv").write_bytes("videos,caption\na/1.mp4,caf\xe9\n,empty\nb/2.mp4,x\n".encode("latin-1"))
    records = csv_records(tmp_path, tmp_path / "meta.csv")
    assert [r.source for r in records] == [str(tmp_path / "a/1.mp4"), str(tmp_path / "b/2.mp4")]
    with pytest.raises(DataSourceError, match="no column 'path'"):
        csv_records(tmp_path, tmp_path / "meta.csv", column="path")
    with pytest.raises(DataSourceError, match="no videos"):
        folder_records(tmp_path / "a", extensions=["webm"])


# -- a dataset with good and damaged videos ---------------------------------------------------------


GOOD = {"a/v0.mp4": (40, 24), "a/v1.mp4": (33, 30), "b/v2.mp4": (50, 60), "b/c/v3.mp4": (26, 25), "v4.mp4": (60, 24)}


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    for rel, (frames, fps) in GOOD.items():
        write_indexed_video(root / rel, frames, fps=fps, gop=8)
    good = (root / "a/v0.mp4").read_bytes()
    (root / "bad").mkdir()
    (root / "bad/zero.mp4").write_bytes(b"")
    (root / "bad/garbage.mp4").write_bytes(bytes(random.Random(0).randrange(256) for _ in range(3000)))
    (root / "bad/truncated.mp4").write_bytes(good[: len(good) // 2])
    (root / "bad/text.mp4").write_text("this is not a video\n" * 10)
    write_indexed_video(root / "bad/short.mp4", 4)
    return root


BAD = {"bad/zero.mp4", "bad/garbage.mp4", "bad/truncated.mp4", "bad/text.mp4", "bad/short.mp4"}


def test_a_video_with_a_cut_tail_gives_its_first_clip_and_is_reported_for_all_clips(tmp_path: Path) -> None:
    whole = write_indexed_video(tmp_path / "whole.mp4", 60, gop=8, faststart=True).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: int(len(whole) * 0.8)])  # about half the frames; the index at the front lists all 60
    records = folder_records(tmp_path, extensions=["mp4"])[:1]
    assert records[0].key == "cut.mp4"
    (first,) = list(VideoClipDataset(records, num_frames=9, size=(16, 16), train=False))
    assert first["frames"] == list(range(9)) and first["video"] is not None
    (failure,) = list(VideoClipDataset(records, num_frames=9, size=(16, 16), train=False, clips="all"))
    assert failure["video"] is None and "cut.mp4" in failure["skipped"][0][0]


def clip_ids(video: torch.Tensor) -> list[int]:
    """Frame indices read back from a model-ready clip (3, T, H, W) in [-1, 1]."""
    return frame_ids(((video.permute(1, 2, 3, 0) + 1) * 127.5).round().to(torch.uint8))


def eval_pass(dataset_kwargs: dict, world: int = 2, workers: int = 2, batch_size: int = 2) -> tuple[list, list]:
    """Every rank's loader with ``workers`` workers, run to the end: (good sample keys, skipped names)."""
    keys, skipped = [], []
    for rank in range(world):
        dataset = VideoClipDataset(**dataset_kwargs, train=False, rank=rank, world_size=world)
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_clips)
        for batch in loader:
            if batch["video"] is not None:
                assert batch["video"].shape[1:] == (3, 9, 16, 16)
                for video, frames in zip(batch["video"], batch["frames"], strict=True):
                    assert clip_ids(video) == frames
            keys += batch["keys"]
            skipped += [name for name, _ in batch["skipped"]]
    return keys, skipped


def test_folder_eval_pass_gives_each_good_video_once_over_2_ranks_x_2_workers(video_dir: Path) -> None:
    kwargs = dict(videos=folder_records(video_dir), num_frames=9, size=(16, 16), sample_fps=24)
    keys, skipped = eval_pass(kwargs)
    assert sorted(keys) == sorted(GOOD)
    assert sorted(Path(n).relative_to(video_dir).as_posix() for n in skipped) == sorted(BAD)


def test_eval_all_clips_covers_every_sampled_frame(video_dir: Path) -> None:
    records = [r for r in folder_records(video_dir) if r.key == "b/v2.mp4"]  # 50 frames at 60 fps
    dataset = VideoClipDataset(records, num_frames=9, size=(32, 48), sample_fps=30, train=False, clips="all")
    samples = list(dataset)
    assert [s["clip"] for s in samples] == [0, 1, 2]  # 25 frames sampled (every 2nd of 50) in clips of 9
    assert samples[0]["frames"] == list(range(0, 18, 2)) and samples[1]["frames"] == list(range(18, 36, 2))
    assert samples[2]["frames"] == [*range(36, 50, 2), 48, 48] and samples[0]["fps"] == 30
    for s in samples:
        assert clip_ids(s["video"]) == s["frames"]


def test_csv_layout_and_short_video_padding(video_dir: Path) -> None:
    (video_dir / "list.csv").write_text("videos\nbad/short.mp4\na/v1.mp4\n")
    records = csv_records(video_dir, video_dir / "list.csv")
    dataset = VideoClipDataset(records, num_frames=9, size=(16, 16), train=False)
    skipped = list(dataset)
    assert skipped[0]["video"] is None and "has 4 frames" in skipped[0]["skipped"][0][1]
    assert dataset.skipped_count == 1
    padded = list(VideoClipDataset(records, num_frames=9, size=(16, 16), train=False, short="pad"))
    assert padded[0]["frames"] == [0, 1, 2, 3, 3, 3, 3, 3, 3] and padded[0]["video"].shape == (3, 9, 16, 16)


def test_training_is_endless_random_and_reports_skips_with_good_samples(video_dir: Path) -> None:
    dataset = VideoClipDataset(folder_records(video_dir), num_frames=9, size=(16, 16), train=True, seed=3)
    loader = DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=collate_clips)
    batches = list(itertools.islice(loader, 12))
    assert all(b["video"].shape == (4, 3, 9, 16, 16) for b in batches)
    starts = {frames[0] for b in batches for frames in b["frames"]}
    assert len(starts) > 3  # random temporal crops
    skipped = {Path(name).relative_to(video_dir).as_posix() for b in batches for name, _ in b["skipped"]}
    assert skipped and skipped <= BAD
    again = itertools.islice(DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=collate_clips), 12)
    assert all(torch.equal(a["video"], b["video"]) for a, b in zip(batches, again, strict=True))  # seeded


def test_training_on_nothing_but_bad_videos_stops_with_a_clear_error(video_dir: Path) -> None:
    bad = [r for r in folder_records(video_dir) if r.key in BAD - {"bad/short.mp4"}]
    dataset = VideoClipDataset(bad, num_frames=9, size=(16, 16), train=True, max_consecutive_failures=20)
    with pytest.raises(DataError, match="20 inputs in a row could not be read"):
        next(iter(dataset))


# -- shards -----------------------------------------------------------------------------------------


def test_shard_writer_round_trip_with_metadata_and_failures(video_dir: Path, tmp_path: Path) -> None:
    summary = write_shards(folder_records(video_dir), str(tmp_path / "s-%04d.tar"), max_count=2, progress=False)
    # the short video is a readable video (datasets skip it later); the others are not videos at all
    assert summary.samples == len(GOOD) + 1 and len(summary.shards) == 3
    assert sorted(Path(f["source"]).relative_to(video_dir).as_posix() for f in summary.failed) == sorted(
        BAD - {"bad/short.mp4"}
    )
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["complete"] and [s["samples"] for s in manifest["shards"]] == [2, 2, 2]
    assert len(manifest["failed"]) == 4
    records = [r for url in expand_urls(str(tmp_path / "s-{0000..0002}.tar")) for r in shard_records(url)]
    assert not any(isinstance(r, Failure) for r in records)
    by_source = {r.meta["source"]: r for r in records}
    for rel, (frames, fps) in GOOD.items():
        meta = by_source[rel].meta
        assert (meta["frames"], meta["width"], meta["height"]) == (frames, 48, 32)
        assert meta["fps"] == pytest.approx(fps) and by_source[rel].source == (video_dir / rel).read_bytes()
    assert by_source["a/v0.mp4"].key == "a/v0"


def test_shard_eval_pass_over_ranks_and_workers_with_a_truncated_shard(video_dir: Path, tmp_path: Path) -> None:
    write_shards(folder_records(video_dir), str(tmp_path / "s-%04d.tar"), max_count=2, progress=False)
    last = tmp_path / "s-0002.tar"  # bad/short then v4
    last.write_bytes(last.read_bytes()[:9000])  # cut inside v4's video
    kwargs = dict(shards=str(tmp_path / "s-{0000..0002}.tar"), num_frames=9, size=(16, 16), sample_fps=24)
    keys, skipped = eval_pass(kwargs)
    assert sorted(keys) == sorted(k.removesuffix(".mp4") for k in GOOD if k != "v4.mp4")
    assert sorted(skipped) == sorted([f"{last}#bad/short", str(last)])


def test_shard_writer_resumes_after_an_interruption(video_dir: Path, tmp_path: Path, monkeypatch) -> None:
    inputs = folder_records(video_dir)
    reference = tmp_path / "ref"
    write_shards(inputs, str(reference / "s-%04d.tar"), max_count=2, progress=False)

    calls = {"n": 0}
    encode = shards_module._encode

    def interrupted(record, resize):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return encode(record, resize)

    out = tmp_path / "out"
    monkeypatch.setattr(shards_module, "_encode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_shards(inputs, str(out / "s-%04d.tar"), max_count=2, progress=False)
    monkeypatch.setattr(shards_module, "_encode", encode)
    partial = json.loads((out / "manifest.json").read_text())
    assert not partial["complete"] and partial["shards"] and not list(out.glob(".*tmp*"))
    summary = write_shards(inputs, str(out / "s-%04d.tar"), max_count=2, progress=False)
    assert summary.resumed_from == partial["inputs_done"] > 0
    for shard in sorted(reference.glob("*.tar")):
        assert (out / shard.name).read_bytes() == shard.read_bytes()
    with pytest.raises(ShardWriterError, match="other inputs or options"):
        write_shards(inputs, str(out / "s-%04d.tar"), max_count=3, progress=False)


def test_shard_writer_can_pre_resize(video_dir: Path, tmp_path: Path) -> None:
    inputs = [r for r in folder_records(video_dir) if r.key == "a/v0.mp4"]
    write_shards(inputs, str(tmp_path / "r-%02d.tar"), resize=16, progress=False)
    (record,) = list(shard_records(str(tmp_path / "r-00.tar")))
    assert (record.meta["height"], record.meta["width"], record.meta["frames"]) == (16, 24, 40)
    assert frame_ids(read_clip(record.source, [0, 39])) == [0, 39]


def test_shards_from_a_command_and_unreadable_shards(video_dir: Path, tmp_path: Path) -> None:
    write_shards(folder_records(video_dir / "a"), str(tmp_path / "p-%02d.tar"), progress=False)
    piped = list(shard_records(f"pipe:cat {tmp_path / 'p-00.tar'}"))
    assert [r.key for r in piped] == ["v0", "v1"]
    (failure,) = list(shard_records(f"pipe:cat {tmp_path / 'missing.tar'}", retries=1, retry_wait=0))
    assert isinstance(failure, Failure) and "exited with 1" in failure.reason
    (failure,) = list(shard_records(str(tmp_path / "missing.tar"), retries=0))
    assert isinstance(failure, Failure) and "missing.tar" in failure.reason


def test_shards_are_readable_by_webdataset(video_dir: Path, tmp_path: Path) -> None:
    wds = pytest.importorskip("webdataset")
    write_shards(folder_records(video_dir / "a"), str(tmp_path / "w-%02d.tar"), progress=False)
    samples = list(wds.WebDataset(str(tmp_path / "w-00.tar"), shardshuffle=False))
    assert [s["__key__"] for s in samples] == ["v0", "v1"]
    assert json.loads(samples[0]["json"])["frames"] == 40 and samples[0]["mp4"] == (video_dir / "a/v0.mp4").read_bytes()


# -- configs and the command ------------------------------------------------------------------------


def test_data_configs_compose_and_build_each_source(video_dir: Path, tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir

    from vidtok.composition import conf_dir
    from vidtok.data.config import DataConfig, build_dataset, build_loader
    from vidtok.errors import ConfigError

    write_shards(folder_records(video_dir / "a"), str(tmp_path / "c-%02d.tar"), progress=False)
    (video_dir / "a.csv").write_text("videos\na/v0.mp4\na/v1.mp4\n")
    paths = {"folder": str(video_dir / "a"), "csv": str(video_dir / "a.csv"), "shards": str(tmp_path / "c-00.tar")}
    for source, path in paths.items():
        with initialize_config_dir(str(conf_dir() / "data"), version_base=None):
            node = compose(source, [f"path={path}", "num_frames=9", "sample_fps=null", "num_workers=0"])
        config = DataConfig.from_any(node)
        assert config.source == source and config.num_frames == 9
        loader = build_loader(config, build_dataset(config, train=False, size=(16, 16)))
        keys = [k for batch in loader for k in batch["keys"]]
        assert sorted(keys) == (
            ["a/v0.mp4", "a/v1.mp4"]
            if source == "csv"
            else ["v0", "v1"]
            if source == "shards"
            else ["v0.mp4", "v1.mp4"]
        )
    with pytest.raises(ConfigError, match="data.source must be one of"):
        DataConfig(source="s3", path="x").validate()
    with pytest.raises(ConfigError, match="unknown data option"):
        DataConfig.from_any({"path": "x", "fps": 3})
    with pytest.raises(ConfigError, match="data.height and data.width are unset"):
        build_dataset(DataConfig(path=str(video_dir)), train=True)


def test_shards_command_writes_resumes_and_reports(video_dir: Path, tmp_path: Path, capsys) -> None:
    from vidtok.cli import main

    pattern = str(tmp_path / "out" / "t-%03d.tar")
    assert main(["shards", str(video_dir), pattern, "--max-count", "3", "-q"]) == 0
    assert "wrote 6 videos into 2 shards; 4 unreadable inputs skipped" in capsys.readouterr().out
    assert main(["shards", str(video_dir), pattern, "--max-count", "3", "-q"]) == 0
    assert "wrote 0 videos into 0 shards (resumed after 10 inputs)" in capsys.readouterr().out
    assert main(["shards", str(tmp_path / "nowhere"), pattern, "-q"]) == 2
    assert "video folder" in capsys.readouterr().err
