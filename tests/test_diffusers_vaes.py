"""Other tokenizers by the evaluation's protocol: every diffusers video autoencoder family through the one adapter
(its factors, frame rule and output against the class's own ``forward``), loading by folder, pipeline folder and
offline Hub id, and comparisons of several tokenizers (identical inputs, one row each, shared real FVD features,
discrete token statistics, refusals before any video is read, the reports and the command)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers_models import EXPECTED, TINY, build, save
from hubcache import add_repo_to_hub_cache
from standins import save_detector

from vidtok.data.videos import VideoListConfig, list_videos, video_pieces
from vidtok.errors import ConfigError, WeightsNotFoundError
from vidtok.evaluation import EvalConfig, compare, evaluate
from vidtok.evaluation.report import format_summary
from vidtok.inference.diffusers_vaes import DiffusersTokenizer, load_diffusers_tokenizer
from vidtok.io.video import tensor_to_frames, write_video
from vidtok.io.weight_files import save_tokenizer_safetensors
from vidtok.metrics.codes import CodeCounts, code_stats
from vidtok.synthetic import moving_shapes

from conftest import REPO, tiny_tokenizer

CPU = torch.device("cpu")


def _input(frames: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, frames, size, size, generator=gen) * 2 - 1


def _own_forward(key: str, vae, x: torch.Tensor) -> torch.Tensor:
    """The class's own reconstruction (posterior mode), in (B, C, T, H, W)."""
    if key.startswith("vidtok"):
        return vae(x, sample_posterior=False).sample
    out = vae(x).sample
    return out.transpose(1, 2) if key == "allegro" else out


@pytest.mark.parametrize("key", sorted(TINY))
def test_each_family_reads_its_rule_and_matches_its_own_forward(key: str) -> None:
    vae = build(key)
    tok = DiffusersTokenizer(vae, key, "built")
    f, fs, (first, step) = EXPECTED[key]
    c = tok.config
    assert (c.temporal_factor, c.spatial_factor, c.frame_rule.first, c.frame_rule.step) == (f, fs, first, step)
    accepted = [n for n in range(1, 42) if c.frame_rule.accepts(n)][:2]
    with torch.no_grad():
        for n in accepted:  # the frames the rule accepts come back whole, equal to the class's own forward
            x = _input(n)
            recon = tok(x)
            assert recon.shape == x.shape
            assert torch.equal(recon, _own_forward(key, vae, x)[:, :, :n])
            assert tok.decode(tok.encode(x)).shape[2] == n
        if key != "allegro":  # one frame more is not given back as it was (cut short, or padded for Cosmos)
            n = accepted[-1] + 1
            assert tok.decode(tok.encode(_input(n))).shape[2] != n
    assert c.is_discrete == (key == "vidtok_fsq")
    if c.is_discrete:
        x = _input(17)
        with torch.no_grad():
            _, indices = vae.encode(torch.cat([x[:, :, :1]] * 3 + [x], dim=2))
            assert torch.equal(tok.latents_to_indices(tok.encode(x)), indices.long())


def test_loading_by_folder_pipeline_folder_and_offline_hub_id(tmp_path: Path, monkeypatch) -> None:
    folder = save("wan", tmp_path / "wan")
    tok = load_diffusers_tokenizer(str(folder), CPU, slicing=True)
    assert tok.config.family == "AutoencoderKLWan" and tok.config.switches["use_slicing"] is True
    pipeline = tmp_path / "pipe"
    save("cosmos", pipeline / "vae")
    (pipeline / "model_index.json").write_text("{}")
    assert load_diffusers_tokenizer(str(pipeline), CPU).config.family == "AutoencoderKLCosmos"

    cache = tmp_path / "hub"
    files = {f"vae/{p.name}": p for p in (pipeline / "vae").iterdir()}
    add_repo_to_hub_cache(cache, "someone/Tiny-Cosmos-Diffusers", files)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    tok = load_diffusers_tokenizer("someone/Tiny-Cosmos-Diffusers/vae", CPU)
    assert tok.config.temporal_factor == 8 and tok.config.source == "someone/Tiny-Cosmos-Diffusers/vae"
    with pytest.raises(WeightsNotFoundError, match="could not be had from the Hub"):
        load_diffusers_tokenizer("someone/Missing", CPU)
    with pytest.raises(WeightsNotFoundError, match="no such folder"):
        load_diffusers_tokenizer("./not-here", CPU)
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(ConfigError, match="holds a UNet2DModel, not a video autoencoder"):
        load_diffusers_tokenizer(str(tmp_path / "unet"), CPU)


# ---- comparisons -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("compare")
    videos = root / "videos"
    videos.mkdir()
    for i, n in enumerate((30, 26)):
        write_video(videos / f"v{i}.mp4", tensor_to_frames(moving_shapes(n, 40, 56, seed=i)), fps=30)
    save_detector(root / "i3d.pt", 8)
    out = {"root": root, "videos": videos, "detector": root / "i3d.pt"}
    for key in TINY:
        out[key] = save(key, root / key)
    for name in ("vidtok_kl_causal_488_4chn_v1_1", "vidtok_fsq_causal_488_4096", "vidtok_kl_noncausal_488_4chn"):
        tok = tiny_tokenizer(name, ch=4)
        out[name] = save_tokenizer_safetensors(tok.state_dict(), tok.config, root / f"{name}.safetensors")
    return out


def _config(setup: dict, tokenizers: list, **extra) -> dict:
    cfg = {
        "data": {"dir": str(setup["videos"])},
        "height": 32,
        "width": 32,
        "tokenizers": tokenizers,
        "metrics": {"lpips": False, "fvd": True, "detector_path": str(setup["detector"]), "detector_sha256": None,
                    "fvd_frames": 8},
        "output": {"progress": False, "figure": False},
    }  # fmt: skip
    cfg.update(extra)
    return cfg


def test_a_comparison_of_vidtok_and_every_1_plus_kf_family(setup: dict, tmp_path: Path, monkeypatch) -> None:
    kl, fsq = str(setup["vidtok_kl_causal_488_4chn_v1_1"]), str(setup["vidtok_fsq_causal_488_4096"])
    families = ["cogvideox", "wan", "hunyuan", "ltx", "cosmos", "vidtok", "vidtok_fsq"]
    entries = [kl, fsq] + [f"diffusers:{setup[k]}" for k in families]
    calls = []
    from vidtok.metrics.video import FrameScorer

    features = FrameScorer.features
    monkeypatch.setattr(FrameScorer, "features", lambda self, v: calls.append(v.shape[0]) or features(self, v))
    result = compare(_config(setup, entries, output={"dir": str(tmp_path / "out"), "progress": False}))
    assert [r["tokenizer"] for r in result.rows] == [kl, fsq] + [str(setup[k]) for k in families]
    featurized = sum(calls)

    # every tokenizer saw the same frames: VidTok's row is a single evaluation's, to the last bit
    alone = evaluate(_config(setup, [], ckpt=kl), write=False)
    mine = result.results[kl]
    assert mine.summary["psnr"] == alone.summary["psnr"] and mine.summary["fvd"] == alone.summary["fvd"]
    assert [v["psnr"] for v in mine.videos] == [v["psnr"] for v in alone.videos]
    # the real windows' features once for all 9 tokenizers (clips of 17: 2 + 2 windows), the fakes once each
    windows = mine.summary["fvd_clips"]
    assert windows == 4 and featurized == windows + 9 * windows

    rows = {r["tokenizer"]: r for r in result.rows}
    wan, ltx = rows[str(setup["wan"])], rows[str(setup["ltx"])]
    assert (wan["compression"], wan["latent_shape"], wan["compression_ratio"]) == ("4x8x8", "4x5x4x4", 192.0)
    assert (ltx["compression"], ltx["latent_shape"]) == ("8x32x32", "8x3x1x1")
    for r in result.rows:
        assert r["clip_frames"] == 17 and r["videos"] == 2 and r["fvd"] >= 0 and r["encode_fps"] > 0
        assert r["fvd_detector"] == str(setup["detector"]) and len(r["fvd_detector_sha256"]) == 64
        assert r["psnr_std"] >= 0 and r["parameters"] > 0

    # discrete tokens: our FSQ and diffusers' VidTok FSQ, counted over the clips the evaluation encoded
    for name in (fsq, str(setup["vidtok_fsq"])):
        row = rows[name]
        assert row["codes_used"] > 0 and 0 < row["code_usage"] <= 1 and row["perplexity"] >= 1
        assert 0 <= row["change_rate"] <= 1
    # ... equal to counting the indices of those clips directly
    tok = tiny_tokenizer("vidtok_fsq_causal_488_4096", ch=4)
    cut = EvalConfig.from_any(_config(setup, [], ckpt=fsq)).cutting(True)
    counts = CodeCounts(4096)
    for task in list_videos(VideoListConfig(dir=str(setup["videos"]))):
        for piece in video_pieces(task, cut):
            with torch.no_grad():
                counts.add(tok.encode_indices(piece.video))
    tokens = result.results[fsq].summary["tokens"]
    assert tokens["tokens"] == 4 * 5 * 4 * 4  # 4 clips of 5 latent frames of 4 x 4
    assert tokens == code_stats([counts], list(tok.config.regularizer.levels))

    out = tmp_path / "out"
    table = (out / "comparison.txt").read_text()
    assert "FVD detector:" in table and str(setup["detector"]) in table and "perplexity" in table
    with open(out / "comparison.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 9
    with open(out / "videos.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 18
    assert sorted(p.name for p in out.iterdir() if p.is_dir())[:2] == ["01_" + kl.strip("/").replace("/", "_"), "02_"
                                                                     + fsq.strip("/").replace("/", "_")]  # fmt: skip
    assert (out / sorted(p.name for p in out.iterdir() if p.is_dir())[0] / "summary.json").is_file()


def test_families_with_other_rules_take_clips_that_fit_them(setup: dict) -> None:
    kl, noncausal = str(setup["vidtok_kl_causal_488_4chn_v1_1"]), str(setup["vidtok_kl_noncausal_488_4chn"])
    mochi = compare(_config(setup, [kl, f"diffusers:{setup['mochi']}"], clip_frames=13), write=False)
    assert [r["latent_shape"] for r in mochi.rows] == ["4x4x4x4", "4x3x4x4"]
    allegro = compare(_config(setup, [noncausal, f"diffusers:{setup['allegro']}"], clip_frames=24), write=False)
    assert [r["videos"] for r in allegro.rows] == [2, 2] and allegro.rows[1]["latent_shape"] == "4x6x4x4"


def test_a_tokenizer_that_cannot_take_the_protocol_is_refused_before_any_video(setup: dict, monkeypatch) -> None:
    module = sys.modules["vidtok.evaluation.compare"]  # the package's name "compare" is the function
    monkeypatch.setattr(module, "read_video", lambda *a, **k: pytest.fail("a video was read"))
    kl = str(setup["vidtok_kl_causal_488_4chn_v1_1"])
    with pytest.raises(ConfigError, match=r"mochi cannot take this protocol: clip_frames must be 1 \+ k\*6 .*got 17 "
                       r"\(clip_frames=13 or 19 would do\)"):  # fmt: skip
        compare(_config(setup, [kl, {"diffusers": str(setup["mochi"]), "name": "mochi"}]), write=False)
    with pytest.raises(ConfigError, match="allegro cannot take this protocol: clip_frames must be 24 \\+ k\\*16"):
        compare(_config(setup, [{"diffusers": str(setup["allegro"]), "name": "allegro"}]), write=False)
    with pytest.raises(ConfigError, match="height must be exactly 32 .*got 64"):
        compare(_config(setup, [f"diffusers:{setup['allegro']}"], clip_frames=24, height=64), write=False)
    with pytest.raises(ConfigError, match="mode=whole .* has no causal stream"):
        compare(_config(setup, [f"diffusers:{setup['wan']}"], mode="whole"), write=False)
    with pytest.raises(ConfigError, match="wan cannot take this protocol: tile= tiles vidtok's passes"):
        compare(_config(setup, [kl, {"diffusers": str(setup["wan"]), "name": "wan"}], tile=16), write=False)
    with pytest.raises(ConfigError, match="named twice"):
        compare(_config(setup, [kl, kl]), write=False)
    with pytest.raises(ConfigError, match="not both"):
        compare(_config(setup, [kl], ckpt=kl), write=False)


def test_whole_videos_stream_through_each_causal_vidtok_tokenizer(setup: dict) -> None:
    kl = str(setup["vidtok_kl_causal_488_4chn_v1_1"])
    other = {"ckpt": kl, "name": "again"}
    result = compare(_config(setup, [kl, other], mode="whole", chunk_frames=8, trim=False), write=False)
    alone = evaluate(_config(setup, [], ckpt=kl, mode="whole", chunk_frames=8, trim=False), write=False)
    for row in result.rows:  # the same tokenizer twice: the same numbers as one evaluation of it
        assert row["psnr"] == alone.summary["psnr"] and row["fvd"] == alone.summary["fvd"]


def test_two_processes_give_the_rows_of_one(setup: dict, tmp_path: Path) -> None:
    """accelerate launch of the command with 2 CPU processes: every process takes every other video, and the rows
    (quality, FVD, token statistics) are those of one process."""
    import os

    from conftest import accelerate_launch

    kl, fsq = str(setup["vidtok_kl_causal_488_4chn_v1_1"]), str(setup["vidtok_fsq_causal_488_4096"])
    args = [f"tokenizers=[{kl},{fsq},diffusers:{setup['wan']}]", f"data.dir={setup['videos']}",
            "height=32", "width=32", "threads=1", "metrics.lpips=false", "metrics.fvd=true",
            f"metrics.detector_path={setup['detector']}", "metrics.detector_sha256=null", "metrics.fvd_frames=8",
            "output.progress=false", "output.figure=false"]  # fmt: skip
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("WORLD_SIZE", None)
    cmd = accelerate_launch(REPO / "evaluate.py", [*args, f"output.dir={tmp_path / 'two'}"], tmp_path / "h2")
    two = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run([sys.executable, str(REPO / "evaluate.py"), *args, f"output.dir={tmp_path / 'one'}"],
                         env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    rows = [json.loads((tmp_path / n / "comparison.json").read_text())["rows"] for n in ("one", "two")]
    keys = ("tokenizer", "videos", "frames", "psnr", "psnr_std", "ssim", "fvd", "fvd_windows", "codes_used",
            "perplexity", "change_rate")  # fmt: skip
    assert [{k: r[k] for k in keys} for r in rows[0]] == [{k: r[k] for k in keys} for r in rows[1]]
    assert rows[0][1]["codes_used"] > 0


def test_the_command(setup: dict, tmp_path: Path) -> None:
    kl = setup["vidtok_kl_causal_488_4chn_v1_1"]
    out = tmp_path / "report"
    cmd = [sys.executable, str(REPO / "evaluate.py"), f"tokenizers=[{kl},diffusers:{setup['wan']}]",
           f"data.dir={setup['videos']}", "height=32", "width=32", "metrics.lpips=false", f"output.dir={out}",
           "output.progress=false"]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "vidtok comparison of 2 tokenizers" in run.stdout and "4x8x8" in run.stdout
    assert (out / "comparison.png").stat().st_size > 0 and (out / "comparison.csv").exists()
    bad = subprocess.run([*cmd[:2], f"tokenizers=[diffusers:{setup['mochi']}]", *cmd[3:]], capture_output=True,
                         text=True, cwd=tmp_path, timeout=300)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "1 + k*6" in bad.stderr


def test_latent_drift_from_a_reference_tokenizer(setup: dict, tmp_path: Path, monkeypatch) -> None:
    """evaluate.py reference=...: the relative L2 of the evaluated tokenizer's latents of every clip against the
    reference's, 0 for the reference itself; discrete tokenizers add the share of tokens that changed."""
    from vidtok.metrics.drift import LatentDrift

    from conftest import perturb_

    name = "vidtok_kl_causal_488_4chn_v1_1"
    kl = str(setup[name])
    tuned_tok = perturb_(tiny_tokenizer(name, ch=4), std=0.01, seed=7)
    tuned = str(save_tokenizer_safetensors(tuned_tok.state_dict(), tuned_tok.config, tmp_path / "tuned.safetensors"))
    same = evaluate(_config(setup, [], ckpt=kl, reference=kl), write=False).summary["latent_drift"]
    assert same["relative_l2"] == 0.0 and same["per_channel"] == [0.0] * 4 and same["reference"] == kl
    moved = evaluate(_config(setup, [], ckpt=tuned, reference=kl), write=False)
    drift = moved.summary["latent_drift"]
    expected = LatentDrift()
    reference = tiny_tokenizer(name, ch=4)
    cut = EvalConfig.from_any(_config(setup, [], ckpt=kl)).cutting(True)
    for task in list_videos(VideoListConfig(dir=str(setup["videos"]))):
        for piece in video_pieces(task, cut):
            with torch.no_grad():
                expected.update(tuned_tok.encode(piece.video), reference.encode(piece.video))
    assert drift["relative_l2"] == pytest.approx(expected.compute()["relative_l2"], rel=1e-9)
    assert drift["per_channel"] == pytest.approx(expected.compute()["per_channel"], rel=1e-9)
    assert 0 < drift["relative_l2"] < 1
    assert f"latent drift from {kl}: relative L2" in format_summary(moved)

    fsq = str(setup["vidtok_fsq_causal_488_4096"])
    fsq_tok = perturb_(tiny_tokenizer("vidtok_fsq_causal_488_4096", ch=4), std=0.05, seed=3)
    fsq_tuned = save_tokenizer_safetensors(fsq_tok.state_dict(), fsq_tok.config, tmp_path / "fsq_tuned.safetensors")
    result = compare(_config(setup, [fsq, str(fsq_tuned)], reference=fsq), write=False)
    rows = {r["tokenizer"]: r for r in result.rows}
    assert rows[fsq]["latent_drift"] == 0.0 and rows[str(fsq_tuned)]["latent_drift"] > 0
    assert 0 < result.results[str(fsq_tuned)].summary["latent_drift"]["changed_tokens"] <= 1
    alone = evaluate(_config(setup, [], ckpt=fsq), write=False)  # one tokenizer's report has its tokens too
    assert alone.summary["tokens"] == result.results[fsq].summary["tokens"]
    assert "codes used" in format_summary(alone)

    module = sys.modules["vidtok.evaluation.compare"]
    monkeypatch.setattr(module, "read_video", lambda *a, **k: pytest.fail("a video was read"))
    with pytest.raises(ConfigError, match="cannot be compared with .*: clips a multiple of 4 frames vs 1 \\+ k\\*4"):
        compare(_config(setup, [kl], reference=str(setup["vidtok_kl_noncausal_488_4chn"])), write=False)
    with pytest.raises(ConfigError, match="latents continuous vs discrete codes"):  # an FSQ model, a KL reference
        compare(_config(setup, [fsq], reference=kl), write=False)
    with pytest.raises(ConfigError, match="mode=clips"):
        evaluate(_config(setup, [], ckpt=kl, reference=kl, mode="whole"), write=False)
