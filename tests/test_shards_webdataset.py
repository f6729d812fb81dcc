"""Tar shards through the webdataset library: urls as its users write them (braces, pipe:, http(s)://, s3://, gs://),
shards from plain webdataset code, resampled and epoch-wise training reads split over ranks and workers."""

from __future__ import annotations

import functools
import http.server
import itertools
import os
import stat
import threading
from pathlib import Path

import pytest
import webdataset as wds
from torch.utils.data import DataLoader
from videos import write_indexed_video

from vidtok.data import (
    Failure,
    VideoClipDataset,
    collate_clips,
    expand_urls,
    folder_records,
    shard_records,
    write_shards,
)
from vidtok.errors import DataError

SHARDS = 4
PER_SHARD = 2


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 shards of 2 generated videos each, written by `vidtok shards` (keys s<shard>v<video>)."""
    root = tmp_path_factory.mktemp("shards")
    videos = root / "videos"
    for s in range(SHARDS):
        for v in range(PER_SHARD):
            write_indexed_video(videos / f"s{s}v{v}.mp4", frames=12, fps=24)
    write_shards(folder_records(videos), str(root / "train-%03d.tar"), max_count=PER_SHARD, progress=False)
    return root


def keys_of(url: str) -> list[str]:
    items = list(shard_records(url, retries=0))
    assert not [i for i in items if isinstance(i, Failure)], items
    return [i.key for i in items]


def test_brace_ranges_lists_and_env_variables(shard_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert expand_urls(f"{shard_dir}/train-{{000..003}}.tar") == [f"{shard_dir}/train-{i:03d}.tar" for i in range(4)]
    assert expand_urls("a-{1..2}-{x,y}.tar::b.tar") == ["a-1-x.tar", "a-1-y.tar", "a-2-x.tar", "a-2-y.tar", "b.tar"]
    monkeypatch.setenv("WDS_ROOT", str(shard_dir))
    assert expand_urls("${ROOT}/train-{002..003}.tar") == [f"{shard_dir}/train-002.tar", f"{shard_dir}/train-003.tar"]
    assert keys_of(f"file://{shard_dir}/train-001.tar") == ["s1v0", "s1v1"]


def test_shards_written_by_plain_webdataset_code_read_in_ours(shard_dir: Path, tmp_path: Path) -> None:
    videos = sorted((shard_dir / "videos").glob("*.mp4"))[:3]
    with wds.ShardWriter(str(tmp_path / "theirs-%02d.tar"), maxcount=2, verbose=0) as sink:
        for path in videos:  # their default encoder: dicts become JSON, bytes stay bytes
            sink.write({"__key__": path.stem, "mp4": path.read_bytes(), "json": {"fps": 24, "frames": 12}})
    dataset = VideoClipDataset(
        shards=str(tmp_path / "theirs-{00..01}.tar"), num_frames=9, size=(16, 16), sample_fps=None, train=False
    )
    samples = list(dataset)
    assert [s["key"] for s in samples] == [p.stem for p in videos]
    assert all(s["video"].shape == (3, 9, 16, 16) for s in samples)


def test_shards_written_by_ours_read_in_plain_webdataset_code(shard_dir: Path) -> None:
    samples = list(wds.WebDataset(f"{shard_dir}/train-{{000..001}}.tar", shardshuffle=False).decode())
    assert [s["__key__"] for s in samples] == ["s0v0", "s0v1", "s1v0", "s1v1"]
    assert samples[0]["json"]["frames"] == 12 and samples[0]["mp4"] == (shard_dir / "videos/s0v0.mp4").read_bytes()


@pytest.fixture
def http_root(shard_dir: Path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(shard_dir))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_http_shards_through_webdataset_curl_handler(http_root: str, shard_dir: Path) -> None:
    dataset = VideoClipDataset(
        shards=f"{http_root}/train-{{000..003}}.tar", num_frames=9, size=(16, 16), sample_fps=None, train=False
    )
    loader = DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=collate_clips)
    keys = sorted(k for batch in loader for k in batch["keys"])
    assert keys == sorted(f"s{s}v{v}" for s in range(SHARDS) for v in range(PER_SHARD))
    (failure,) = shard_records(f"{http_root}/missing.tar", retries=0)
    assert isinstance(failure, Failure) and "command exited with 22" in failure.reason  # curl -f: HTTP 404


def fake_cli(bin_dir: Path, name: str, prefix: str, root: Path) -> None:
    """A stand-in for the aws / gsutil command line that serves ``<prefix>bucket/<file>`` from ``root``."""
    script = bin_dir / name
    script.write_text(
        "#!/bin/sh\n"
        f'for a in "$@"; do case "$a" in {prefix}*) path="$a";; esac; done\n'
        f'exec cat "{root}/${{path#{prefix}bucket/}}"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


@pytest.mark.parametrize(("scheme", "cli"), [("s3://", "aws"), ("gs://", "gsutil")])
def test_object_store_urls(shard_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheme, cli) -> None:
    fake_cli(tmp_path, cli, scheme, shard_dir)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert keys_of(f"{scheme}bucket/train-002.tar") == ["s2v0", "s2v1"]
    (failure,) = shard_records(f"{scheme}bucket/missing.tar", retries=0)
    assert isinstance(failure, Failure) and "command exited with 1" in failure.reason


def test_damaged_members_and_headers_are_skipped_with_a_count(shard_dir: Path, tmp_path: Path) -> None:
    data = (shard_dir / "train-000.tar").read_bytes()  # members: s0v0.json, s0v0.mp4, s0v1.json, s0v1.mp4
    bad_json = tmp_path / "bad_json.tar"
    bad_json.write_bytes(data[:512] + b"\xff" * 93 + data[605:])  # s0v0's JSON is garbage: that sample only
    items = list(shard_records(str(bad_json), retries=0))
    assert isinstance(items[0], Failure) and "unreadable metadata JSON" in items[0].reason
    assert [i.key for i in items[1:]] == ["s0v1"]
    # s0v1.mp4's tar header is garbage: tarfile ends the archive there, quietly; the data left after it (more than
    # tarfile's 10 KiB read-ahead) shows the damage. (Damage within a shard's last 10 KiB stays unseen: the tail
    # sample then lacks a member and is reported as such.)
    big = write_shards(folder_records(shard_dir / "videos"), str(tmp_path / "big-%d.tar"), max_count=8, progress=False)
    data = Path(big.shards[0]).read_bytes()
    bad_header = tmp_path / "bad_header.tar"
    bad_header.write_bytes(data[:4608] + b"\xff" * 512 + data[5120:])
    items = list(shard_records(str(bad_header), retries=0))
    assert [i.key for i in items[:1]] == ["s0v0"] and len(items) == 2  # s0v1 lost its video: not delivered
    assert isinstance(items[1], Failure) and items[1].reason.startswith("shard unreadable after 1 samples")
    assert "damaged tar header" in items[1].reason
    dataset = VideoClipDataset(
        shards=[str(bad_json), str(bad_header), str(shard_dir / "train-001.tar")],
        num_frames=9,
        size=(16, 16),
        sample_fps=None,
        train=False,
    )
    samples = list(dataset)
    assert [s["key"] for s in samples if s["video"] is not None] == ["s0v1", "s0v0", "s1v0", "s1v1"]
    assert dataset.skipped_count == 2
    assert [s["skipped"][0][0] for s in samples if s["video"] is None] == [f"{bad_json}#s0v0", str(bad_header)]


def part_stream(shard_dir: Path, rank: int, worker_of: tuple[int, int], n: int, **kwargs) -> list[str]:
    """The first ``n`` training sample keys of one (rank, worker) part of 2 ranks (worker ids without a DataLoader)."""
    worker, workers = worker_of
    dataset = VideoClipDataset(
        shards=f"{shard_dir}/train-{{000..003}}.tar",
        num_frames=9,
        size=(16, 16),
        sample_fps=None,
        train=True,
        rank=rank * workers + worker,
        world_size=2 * workers,
        **kwargs,
    )
    return [s["key"] for s in itertools.islice(dataset, n)]


def test_epoch_reads_give_each_shard_once_per_epoch_over_2_ranks_x_2_workers(shard_dir: Path) -> None:
    parts = [
        part_stream(shard_dir, r, (w, 2), 2 * PER_SHARD, resampled=False, shuffle_buffer=1)
        for r in (0, 1)
        for w in (0, 1)
    ]
    first_epoch = sorted(k for p in parts for k in p[:PER_SHARD])
    assert first_epoch == sorted(f"s{s}v{v}" for s in range(SHARDS) for v in range(PER_SHARD))  # each sample once
    second_epoch = sorted(k for p in parts for k in p[PER_SHARD:])
    assert second_epoch == first_epoch
    assert [p[0][:2] for p in parts] != [p[PER_SHARD][:2] for p in parts]  # shard order reshuffled per epoch
    with pytest.raises(DataError, match="at least one shard per rank x worker: 4 shards for 8 readers"):
        part_stream(shard_dir, 0, (0, 4), 1, resampled=False)


def test_resampled_reads_are_seeded_per_part_and_equal_in_length(shard_dir: Path) -> None:
    a = part_stream(shard_dir, 0, (0, 2), 12, seed=5)
    assert a == part_stream(shard_dir, 0, (0, 2), 12, seed=5)  # deterministic: exact resume replays it
    assert a != part_stream(shard_dir, 1, (1, 2), 12, seed=5)  # every part its own draw
    assert a != part_stream(shard_dir, 0, (0, 2), 12, seed=6)
    assert len({k[:2] for k in a}) > 1  # shards drawn with replacement, several of them
    # epoch_samples (webdataset's with_epoch): every rank x worker stops at the same count
    for rank, worker in itertools.product((0, 1), (0, 1)):
        assert len(part_stream(shard_dir, rank, (worker, 2), 100, epoch_samples=5)) == 5
