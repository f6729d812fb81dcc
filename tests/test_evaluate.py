"""evaluate.py and vidtok.evaluation: the paper's protocol checked against an independent evaluation (PyAV decoding,
torchvision's Resize + CenterCrop as the original uses, clips cut by hand, numpy PSNR), whole-video streaming against
one full pass, pad_gen_frames against a hand-written loop, FVD / LPIPS with stand-in networks, reports, bad input,
mismatched checkpoints, and 1 vs 2 processes (accelerate launch of the real command) giving identical numbers."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from standins import StandInI3D, make_vgg_home, save_detector, use_torch_home

from vidtok.accelerator import free_port
from vidtok.data.videos import prefetch
from vidtok.errors import CheckpointError, ConfigError
from vidtok.evaluation import EvalConfig, evaluate
from vidtok.io.video import tensor_to_frames, write_video
from vidtok.io.weight_files import save_tokenizer_safetensors
from vidtok.metrics import LPIPS, frechet_distance, ssim_per_frame
from vidtok.metrics.fvd import preprocess_for_i3d
from vidtok.synthetic import moving_shapes

from conftest import REPO, tiny_tokenizer, training_checkpoint

LENGTHS = {"a.mp4": 40, "b.mp4": 25, "sub/c.mp4": 9}
SIZE = 32


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("eval_videos")
    for i, (name, n) in enumerate(LENGTHS.items()):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        write_video(root / name, tensor_to_frames(moving_shapes(n, 40, 56, seed=i)), fps=30)
    return root


def _save(tok, path: Path) -> Path:
    return save_tokenizer_safetensors(tok.state_dict(), tok.config, path)


@pytest.fixture(scope="module")
def causal(tmp_path_factory: pytest.TempPathFactory):
    tok = tiny_tokenizer("vidtok_kl_causal_488_4chn_v1_1", ch=4)
    return tok, _save(tok, tmp_path_factory.mktemp("ckpt") / "causal.safetensors")


@pytest.fixture(scope="module")
def noncausal(tmp_path_factory: pytest.TempPathFactory):
    tok = tiny_tokenizer("vidtok_kl_noncausal_488_4chn", ch=4)
    return tok, _save(tok, tmp_path_factory.mktemp("ckpt") / "noncausal.safetensors")


def run(ckpt: Path, source: Path | str, **options) -> object:
    """evaluate() at 32x32 without LPIPS, reports off, no progress bar; options override."""
    cfg = {
        "ckpt": str(ckpt),
        "data": {"dir": str(source)},
        "height": SIZE,
        "width": SIZE,
        "metrics": {"lpips": False},
        "output": {"progress": False},
    }
    for key, value in options.items():
        if isinstance(value, dict):
            cfg.setdefault(key, {}).update(value)
        else:
            cfg[key] = value
    return evaluate(cfg, write=cfg["output"].get("dir") is not None)


# ------------------------------------------------------------------------------------- an independent evaluation


def reference_frames(path: Path) -> torch.Tensor:
    """All frames decoded with PyAV, transformed as the original does: torchvision Resize(short side, antialias)
    then CenterCrop on [0, 1] floats, then to [-1, 1]. (3, T, 32, 32)."""
    import av
    from torchvision.transforms import v2

    with av.open(str(path)) as container:
        frames = [torch.from_numpy(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    x = torch.stack(frames).permute(0, 3, 1, 2).float() / 255.0
    x = v2.Compose([v2.Resize(SIZE, antialias=True), v2.CenterCrop((SIZE, SIZE))])(x)
    return (x * 2 - 1).permute(1, 0, 2, 3)


def reference_clips(path: Path, clip: int, last: str = "repeat") -> torch.Tensor:
    """Consecutive clips of ``clip`` frames, the last completed with copies of its final frame. (n, 3, clip, H, W)."""
    x = reference_frames(path)
    out = []
    for start in range(0, x.shape[1], clip):
        part = x[:, start : start + clip]
        if part.shape[1] < clip:
            if last == "drop":
                break
            part = torch.cat([part, part[:, -1:].expand(-1, clip - part.shape[1], -1, -1)], dim=1)
        out.append(part)
    return torch.stack(out)


def numpy_psnr(real: torch.Tensor, fake: torch.Tensor) -> np.ndarray:
    """Per-frame PSNR of (B, 3, T, H, W) videos: 10 log10(1 / MSE) on [0, 1] data, flattened to (B*T,)."""
    x = (real.double().clamp(-1, 1).numpy() + 1) / 2
    y = (fake.double().clamp(-1, 1).numpy() + 1) / 2
    return (10 * np.log10(1.0 / ((x - y) ** 2).mean(axis=(1, 3, 4)))).reshape(-1)


def test_clip_protocol_matches_an_independent_evaluation(videos: Path, causal) -> None:
    tok, ckpt = causal
    result = run(ckpt, videos, batch_size=2)
    assert [v["video"] for v in result.videos] == ["a.mp4", "b.mp4", "sub/c.mp4"]
    assert result.failed == [] and result.summary["videos"] == 3
    all_frames = []
    for v in result.videos:
        clips = reference_clips(videos / v["video"], 17)
        n = LENGTHS[v["video"]]
        assert len(v["clips"]) == clips.shape[0] == math.ceil(n / 17)
        assert v["frames"] == 17 * clips.shape[0] and v["padded_frames"] == 17 * clips.shape[0] - n
        with torch.no_grad():
            recon = tok(clips).clamp(-1, 1)
        want_psnr = numpy_psnr(clips, recon)
        np.testing.assert_allclose(v["per_frame"]["psnr"], want_psnr, atol=2e-3)
        want_ssim = ssim_per_frame(clips, recon).reshape(-1).numpy()
        np.testing.assert_allclose(v["per_frame"]["ssim"], want_ssim, atol=2e-4)
        assert v["per_frame"]["source_frame"][:n] == list(range(n))
        assert v["per_frame"]["source_frame"][n:] == [n - 1] * (v["frames"] - n)  # the repeated last frame
        assert v["psnr"] == pytest.approx(float(want_psnr.mean()), abs=2e-3)
        all_frames += v["per_frame"]["psnr"]
    # the headline number is the mean over every evaluated frame, as the original's np.mean over frames
    assert result.summary["psnr"] == pytest.approx(math.fsum(all_frames) / len(all_frames), abs=1e-12)
    assert result.summary["frames"] == len(all_frames) == 17 * 6
    assert len(result.clips) == 6 and {c["video"] for c in result.clips} == set(LENGTHS)


def test_noncausal_models_take_clips_of_16_and_last_clip_drop(videos: Path, noncausal) -> None:
    _, ckpt = noncausal
    result = run(ckpt, videos)
    assert [v["frames"] for v in result.videos] == [48, 32, 16]
    dropped = run(ckpt, videos, last_clip="drop")
    assert [v["frames"] for v in dropped.videos] == [32, 16]  # c.mp4 (9 frames) has no complete clip
    assert [f["video"] for f in dropped.failed] == ["sub/c.mp4"]
    assert "fewer than one clip of 16" in dropped.failed[0]["reason"]
    # the kept clips are scored as before
    np.testing.assert_array_equal(dropped.videos[0]["per_frame"]["psnr"], result.videos[0]["per_frame"]["psnr"][:32])


def test_whole_videos_stream_like_one_full_pass(videos: Path, causal) -> None:
    tok, ckpt = causal
    result = run(ckpt, videos, mode="whole")
    # the original's long-video protocol: 1 + k*16 frames, videos of <= 16 frames skipped (and listed)
    assert [(v["video"], v["frames"]) for v in result.videos] == [("a.mp4", 33), ("b.mp4", 17)]
    assert [f["video"] for f in result.failed] == ["sub/c.mp4"] and "needs more than" in result.failed[0]["reason"]
    for v in result.videos:
        x = reference_frames(videos / v["video"])[:, : v["frames"]].unsqueeze(0)
        with torch.no_grad():
            full = tok(x).clamp(-1, 1)
        np.testing.assert_allclose(v["per_frame"]["psnr"], numpy_psnr(x, full), atol=2e-3)
        assert v["padded_frames"] == 0
    untrimmed = run(ckpt, videos, mode="whole", trim=False, chunk_frames=8)
    assert [v["frames"] for v in untrimmed.videos] == [40, 25, 9] and untrimmed.failed == []
    assert [len(v["clips"]) for v in untrimmed.videos] == [5, 3, 1]  # chunks of 9 then 8 frames


def test_pad_gen_frames_leads_each_clip_with_generated_frames(videos: Path, causal) -> None:
    tok, ckpt = causal
    result = run(ckpt, videos, pad_gen_frames=True, data={"limit": 1})
    assert [v["video"] for v in result.videos] == ["a.mp4"]
    clips = reference_clips(videos / "a.mp4", 17)
    outs, context = [], None
    with torch.no_grad():
        for clip in clips.split(1):
            out = (tok(clip) if context is None else tok.reconstruct_after(clip, context)).clamp(-1, 1)
            context = out[:, :, -3:]
            outs.append(out)
    want = numpy_psnr(clips, torch.cat(outs))
    np.testing.assert_allclose(result.videos[0]["per_frame"]["psnr"], want, atol=2e-3)
    plain = run(ckpt, videos, data={"limit": 1})
    first, rest = slice(0, 17), slice(17, None)
    # the first clip is the plain run's (to float32 rounding: two runs of the same pass can differ in the last bit,
    # seen once as 1.7e-7 relative); the later ones are not
    np.testing.assert_allclose(
        result.videos[0]["per_frame"]["psnr"][first], plain.videos[0]["per_frame"]["psnr"][first], rtol=1e-6
    )
    assert not np.allclose(result.videos[0]["per_frame"]["psnr"][rest], plain.videos[0]["per_frame"]["psnr"][rest])


# ------------------------------------------------------------------------------------- FVD and LPIPS


def test_fvd_and_lpips_end_to_end_with_stand_in_networks(
    videos: Path, causal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tok, ckpt = causal
    use_torch_home(monkeypatch, make_vgg_home(tmp_path / "torch_home"))
    detector_path = tmp_path / "i3d_stand_in.pt"
    sha = save_detector(detector_path, frames=16)
    metrics = {"lpips": True, "fvd": True, "detector_path": str(detector_path), "detector_sha256": sha}
    result = run(ckpt, videos, metrics=metrics)

    detector, lpips = StandInI3D(frames=16), LPIPS()
    real_feats, fake_feats, lpips_frames = [], [], []
    with torch.no_grad():
        for name in LENGTHS:
            clips = reference_clips(videos / name, 17)
            recon = tok(clips).clamp(-1, 1)
            real_feats.append(detector(preprocess_for_i3d(clips, 16), False, False, True).double())
            fake_feats.append(detector(preprocess_for_i3d(recon, 16), False, False, True).double())
            lpips_frames.append(lpips.per_frame(clips, recon).reshape(-1))
    real, fake = torch.cat(real_feats).numpy(), torch.cat(fake_feats).numpy()
    want = frechet_distance(real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False))
    assert result.summary["fvd_clips"] == 6
    assert result.summary["fvd"] == pytest.approx(want, rel=1e-4, abs=1e-6)
    assert result.summary["fvd"] > 0
    assert result.summary["lpips"] == pytest.approx(torch.cat(lpips_frames).double().mean().item(), abs=1e-5)

    with pytest.raises(ConfigError, match="FVD takes the first 16 frames of each clip; clips have 9"):
        run(ckpt, videos, clip_frames=9, metrics=metrics)


# ------------------------------------------------------------------------------------- reports and bad input


def test_reports_figure_and_side_by_side_videos(videos: Path, causal, tmp_path: Path) -> None:
    import av

    _, ckpt = causal
    out = tmp_path / "report"
    result = run(ckpt, videos, output={"dir": str(out), "reconstructions": True, "side_by_side": True})
    names = {p.name for p in out.iterdir()}
    assert {
        "summary.json",
        "summary.txt",
        "config.yaml",
        "videos.csv",
        "videos.json",
        "clips.csv",
        "clips.json",
    } <= names
    assert {"clips.json", "frames.csv", "failed.csv", "metrics.png", "reconstructions"} <= names
    assert (out / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    summary = json.loads((out / "summary.json").read_text())
    assert summary["summary"]["psnr"] == result.summary["psnr"]
    assert summary["tokenizer"]["ckpt_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert summary["tokenizer"]["name"] == "vidtok_kl_causal_488_4chn_v1_1" and summary["tokenizer"]["causal"]
    assert summary["config"]["sample_fps"] == 30 and "clips of 17 frames" in summary["protocol"]

    with open(out / "videos.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["video"] for r in rows] == list(LENGTHS)
    assert [float(r["psnr"]) for r in rows] == [v["psnr"] for v in result.videos]
    with open(out / "frames.csv") as fh:
        frames = list(csv.DictReader(fh))
    assert len(frames) == result.summary["frames"]
    assert len(json.loads((out / "clips.json").read_text())) == 6
    assert "all frames" in (out / "summary.txt").read_text()

    for name, n in LENGTHS.items():  # the copies completing a last clip are not written
        path = out / "reconstructions" / name  # the folders of the listing are kept
        with av.open(str(path)) as container:
            frames = list(container.decode(video=0))
        assert len(frames) == n and (frames[0].height, frames[0].width) == (SIZE, 2 * SIZE)


def test_unreadable_videos_are_reported_not_dropped(videos: Path, causal, tmp_path: Path) -> None:
    _, ckpt = causal
    data = tmp_path / "mixed"
    data.mkdir()
    shutil.copy(videos / "a.mp4", data / "a.mp4")
    (data / "b_broken.mp4").write_bytes(b"this is not a video")
    good = (videos / "b.mp4").read_bytes()
    (data / "c_truncated.mp4").write_bytes(good[: len(good) // 2])
    (data / "d_empty.mp4").write_bytes(b"")
    out = tmp_path / "out"
    result = run(ckpt, data, output={"dir": str(out)})
    assert [v["video"] for v in result.videos] == ["a.mp4"]
    failed = {f["video"]: f["reason"] for f in result.failed}
    assert set(failed) == {"b_broken.mp4", "c_truncated.mp4", "d_empty.mp4"}
    assert "empty" in failed["d_empty.mp4"] and all(failed.values())
    assert result.summary["videos"] == 1 and result.summary["failed"] == 3
    text = (out / "summary.txt").read_text()
    assert all(f"NOT EVALUATED {name}" in text for name in failed)
    with open(out / "failed.csv") as fh:
        assert [r["video"] for r in csv.DictReader(fh)] == ["b_broken.mp4", "c_truncated.mp4", "d_empty.mp4"]


def test_a_checkpoint_that_does_not_match_the_tokenizer_is_refused(videos: Path, causal, tmp_path: Path) -> None:
    tok, ckpt = causal
    # a vidtok checkpoint carries its config: asking for another tokenizer names the differing keys
    with pytest.raises(CheckpointError, match=r"differs from the requested 'vidtok_kl_noncausal_488_4chn'.*causal"):
        run(ckpt, videos, tokenizer="vidtok_kl_noncausal_488_4chn", overrides=["model.ch=4"])
    # an official file name names its model: v1.0 and v1.1 have the same keys and shapes, so only the name tells
    official = tmp_path / "vidtok_kl_causal_488_4chn.ckpt"
    torch.save({"state_dict": {k: v.clone() for k, v in tok.state_dict().items()}}, official)
    with pytest.raises(CheckpointError, match="official checkpoint of 'vidtok_kl_causal_488_4chn', not of"):
        run(official, videos, tokenizer="vidtok_kl_causal_488_4chn_v1_1", overrides=["model.ch=4"])
    # a bare state dict of another width: the mis-shaped keys are listed
    bare = tmp_path / "weights.pt"
    torch.save(tok.state_dict(), bare)
    with pytest.raises(CheckpointError, match="shape"):
        run(bare, videos, tokenizer="vidtok_kl_causal_488_4chn_v1_1", overrides=["model.ch=8"])


def test_config_errors_name_the_problem(videos: Path, causal, noncausal) -> None:
    with pytest.raises(ConfigError, match="mode=whole streams a whole video through a causal model"):
        run(noncausal[1], videos, mode="whole")
    with pytest.raises(ConfigError, match="pad_gen_frames"):
        run(noncausal[1], videos, pad_gen_frames=True)
    with pytest.raises(ConfigError, match="clip_frames must be 1 \\+ k\\*4"):
        run(causal[1], videos, clip_frames=16)
    with pytest.raises(ConfigError, match="unknown option"):
        EvalConfig.from_any({"ckpt": "x", "data": {"dir": "y", "path": "z"}})
    with pytest.raises(ConfigError, match="data.dir must name the videos"):
        EvalConfig.from_any({"ckpt": "x"})
    with pytest.raises(ConfigError, match="height must be a multiple of 8"):
        run(causal[1], videos, height=36)


def test_csv_layout_shards_and_limit_list_the_same_videos(videos: Path, causal, tmp_path: Path) -> None:
    from vidtok.data import folder_records, write_shards

    _, ckpt = causal
    folder = run(ckpt, videos)
    meta = tmp_path / "meta.csv"
    meta.write_text("videos,caption\nsub/c.mp4,x\na.mp4,y\n")
    by_csv = run(ckpt, videos, data={"meta": str(meta)})
    assert [v["video"] for v in by_csv.videos] == ["sub/c.mp4", "a.mp4"]
    assert by_csv.videos[1]["per_frame"]["psnr"] == folder.videos[0]["per_frame"]["psnr"]
    write_shards(folder_records(videos), str(tmp_path / "shards" / "test-%03d.tar"), max_count=2, progress=False)
    shards = run(ckpt, str(tmp_path / "shards" / "test-{000..001}.tar"), data={"limit": 2})
    assert [v["per_frame"]["psnr"] for v in shards.videos] == [v["per_frame"]["psnr"] for v in folder.videos[:2]]


def test_prefetch_keeps_order_and_reraises() -> None:
    def items():
        yield from range(5)
        raise ValueError("broken at 5")

    got = []
    with pytest.raises(ValueError, match="broken at 5"):
        for item in prefetch(items(), depth=2):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]
    early = prefetch(iter(range(100)), depth=1)
    assert next(early) == 0
    early.close()  # stops the reader thread without draining the rest


# ------------------------------------------------------------------------------------- the command, 1 vs 2 processes


@pytest.mark.slow
def test_evaluate_command_gives_identical_results_with_one_and_two_processes(
    videos: Path, causal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, ckpt = causal
    home = make_vgg_home(tmp_path / "torch_home")
    detector_path = tmp_path / "i3d_stand_in.pt"
    sha = save_detector(detector_path, frames=16)
    data = tmp_path / "data"
    shutil.copytree(videos, data)
    shutil.copy(videos / "b.mp4", data / "e.mp4")
    (data / "d_broken.mp4").write_bytes(b"not a video")
    args = [
        f"ckpt={ckpt}", f"data.dir={data}", f"height={SIZE}", f"width={SIZE}", "threads=1", "output.progress=false",
        "metrics.fvd=true", f"metrics.detector_path={detector_path}", f"metrics.detector_sha256={sha}",
    ]  # fmt: skip
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), TORCH_HOME=str(home))
    env.pop("WORLD_SIZE", None)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    launch += ["--main_process_port", str(free_port())]
    two = subprocess.run(
        [*launch, str(REPO / "evaluate.py"), *args, f"output.dir={tmp_path / 'two'}", f"hydra.run.dir={tmp_path}/h2"],
        env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    assert "all frames" in two.stdout and "NOT EVALUATED d_broken.mp4" in two.stdout

    use_torch_home(monkeypatch, home)
    threads = torch.get_num_threads()
    try:
        one = evaluate(
            {
                "ckpt": str(ckpt),
                "data": {"dir": str(data)},
                "height": SIZE,
                "width": SIZE,
                "threads": 1,
                "metrics": {"fvd": True, "detector_path": str(detector_path), "detector_sha256": sha},
                "output": {"progress": False, "dir": str(tmp_path / "one")},
            }
        )
    finally:
        torch.set_num_threads(threads)
    s_one, s_two = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("one", "two"))
    assert s_two["summary"]["processes"] == 2 and s_one["summary"]["processes"] == 1
    for key in ("videos", "failed", "clips", "frames", "psnr", "ssim", "lpips", "fvd", "fvd_clips"):
        assert s_one["summary"][key] == s_two["summary"][key], key
    assert s_one["failed"] == s_two["failed"] and s_two["failed"][0]["video"] == "d_broken.mp4"
    v_one, v_two = (json.loads((tmp_path / d / "videos.json").read_text()) for d in ("one", "two"))
    for a, b in zip(v_one, v_two, strict=True):
        assert a["per_frame"] == b["per_frame"] and a["video"] == b["video"]
    assert one.summary["fvd"] == s_two["summary"]["fvd"]


@pytest.mark.slow
def test_evaluate_command_refuses_a_mismatched_checkpoint_in_one_line(videos: Path, causal, tmp_path: Path) -> None:
    _, ckpt = causal
    cmd = [
        sys.executable, str(REPO / "evaluate.py"), f"ckpt={ckpt}", f"data.dir={videos}",
        "tokenizer=vidtok_fsq_causal_488_4096", "model.ch=4", f"hydra.run.dir={tmp_path}/h",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("evaluate: error:") and "regularizer.kind: 'fsq' != 'kl'" in last


@pytest.mark.slow
def test_evaluate_command_takes_a_training_checkpoint_folder(videos: Path, causal, tmp_path: Path) -> None:
    """ckpt= names the folder the training log prints; the report identifies the file read in it by its SHA-256.
    A folder holding no tokenizer is refused in one line."""
    tok, _ = causal
    step = training_checkpoint(tok, tmp_path / "run")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    args = [f"data.dir={videos}", "data.limit=1", f"height={SIZE}", f"width={SIZE}", "metrics.lpips=false"]

    def evaluate_py(ckpt: Path, name: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, str(REPO / "evaluate.py"), f"ckpt={ckpt}", *args, f"output.dir={tmp_path / name}"]
        cmd.append(f"hydra.run.dir={tmp_path}/h_{name}")
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)

    result = evaluate_py(step, "eval")
    assert result.returncode == 0, result.stderr[-3000:]
    identity = json.loads((tmp_path / "eval" / "summary.json").read_text())["tokenizer"]
    weights = step / "tokenizer.safetensors"
    assert identity["ckpt"] == str(weights.resolve())
    assert identity["ckpt_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    (tmp_path / "empty").mkdir()
    refused = evaluate_py(tmp_path / "empty", "never")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("evaluate: error:") and f"{tmp_path / 'empty'} holds no tokenizer: expected" in last


def test_sample_posterior_draws_per_video_like_the_original_script(videos: Path, causal) -> None:
    tok, ckpt = causal
    drawn = run(ckpt, videos, sample_posterior=True, seed=7, data={"limit": 2})
    again = run(ckpt, videos, sample_posterior=True, seed=7, data={"limit": 2}, batch_size=4)
    mean = run(ckpt, videos, data={"limit": 2})
    assert [v["per_frame"]["psnr"] for v in drawn.videos] == [v["per_frame"]["psnr"] for v in again.videos]
    assert drawn.videos[0]["per_frame"]["psnr"] != mean.videos[0]["per_frame"]["psnr"]
    for v in drawn.videos:  # one generator per video, seeded with the seed and the video's position
        clips = reference_clips(videos / v["video"], 17)
        gen = torch.Generator().manual_seed(7 * 1_000_003 + v["order"])
        with torch.no_grad():
            recon = tok.decode(tok.encode(clips, sample=True, generator=gen)).clamp(-1, 1)
        np.testing.assert_allclose(v["per_frame"]["psnr"], numpy_psnr(clips, recon), atol=2e-3)
    fsq = tiny_tokenizer("vidtok_fsq_causal_488_4096", ch=4)
    with pytest.raises(ConfigError, match="sample_posterior draws KL latents"):
        evaluate({"ckpt": "fsq", "data": {"dir": str(videos)}, "sample_posterior": True}, tokenizer=fsq, write=False)


def test_eval_config_composes_tokenizer_presets_and_groups(capsys) -> None:
    from vidtok.composition import compose_conf
    from vidtok.evaluation import evaluate_from_hydra

    def compose(*overrides: str):
        return compose_conf("eval", list(overrides), "the eval config")

    cfg = EvalConfig.from_any(
        compose("ckpt=m.ckpt", "data.dir=v", "tokenizer=vidtok_fsq_causal_488_32768_v1_1", "model.ch=4")
    )
    assert cfg.tokenizer is None and cfg.tokenizer_config["name"] == "vidtok_fsq_causal_488_32768_v1_1"
    assert cfg.tokenizer_config["model"]["ch"] == 4 and cfg.tokenizer_config["regularizer"]["kind"] == "fsq"
    grouped = EvalConfig.from_any(
        compose("ckpt=m", "data.dir=v", "model=noncausal", "compression=41616", "regularizer=kl")
    )
    assert grouped.tokenizer_config["compression"]["spatial"] == 16 and "name" not in grouped.tokenizer_config
    plain = EvalConfig.from_any(compose("ckpt=m", "data.dir=v"))
    assert plain.tokenizer_config is None and plain.metrics.detector_sha256 is not None  # "default": the I3D hash
    assert (plain.height, plain.width, plain.sample_fps, plain.chunk_frames, plain.mode) == (256, 256, 30, 16, "clips")
    with pytest.raises(SystemExit) as stop:
        evaluate_from_hydra(compose("data.dir=v"))
    assert stop.value.code == 2
    assert capsys.readouterr().err.startswith(
        "evaluate: error: ckpt must name the checkpoint to evaluate, or tokenizer="
    )


def test_whole_mode_fvd_windows_and_tiling(videos: Path, causal, tmp_path: Path) -> None:
    tok, ckpt = causal
    detector_path = tmp_path / "i3d_stand_in.pt"
    sha = save_detector(detector_path, frames=16)
    metrics = {"fvd": True, "detector_path": str(detector_path), "detector_sha256": sha}
    result = run(ckpt, videos, mode="whole", trim=False, metrics=metrics)
    # consecutive 16-frame windows of each whole video: 40 -> 2, 25 -> 1, 9 -> 0
    assert [v["fvd_windows"] for v in result.videos] == [2, 1, 0] and result.summary["fvd_clips"] == 3
    detector = StandInI3D(frames=16)
    real, fake = [], []
    with torch.no_grad():
        for name in LENGTHS:
            x = reference_frames(videos / name).unsqueeze(0)
            full = tok(x).clamp(-1, 1)
            for start in range(0, x.shape[2] - 15, 16):
                real.append(detector(preprocess_for_i3d(x[:, :, start : start + 16], 16), False, False, True))
                fake.append(detector(preprocess_for_i3d(full[:, :, start : start + 16], 16), False, False, True))
    r, f = torch.cat(real).double().numpy(), torch.cat(fake).double().numpy()
    want = frechet_distance(r.mean(0), np.cov(r, rowvar=False), f.mean(0), np.cov(f, rowvar=False))
    assert result.summary["fvd"] == pytest.approx(want, rel=1e-3, abs=1e-5)

    tiled = run(ckpt, videos, tile=16, tile_overlap=8, data={"limit": 1})
    clips = reference_clips(videos / "a.mp4", 17)
    with torch.no_grad():
        recon = tok(clips, tile=16, tile_overlap=8).clamp(-1, 1)
    np.testing.assert_allclose(tiled.videos[0]["per_frame"]["psnr"], numpy_psnr(clips, recon), atol=2e-3)


def test_a_stream_that_changes_frame_size_is_evaluated(causal, tmp_path: Path) -> None:
    _, ckpt = causal
    parts = []
    for i, (h, w) in enumerate([(32, 32), (48, 48)]):  # (ffmpeg scales some other size changes itself)
        path = tmp_path / f"part{i}.ts"
        write_video(path, tensor_to_frames(moving_shapes(12, h, w, seed=i)), fps=30)
        parts.append(path.read_bytes())
    data = tmp_path / "data"
    data.mkdir()
    (data / "joined.ts").write_bytes(b"".join(parts))  # MPEG-TS segments concatenate into one valid stream
    result = run(ckpt, data)
    assert result.failed == [] and result.videos[0]["frames"] == 34  # 24 frames: clips of 17 + 7 (+10 copies)


def test_shards_are_dealt_out_whole_and_keys_name_their_shard(videos: Path, tmp_path: Path) -> None:
    from vidtok.data import folder_records, write_shards
    from vidtok.data.videos import SHARD_STRIDE, list_videos
    from vidtok.evaluation.config import EvalDataConfig

    write_shards(folder_records(videos), str(tmp_path / "test-%03d.tar"), max_count=2, progress=False)
    data = EvalDataConfig(dir=str(tmp_path / "test-{000..001}.tar"))
    ranks = [list(list_videos(data, rank, 2)) for rank in (0, 1)]
    assert [t.key for t in ranks[0]] == ["test-000/a", "test-000/b"] and [t.key for t in ranks[1]] == ["test-001/sub/c"]
    assert [t.order for t in ranks[0] + ranks[1]] == [0, 1, SHARD_STRIDE]
    limited = EvalDataConfig(dir=data.dir, limit=2)
    assert [[t.key for t in list_videos(limited, rank, 2)] for rank in (0, 1)] == [["test-000/a"], ["test-000/b"]]


def test_a_tokenizer_passed_from_python_is_identified_by_its_weights(videos: Path, causal) -> None:
    tok, _ = causal
    cfg = {"data": {"dir": str(videos), "limit": 1}, "height": SIZE, "width": SIZE, "metrics": {"lpips": False}}
    result = evaluate(dict(cfg, output={"progress": False}), tokenizer=tok, write=False)
    assert result.tokenizer["ckpt"] is None and len(result.tokenizer["weights_sha256"]) == 64
    with pytest.raises(ConfigError, match="ckpt must name the checkpoint"):
        evaluate(cfg, write=False)
