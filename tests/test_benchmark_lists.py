"""Named evaluation sets: the lists kept with vidtok (MCL-JCV, DAVIS 2017 val, TokenBench), the check of a local
copy (generated files: every missing, duplicated or different file named before anything runs), frame folders read
as videos, and an evaluation with benchmark= taking exactly the listed files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vidtok.errors import DataSourceError
from vidtok.evaluation import evaluate
from vidtok.evaluation.benchmarks import Benchmark, benchmark_names, check_benchmark, load_benchmark
from vidtok.io.video import read_info, sampled_frames, tensor_to_frames, write_video
from vidtok.io.weight_files import save_tokenizer_safetensors
from vidtok.synthetic import moving_shapes

from conftest import REPO, tiny_tokenizer


def test_the_lists_kept_with_vidtok() -> None:
    assert benchmark_names() == ["davis", "mcl_jcv", "tokenbench"]
    mcl = load_benchmark("mcl_jcv")
    assert len(mcl.files) == 30 and sum(f["frames"] for f in mcl.files) == 4115
    assert {(f["fps"], f["frames"]) for f in mcl.files} == {(30, 150), (25, 125), (24, 120)}
    assert all(f["path"].endswith(f"_1920x1080_{f['fps']}") for f in mcl.files)
    davis = load_benchmark("davis")
    assert len(davis.files) == 30 and sum(f["frames"] for f in davis.files) == 1999
    assert all(f["path"].startswith("JPEGImages/480p/") and f["kind"] == "frames" for f in davis.files)
    tokenbench = load_benchmark("tokenbench")
    assert len(tokenbench.files) + sum(g["count"] for g in tokenbench.groups) == 500
    assert [(g["prefix"], g["count"]) for g in tokenbench.groups] == [("egoexo4D_", 200), ("bridgev2_", 100),
                                                                      ("panda_", 100)]  # fmt: skip


def _frames_folder(folder: Path, n: int, seed: int = 0) -> np.ndarray:
    folder.mkdir(parents=True, exist_ok=True)
    frames = (np.random.default_rng(seed).random((n, 24, 40, 3)) * 255).astype(np.uint8)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i:05d}.png")
    return frames


def _video(path: Path, n: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_video(path, tensor_to_frames(moving_shapes(n, 40, 48, seed=seed)), fps=30)


SMALL = Benchmark(
    name="small",
    title="a small set",
    sources=["generated"],
    layout="a.mp4, sub/b.mkv, JPEGImages/480p/seq/, g_1.mp4, g_2.mp4",
    files=[
        {"path": "a", "kind": "video", "frames": 20, "width": 48, "height": 40},
        {"path": "b", "kind": "video", "frames": 25},
        {"path": "JPEGImages/480p/seq", "kind": "frames", "frames": 18},
    ],
    groups=[{"subset": "G", "prefix": "g_", "count": 2, "kind": "video"}],
)


@pytest.fixture
def small_set(tmp_path: Path) -> Path:
    root = tmp_path / "set"
    _video(root / "a.mp4", 20)
    _video(root / "sub" / "b.mkv", 25, seed=1)
    _frames_folder(root / "JPEGImages" / "480p" / "seq", 18)
    _video(root / "g_1.mp4", 17, seed=2)
    _video(root / "g_2.mp4", 17, seed=3)
    (root / "notes.txt").write_text("not a video")
    return root


def test_a_complete_copy_passes_and_gives_the_listed_files_in_order(small_set: Path) -> None:
    assert check_benchmark(SMALL, str(small_set)) == ["a.mp4", "sub/b.mkv", "JPEGImages/480p/seq", "g_1.mp4", "g_2.mp4"]


def test_every_missing_duplicated_or_different_file_is_named(small_set: Path) -> None:
    (small_set / "a.mp4").unlink()
    _video(small_set / "a.mp4", 19)  # one frame short
    _video(small_set / "other" / "b.mp4", 25)  # b twice
    (small_set / "JPEGImages" / "480p" / "seq" / "00017.png").unlink()
    (small_set / "g_2.mp4").unlink()
    with pytest.raises(DataSourceError) as err:
        check_benchmark(SMALL, str(small_set))
    message = str(err.value)
    assert "4 of 4 listed files missing or different" in message
    assert "a: 19 frames, expected 20" in message
    assert "b: found 2 times (other/b.mp4, sub/b.mkv)" in message
    assert "JPEGImages/480p/seq: 17 frames, expected 18" in message
    assert "g_*: 1 videos, expected 2 (G)" in message
    with pytest.raises(DataSourceError, match="data.dir must be the folder holding a small set"):
        check_benchmark(SMALL, str(small_set / "nowhere"))


def test_a_frame_folder_reads_as_a_video_of_its_frames(tmp_path: Path) -> None:
    frames = _frames_folder(tmp_path / "seq", 9)
    read = sampled_frames(tmp_path / "seq", None)
    got = [f for _, f in read.frames]
    assert read.fps == 24 and len(got) == 9
    assert all(torch.equal(g, torch.from_numpy(f)) for g, f in zip(got, frames, strict=True))  # PNG: exact
    assert read_info(tmp_path / "seq", count=True).frames == 9


def test_evaluate_with_a_benchmark_takes_exactly_its_files(small_set: Path, tmp_path: Path, monkeypatch) -> None:
    module = sys.modules["vidtok.evaluation.benchmarks"]
    monkeypatch.setattr(module, "load_benchmark", lambda name: SMALL)
    tok = tiny_tokenizer("vidtok_kl_causal_488_4chn_v1_1", ch=4)
    ckpt = save_tokenizer_safetensors(tok.state_dict(), tok.config, tmp_path / "t.safetensors")
    cfg = {"ckpt": str(ckpt), "benchmark": "small", "data": {"dir": str(small_set)}, "height": 32, "width": 32,
           "sample_fps": None, "metrics": {"lpips": False}, "output": {"progress": False}}  # fmt: skip
    result = evaluate(cfg, write=False)
    assert [v["video"] for v in result.videos] == ["a.mp4", "sub/b.mkv", "JPEGImages/480p/seq", "g_1.mp4", "g_2.mp4"]
    assert [v["frames"] for v in result.videos] == [34, 34, 34, 17, 17]  # clips of 17, the last completed


def test_the_command_names_a_missing_file_before_loading_anything(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "evaluate.py"), "benchmark=davis", "tokenizer=vidtok_kl_causal_488_4chn",
         f"data.dir={tmp_path}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert run.returncode == 2 and run.stderr.count("\n") == 1
    assert (
        "benchmark=davis: 30 of 30 listed files missing" in run.stderr and "JPEGImages/480p/bike-packing" in run.stderr
    )
