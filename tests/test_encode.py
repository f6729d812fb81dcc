"""encode.py / vidtok.encoding: datasets into latent or FSQ index shards, resumable exactly once."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch
from test_cli import run_vidtok
from test_commands import write_clip

from vidtok.encoding import encode_dataset
from vidtok.errors import ConfigError
from vidtok.inference.pipeline import ReadSettings, encode_video
from vidtok.io.token_files import load_tokens, tokens_from_bytes

from conftest import accelerate_launch, kill_process_tree, tiny_tokenizer, training_checkpoint

REPO = Path(__file__).resolve().parents[1]
KL_V11 = "vidtok_kl_causal_488_4chn_v1_1"
FSQ = "vidtok_fsq_causal_488_4096"
NONCAUSAL = "vidtok_kl_noncausal_488_4chn"


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Five videos of 21 to 45 frames in two folders, one broken file and one empty file."""
    root = tmp_path_factory.mktemp("dataset")
    (root / "b").mkdir()
    for i, frames in enumerate((21, 33, 45, 25)):
        write_clip(root / ("b" if i % 2 else "") / f"v{i}.mp4", frames=frames, height=32, width=40)
    write_clip(root / "b" / "v.4.mp4", frames=17, height=32, width=40)
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(500))
    (root / "empty.mp4").write_bytes(b"")
    return root


def _config(weights, videos, out, **extra) -> dict:
    cfg = {
        "ckpt": str(weights[extra.pop("name", KL_V11)]),
        "data": {"dir": str(videos)},
        "height": 32,
        "width": 32,
        "sample_fps": None,
        "threads": 1,
        "output": {"dir": str(out), "progress": False, **extra.pop("output", {})},
    }
    cfg.update(extra)
    return cfg


def _samples(out: Path) -> dict[str, dict]:
    """Every sample of every shard: key -> {"tokens": TokenFile, "json": dict}; a key seen twice fails."""
    found: dict[str, dict] = {}
    for shard in sorted(out.glob("part-*.tar")):
        with tarfile.open(shard) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        for name, data in members.items():
            key, ext = name.split(".", 1)
            entry = found.setdefault(key, {"shard": shard.name})
            if ext == "safetensors":
                assert "tokens" not in entry, f"{key} written twice"
                entry["tokens"] = tokens_from_bytes(data, name)
            else:
                entry["json"] = json.loads(data)
    return found


def test_clips_mode_writes_every_clip_once_with_a_manifest(weights, videos, tmp_path) -> None:
    out = tmp_path / "out"
    result = encode_dataset(_config(weights, videos, out, batch_size=2, output={"max_count": 3}))
    samples = _samples(out)
    # 21, 33, 45, 25, 17 frames -> 1, 1, 2, 1, 1 clips of 17 frames (last_clip=drop)
    assert len(samples) == result.samples == 6
    assert {f["name"].rsplit("/", 1)[-1] for f in result.failed} == {"broken.mp4", "empty.mp4"}
    assert all(f["reason"] for f in result.failed)
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(m["key"] for m in manifest) == sorted(samples)
    assert all(samples[m["key"]]["shard"] == m["shard"] for m in manifest)
    assert len(list(out.glob("part-*.tar"))) >= 2  # max_count=3 over 6 samples, videos kept whole
    run = json.loads((out / "run.json").read_text())
    assert run["identity"]["ckpt_sha256"] and run["job"]["config"]["name"] == KL_V11
    v2 = [m for m in manifest if m["video"] == "v2.mp4"]
    assert [(m["first_frame"], m["last_frame"], m["frames"]) for m in v2] == [(0, 16, 17), (17, 33, 17)]
    assert samples["v2_mp4/00001"]["tokens"].data.shape == (1, 4, 5, 4, 4)


def test_whole_mode_equals_vidtok_encode_of_the_same_video(weights, videos, tmp_path) -> None:
    out = tmp_path / "out"
    encode_dataset(_config(weights, videos, out, mode="whole", chunk_frames=8))
    samples = _samples(out)
    tokens = samples["b/v1_mp4"]["tokens"]
    tok = tiny_tokenizer(KL_V11, ch=8)
    reference = encode_video(tok, videos / "b" / "v1.mp4", reading=ReadSettings(height=32, width=32))
    assert tokens.frames == reference.frames == 33
    assert (tokens.data - reference.data).abs().max() < 1e-4
    # an extracted member is a token file that `vidtok decode` turns back into video
    member = tmp_path / "v1.safetensors"
    with tarfile.open(out / samples["b/v1_mp4"]["shard"]) as tar:
        member.write_bytes(tar.extractfile("b/v1_mp4.safetensors").read())
    assert load_tokens(member).frames == 33
    run = run_vidtok("decode", str(member), str(tmp_path / "v1.mp4"), "--ckpt", str(weights[KL_V11]), "--quiet")
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("name, clip", [(KL_V11, 17), (NONCAUSAL, 16)])
def test_padded_last_clips_are_token_files_that_load(name: str, clip: int, weights, videos, tmp_path) -> None:
    """last_clip=repeat: a last clip completed with copies holds the latents of the whole clip for fewer frames.
    Its token file records the clip length, so load_tokens (what `vidtok decode` reads) takes it."""
    out = tmp_path / "out"
    encode_dataset(_config(weights, videos, out, name=name, last_clip="repeat"))
    samples = _samples(out)
    padded = {key: s for key, s in samples.items() if s["json"]["padded_frames"]}
    assert padded and all(s["tokens"].clip_frames == clip for s in samples.values())
    key, sample = sorted(padded.items())[0]
    member = tmp_path / "member.safetensors"
    with tarfile.open(out / sample["shard"]) as tar:
        member.write_bytes(tar.extractfile(f"{key}.safetensors").read())
    loaded = load_tokens(member)
    assert loaded.frames == clip - sample["json"]["padded_frames"] < clip
    assert loaded.latent_frames == tiny_tokenizer(name).config.latent_frames(clip)


def test_fsq_indices_in_the_smallest_integer_type(weights, videos, tmp_path) -> None:
    out = tmp_path / "out"
    encode_dataset(_config(weights, videos, out, name=FSQ, output={"indices": True}))
    with tarfile.open(next(out.glob("part-*.tar"))) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(".safetensors"))
        header = tar.extractfile(member).read()
    length = int.from_bytes(header[:8], "little")
    assert json.loads(header[8 : 8 + length])["indices"]["dtype"] == "I16"  # codebook 4096


def test_refusals_before_any_video_is_read(weights, videos, tmp_path) -> None:
    with pytest.raises(ConfigError, match="output.indices stores FSQ indices"):
        encode_dataset(_config(weights, videos, tmp_path / "a", output={"indices": True}))
    with pytest.raises(ConfigError, match="non-causal"):
        encode_dataset(_config(weights, videos, tmp_path / "b", name=NONCAUSAL, mode="whole"))
    with pytest.raises(ConfigError, match="ckpt must name the checkpoint to encode"):
        encode_dataset({"data": {"dir": str(videos)}, "output": {"dir": str(tmp_path / "c")}})
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    # an output folder of another job is refused, not mixed
    encode_dataset(_config(weights, videos, tmp_path / "d", data={"dir": str(videos), "limit": 1}))
    with pytest.raises(ConfigError, match="holds samples of another job"):
        encode_dataset(_config(weights, videos, tmp_path / "d", data={"dir": str(videos), "limit": 1}, height=24))


def test_ckpt_takes_a_training_checkpoint_folder_identified_by_the_file_read(weights, videos, tmp_path) -> None:
    step = training_checkpoint(tiny_tokenizer(KL_V11, ch=8), tmp_path / "run")
    first = {"dir": str(videos), "limit": 1}
    out = tmp_path / "out"
    result = encode_dataset(dict(_config(weights, videos, out, data=first), ckpt=str(step)))
    weights_file = step / "tokenizer.safetensors"
    assert result.samples == 1 and result.identity["ckpt"] == str(weights_file.resolve())
    assert result.identity["ckpt_sha256"] == hashlib.sha256(weights_file.read_bytes()).hexdigest()
    # the same weights named by their file are the same job (compared by SHA-256): nothing is encoded twice
    again = encode_dataset(dict(_config(weights, videos, out, data=first), ckpt=str(weights_file)))
    assert again.samples == 1 and again.videos == 0 and again.skipped_done == 1


def test_a_hand_edited_index_file_is_named_not_a_traceback(weights, videos, tmp_path) -> None:
    out = tmp_path / "out"
    encode_dataset(_config(weights, videos, out, data={"dir": str(videos), "limit": 2}))
    index = sorted((out / "index").glob("part-*.json"))[0]
    index.write_text(index.read_text()[:10])
    with pytest.raises(ConfigError, match=rf"index file {index} is unreadable .*remove it and its shard"):
        encode_dataset(_config(weights, videos, out, data={"dir": str(videos), "limit": 2}))


def test_sigkill_then_the_same_command_gives_every_sample_once(weights, videos, tmp_path) -> None:
    """Kill the real command once its first shard is committed, run it again: every sample once."""
    data = tmp_path / "data"  # 20 videos, one shard per sample: a run long enough for the kill to land mid-way
    data.mkdir()
    for copy in range(4):
        for path in sorted(videos.rglob("v*.mp4")):
            (data / f"{copy}{path.name}").write_bytes(path.read_bytes())
    expected = 4 * len(_samples_of_one_copy(weights, videos, tmp_path / "one"))
    out = tmp_path / "out"
    args = [sys.executable, str(REPO / "encode.py"), f"ckpt={weights[KL_V11]}", f"data.dir={data}"]
    args += [f"output.dir={out}", "height=32", "width=32", "sample_fps=null", "output.max_count=1", "threads=1"]
    args += ["batch_size=1", "output.progress=false", f"hydra.run.dir={tmp_path / 'hydra'}"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    killed = False
    for _ in range(5):
        shutil.rmtree(out, ignore_errors=True)  # a run that ended before the kill: try again from nothing
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            if list((out / "index").glob("part-*.json")):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.01)
        proc.wait()
        killed = proc.returncode == -signal.SIGKILL and len(list(out.glob("part-*.tar"))) < expected
        if killed:
            break
    assert killed, "the run ended before a kill could land between its shards"
    assert not (out / "manifest.jsonl").exists()
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "done before" in done.stdout
    samples = _samples(out)
    assert len(samples) == expected
    assert not list(out.glob(".*tmp*"))
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(m["key"] for m in manifest) == sorted(samples)
    # the statistics of the killed and restarted run are those of an uninterrupted one, byte for byte
    whole = tmp_path / "whole"
    encode_dataset(_config(weights, data, whole, output={"max_count": 1}, batch_size=1))
    assert (out / "stats.json").read_bytes() == (whole / "stats.json").read_bytes()


def _samples_of_one_copy(weights, videos, out: Path) -> dict[str, dict]:
    """The samples the readable videos of ``videos`` give (encoded in this process)."""
    encode_dataset(_config(weights, videos, out, output={"max_count": 1}))
    return _samples(out)


@pytest.mark.slow
def test_two_processes_killed_and_restarted_equal_one_process(weights, videos, tmp_path) -> None:
    """`accelerate launch` with 2 processes, SIGKILLed after a commit and run again, writes the samples that one
    process writes, each once, with the same tensors."""
    one = tmp_path / "one"
    encode_dataset(_config(weights, videos, one, output={"max_count": 1}))
    two = tmp_path / "two"
    args = [f"ckpt={weights[KL_V11]}", f"data.dir={videos}", f"output.dir={two}", "height=32", "width=32"]
    args += ["sample_fps=null", "output.max_count=1", "threads=1", "batch_size=1", "output.progress=false"]
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("WORLD_SIZE", None)

    def launch() -> list[str]:
        return accelerate_launch(REPO / "encode.py", args, tmp_path / "hydra")

    proc = subprocess.Popen(launch(), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    deadline, killed = time.monotonic() + 300, False
    while proc.poll() is None and time.monotonic() < deadline:
        if list((two / "index").glob("part-*.json")):
            kill_process_tree(proc.pid)  # the launcher and both processes
            killed = True
            break
        time.sleep(0.02)
    proc.wait()
    assert killed and not (two / "manifest.jsonl").exists(), "the run ended before the kill"
    done = subprocess.run(launch(), env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = _samples(one), _samples(two)
    assert sorted(a) == sorted(b)
    assert {s["shard"].split("-")[1] for s in b.values()} == {"r00000", "r00001"}  # each process its own shards
    for key in a:
        assert torch.allclose(a[key]["tokens"].data, b[key]["tokens"].data, atol=1e-5), key
        assert a[key]["json"] == b[key]["json"]
    # statistics merged over both processes' shards: those of the one process (the tensors agree to float rounding)
    sa, sb = (json.loads((d / "stats.json").read_text()) for d in (one, two))
    assert (sa["count"], sa["videos"], sa["samples"]) == (sb["count"], sb["videos"], sb["samples"])
    for field in ("mean", "std", "min", "max"):
        assert sa[field] == pytest.approx(sb[field], rel=1e-5, abs=1e-6), field


def test_latent_dataset_reads_every_sample_once_over_workers(weights, videos, tmp_path) -> None:
    from vidtok.data import LatentDataset

    out = tmp_path / "out"
    encode_dataset(_config(weights, videos, out, output={"max_count": 1}, workers=2))  # decoded in 2 workers
    written = _samples(out)
    loader = torch.utils.data.DataLoader(LatentDataset(out, shuffle=4, seed=1), batch_size=None, num_workers=2)
    seen = list(loader)
    assert sorted(s["key"] for s in seen) == sorted(written)
    for sample in seen:
        assert torch.equal(sample["latents"], written[sample["key"]]["tokens"].data)
        assert sample["meta"] == written[sample["key"]]["json"] and sample["tokens"].frames == 17
    in_order = [s["key"] for s in LatentDataset(out)]
    assert in_order == [json.loads(line)["key"] for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_a_checkpoint_that_does_not_fit_is_refused_before_any_video(weights, tmp_path) -> None:
    from vidtok.errors import CheckpointError

    never = tmp_path / "never.mp4"  # would fail if read: the refusal must come first
    never.write_bytes(b"not a video")
    ckpt = tmp_path / "finetuned.safetensors"  # a KL checkpoint under a name of its own, asked for as an FSQ model
    ckpt.write_bytes(weights[KL_V11].read_bytes())
    cfg = dict(_config(weights, tmp_path, tmp_path / "out", tokenizer=FSQ), ckpt=str(ckpt))
    with pytest.raises(CheckpointError, match="regularizer.kind: 'fsq' != 'kl'"):
        encode_dataset(cfg)
    assert not (tmp_path / "out").exists()


def test_batches_across_videos_and_truncated_files(weights, videos, tmp_path) -> None:
    """Clips of several videos share a model call (batch_size 4) with the samples of one call per clip; a video
    cut off mid-file is skipped or kept whole, never half-written."""
    data = tmp_path / "data"
    data.mkdir()
    for path in sorted(videos.rglob("v*.mp4")):
        (data / path.name).write_bytes(path.read_bytes())
    whole = (videos / "v2.mp4").read_bytes()
    (data / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    one = encode_dataset(_config(weights, data, tmp_path / "one", batch_size=1))
    four = encode_dataset(_config(weights, data, tmp_path / "four", batch_size=4))
    a, b = _samples(tmp_path / "one"), _samples(tmp_path / "four")
    assert sorted(a) == sorted(b) and len(a) == one.samples == four.samples
    for key in a:
        assert torch.allclose(a[key]["tokens"].data, b[key]["tokens"].data, atol=1e-5), key
    truncated = [k for k in a if k.startswith("truncated")]
    failed = [f["name"] for f in one.failed]
    assert truncated or any(name.endswith("truncated.mp4") for name in failed)
