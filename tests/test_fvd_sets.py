"""FVD between two unpaired sets of videos (`vidtok fvd`, vidtok.evaluation.fvd_sets): evaluate.py's detector check,
frame protocol and float64 distance; each set's statistics cached and reused only for the same files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from standins import save_detector
from test_cli import run_vidtok
from test_commands import write_clip

from vidtok.data.videos import list_videos, video_pieces
from vidtok.errors import DataSourceError, WeightsError
from vidtok.evaluation.config import EvalConfig
from vidtok.evaluation.fvd_sets import FVDProtocol, fvd_between
from vidtok.metrics import FeatureStats, FrameScorer, fvd_from_stats


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fvd")
    (root / "gen").mkdir()
    (root / "real").mkdir()
    for i in range(3):
        write_clip(root / "gen" / f"g{i}.mp4", frames=33 + i, height=40, width=48)
    for i in range(2):
        write_clip(root / "real" / f"r{i}.mp4", frames=40, height=64, width=64, fps=30)
    (root / "gen" / "broken.mp4").write_bytes(b"\x00" * 64)
    save_detector(root / "i3d.pt", 16)
    return root


def _fvd(sets: Path, cache, **protocol):
    return fvd_between(str(sets / "gen"), str(sets / "real"), FVDProtocol(**protocol),
                       detector_path=sets / "i3d.pt", detector_sha256=None, cache_dir=cache)  # fmt: skip


def test_the_protocol_is_evaluate_pys(sets) -> None:
    """Each set's statistics are those of evaluate.py's own cut and scorer over the same videos."""
    report = _fvd(sets, None, height=32, width=32, clip_frames=17)
    scorer = FrameScorer(lpips=False, fvd=True, detector_path=sets / "i3d.pt", detector_sha256=None)
    expected = {}
    for name in ("gen", "real"):
        cfg = EvalConfig.from_any({"data": {"dir": str(sets / name)}, "height": 32, "width": 32, "clip_frames": 17,
                                   "last_clip": "drop"})  # fmt: skip
        stats = FeatureStats()
        for task in list_videos(cfg.data):
            try:
                for piece in video_pieces(task, cfg.cutting(causal=True)):
                    stats.update(scorer.features(piece.video))
            except Exception:
                continue  # the broken file
        expected[name] = stats
    for got, want in ((report.generated.stats, expected["gen"]), (report.real.stats, expected["real"])):
        assert got.count == want.count
        assert torch.equal(torch.from_numpy(got.sum), torch.from_numpy(want.sum))
    assert report.fvd == fvd_from_stats(expected["real"], expected["gen"])
    assert (report.generated.videos, report.generated.clips) == (3, 5) and report.real.clips == 4  # 33, 34, 35 frames
    assert [f["name"] for f in report.generated.failed] == [str(sets / "gen" / "broken.mp4")]
    assert report.detector["sha256"] and not report.detector["reference"]


def test_a_set_against_itself_is_zero_and_counts_may_differ(sets) -> None:
    same = fvd_between(str(sets / "real"), str(sets / "real"), detector_path=sets / "i3d.pt", detector_sha256=None,
                       cache_dir=None)  # fmt: skip
    assert same.fvd == pytest.approx(0.0, abs=1e-6)
    first = _fvd(sets, None, clips="first")
    assert first.generated.clips == 3 and first.real.clips == 2  # one clip per video


def test_the_real_set_is_featurized_once_and_again_when_it_changes(sets, tmp_path) -> None:
    cache = tmp_path / "cache"
    a = _fvd(sets, cache)
    assert not a.real.cached and not a.generated.cached and len(list(cache.glob("fvd-*.npz"))) == 2
    b = _fvd(sets, cache)
    assert b.real.cached and b.generated.cached and b.fvd == a.fvd
    assert b.generated.failed == a.generated.failed  # what failed is remembered too
    other = _fvd(sets, cache, height=32, width=32)  # another protocol: other entries
    assert not other.real.cached
    changed = sets / "real" / "r1.mp4"
    stamp = changed.stat()
    os.utime(changed, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))  # the file changed: featurized again
    try:
        c = _fvd(sets, cache)
        assert not c.real.cached and c.generated.cached
    finally:
        os.utime(changed, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))


def test_the_detector_is_checked_and_named(sets, tmp_path) -> None:
    with pytest.raises(WeightsError, match="SHA-256"):
        fvd_between(str(sets / "gen"), str(sets / "real"), detector_path=sets / "i3d.pt", cache_dir=None)
    with pytest.raises(DataSourceError, match="FVD needs at least 2 per set"):
        _fvd(sets, None, clips="first", sample_fps=1)  # one frame per second: no clip of 16 frames


def test_the_command_as_typed(sets, tmp_path) -> None:
    args = ["fvd", str(sets / "gen"), str(sets / "real"), "--detector", str(sets / "i3d.pt"), "--no-detector-check"]
    args += ["--cache", str(tmp_path / "cache"), "--report", str(tmp_path / "report.json")]
    done = run_vidtok(*args)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("FVD ") and "gen (3 videos, 6 clips) vs" in done.stdout
    assert "skipped" in done.stderr and "broken.mp4" in done.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["real"]["clips"] == 4 and report["detector"]["path"] == str(sets / "i3d.pt")
    missing = run_vidtok("fvd", str(tmp_path / "nowhere"), str(sets / "real"), "--detector", str(sets / "i3d.pt"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr and len(missing.stderr.splitlines()) == 1
