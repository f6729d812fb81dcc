"""decode.py / vidtok.decoding: many latents back into videos, whatever wrote them; each video once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from test_encode import FSQ, KL_V11, NONCAUSAL, _config, _samples, videos  # noqa: F401 (videos: the fixture)

from vidtok.data import LatentStats
from vidtok.decoding import decode_dataset
from vidtok.encoding import encode_dataset
from vidtok.errors import ConfigError, DataSourceError
from vidtok.inference.pipeline import decode_video
from vidtok.io.token_files import TokenFile
from vidtok.io.video import iter_frames, read_info

from conftest import accelerate_launch, kill_process_tree, tiny_tokenizer

REPO = Path(__file__).resolve().parents[1]


def _frames(path: Path) -> torch.Tensor:
    """Every frame of a video file, uint8 (T, H, W, 3)."""
    return torch.cat(list(iter_frames(path)))


def _decode(out: Path, data: Path, **extra) -> dict:
    cfg = {
        "data": {"dir": str(data), **extra.pop("data", {})},
        "threads": 1,
        "output": {"dir": str(out), "progress": False},
    }
    cfg.update(extra)
    return cfg


@pytest.fixture(scope="module")
def encoded(weights, videos, tmp_path_factory) -> Path:  # noqa: F811
    out = tmp_path_factory.mktemp("encoded") / "latents"
    encode_dataset(_config(weights, videos, out, output={"max_count": 3}))
    return out


def test_an_encode_output_decodes_to_one_video_per_sample(weights, encoded, tmp_path) -> None:
    """No tokenizer named: the encode output's checkpoint; each video equals `vidtok decode` of its sample."""
    out = tmp_path / "decoded"
    result = decode_dataset(_decode(out, encoded))
    samples = _samples(encoded)
    assert result.videos == len(samples) and not result.failed and result.skipped_done == 0
    written = sorted(str(p.relative_to(out).with_suffix("")) for p in out.rglob("*.mp4"))
    assert written == sorted(samples)
    tok = tiny_tokenizer(KL_V11, ch=8)
    for key, sample in list(samples.items())[:2]:
        alone = tmp_path / "alone.mp4"
        frames = decode_video(tok, sample["tokens"], alone)
        decoded = _frames(out / f"{key}.mp4")
        assert decoded.shape[0] == frames == sample["tokens"].frames == 17
        assert torch.equal(decoded, _frames(alone))
    assert json.loads((out / "run.json").read_text())["job"]["tokenizer"] == KL_V11
    again = decode_dataset(_decode(out, encoded))  # all done: nothing decoded again
    assert (again.videos, again.skipped_done) == (0, len(samples))


def test_tensors_a_generator_wrote_in_every_format(weights, tmp_path) -> None:
    gen = torch.Generator().manual_seed(0)
    data = tmp_path / "gen"
    (data / "sub").mkdir(parents=True)
    z = torch.randn(2, 4, 3, 4, 5, generator=gen)
    torch.save(z, data / "batch.pt")  # a batch of 2: batch/000, batch/001
    np.save(data / "sub" / "one.npy", z[0].numpy())  # (C, t, h, w)
    save_file({"z": z[1:], "text_embedding": torch.zeros(3)}, data / "named.safetensors")
    torch.save({"latents": z[0], "step": torch.tensor(3)}, data / "dict.pth")
    torch.save(torch.randn(3, 3, 4, 4), data / "three_channels.pt")  # not this model's channels
    torch.save(torch.randn(4, 3, 4), data / "flat.pt")  # no layout of latents
    (data / "junk.npy").write_bytes(b"not an array")
    save_file({"a": z[0], "b": z[1]}, data / "two.safetensors")  # which tensor? not said
    result = decode_dataset(_decode(tmp_path / "out", data, ckpt=str(weights[KL_V11]), fps=12))
    out = tmp_path / "out"
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.mp4")) == [
        "batch/000.mp4", "batch/001.mp4", "dict.mp4", "named.mp4", "sub/one.mp4"
    ]  # fmt: skip
    assert torch.equal(_frames(out / "sub" / "one.mp4"), _frames(out / "batch" / "000.mp4"))
    assert torch.equal(_frames(out / "named.mp4"), _frames(out / "batch" / "001.mp4"))
    assert _frames(out / "dict.mp4").shape == (9, 32, 40, 3) and read_info(out / "dict.mp4").fps == pytest.approx(
        12
    )  # 1 + 2 * 4 frames of 4x5 latents
    reasons = {f["key"]: f["reason"] for f in result.failed}
    assert sorted(reasons) == ["flat", "junk", "three_channels", "two"]
    assert "latents of 3 channels" in reasons["three_channels"] and "has 4" in reasons["three_channels"]
    assert "(C, t, h, w) or (B, C, t, h, w)" in reasons["flat"]
    assert "data.key" in reasons["two"] and "['a', 'b']" in reasons["two"]
    listed = [json.loads(line) for line in (out / "failed.jsonl").read_text().splitlines()]
    assert [f["key"] for f in listed] == [f["key"] for f in result.failed]


def test_normalized_latents_come_back_through_stats(weights, encoded, tmp_path) -> None:
    """A generator's output in normalized space + the dataset's stats.json = the video of the raw latents."""
    stats = LatentStats.load(encoded)
    z = next(iter(_samples(encoded).values()))["tokens"].data
    for mode in ("channel", "global"):
        data = tmp_path / mode
        data.mkdir()
        torch.save(stats.normalize(z, per_channel=mode == "channel")[0], data / "x.pt")
        decode_dataset(_decode(tmp_path / f"out_{mode}", data, ckpt=str(weights[KL_V11]), stats=str(encoded),
                               normalize=mode))  # fmt: skip
    raw = tmp_path / "raw"
    raw.mkdir()
    torch.save(z[0], raw / "x.pt")
    decode_dataset(_decode(tmp_path / "out_raw", raw, ckpt=str(weights[KL_V11])))
    reference = _frames(tmp_path / "out_raw" / "x.mp4").int()
    for mode in ("channel", "global"):
        assert (_frames(tmp_path / f"out_{mode}" / "x.mp4").int() - reference).abs().max() <= 1


def test_fsq_indices_and_non_causal_clips(weights, tmp_path) -> None:
    data = tmp_path / "indices"
    data.mkdir()
    gen = torch.Generator().manual_seed(1)
    torch.save(torch.randint(0, 4096, (5, 4, 4), generator=gen, dtype=torch.int32), data / "ok.pt")
    torch.save(torch.tensor([[[[4096]]]]), data / "out_of_range.pt")
    result = decode_dataset(_decode(tmp_path / "out", data, ckpt=str(weights[FSQ])))
    assert _frames(tmp_path / "out" / "ok.mp4").shape[0] == 17
    assert [f["key"] for f in result.failed] == ["out_of_range"] and "codes 0..4095" in result.failed[0]["reason"]
    # a non-causal model decodes raw latents clip by clip: 8 latent frames = two clips of 16 frames
    data = tmp_path / "noncausal"
    data.mkdir()
    z = torch.randn(4, 8, 4, 4, generator=gen)
    torch.save(z, data / "two_clips.pt")
    decode_dataset(_decode(tmp_path / "nc", data, ckpt=str(weights[NONCAUSAL])))
    frames = _frames(tmp_path / "nc" / "two_clips.mp4")
    assert frames.shape[0] == 32
    tok = tiny_tokenizer(NONCAUSAL, ch=8)
    for clip, same in ((16, True), (None, False)):  # two clips of 16 frames, not one clip of 32
        tokens = TokenFile("latents", z[None], tok.config, 24.0, 32, 32, 32, clip)
        decode_video(tok, tokens, tmp_path / "alone.mp4")
        assert torch.equal(_frames(tmp_path / "alone.mp4"), frames) == same


def test_a_long_latent_decodes_in_a_stream(weights, tmp_path) -> None:
    """101 latent frames (401 frames): decoded chunk by chunk into the writer, every frame there."""
    data = tmp_path / "long"
    data.mkdir()
    torch.save(torch.randn(4, 101, 2, 2, generator=torch.Generator().manual_seed(3)), data / "long.pt")
    result = decode_dataset(_decode(tmp_path / "out", data, ckpt=str(weights[KL_V11]), chunk_latents=8))
    assert result.frames == 401 and _frames(tmp_path / "out" / "long.mp4").shape == (401, 16, 16, 3)


def test_refusals_before_anything_is_decoded(weights, encoded, tmp_path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    torch.save(torch.randn(4, 2, 4, 4), raw / "x.pt")
    cases = [
        (_decode(tmp_path / "o", raw), "name no tokenizer (raw tensors): give ckpt="),
        (_decode(tmp_path / "o", raw, ckpt=str(weights[FSQ]), stats=str(encoded)), "FSQ indices"),
        (_decode(tmp_path / "o", tmp_path / "nothing", ckpt=str(weights[KL_V11])), "neither a folder"),
        (_decode(tmp_path / "o", tmp_path / "none-{0..3}.tar", ckpt=str(weights[KL_V11])), "none-0.tar"),
        (_decode(tmp_path / "o", raw, ckpt=str(weights[KL_V11]), normalize="minmax"), "normalize must be"),
        (_decode(tmp_path / "o", raw, ckpt=str(weights[NONCAUSAL]), clip_frames=10), "multiple of 4"),
    ]
    for cfg, words in cases:
        with pytest.raises((ConfigError, DataSourceError)) as err:
            decode_dataset(cfg)
        assert words in str(err.value), (words, str(err.value))
    assert not (tmp_path / "o").exists()  # nothing claimed
    # a folder decoded by another tokenizer is refused
    decode_dataset(_decode(tmp_path / "k", raw, ckpt=str(weights[KL_V11])))
    with pytest.raises(ConfigError, match="holds videos of another job"):
        decode_dataset(_decode(tmp_path / "k", raw, ckpt=str(weights[KL_V11]), fps=5))


def test_a_shard_member_that_would_leave_the_output_is_listed(weights, encoded, tmp_path) -> None:
    shard = tmp_path / "evil.tar"
    member = next(iter(sorted(encoded.glob("part-*.tar"))))
    with tarfile.open(member) as src, tarfile.open(shard, "w") as dst:
        first = next(m for m in src.getmembers() if m.name.endswith(".safetensors"))
        data = src.extractfile(first)
        info = tarfile.TarInfo("../escape.safetensors")
        info.size = first.size
        dst.addfile(info, data)
    result = decode_dataset(_decode(tmp_path / "out", shard, ckpt=str(weights[KL_V11])))
    assert result.videos == 0 and "not a relative path inside output.dir" in result.failed[0]["reason"]
    assert not (tmp_path / "escape.mp4").exists()


@pytest.mark.slow
def test_two_processes_killed_and_restarted_write_each_video_once(weights, tmp_path) -> None:
    """`accelerate launch decode.py` with 2 processes, SIGKILLed once videos exist, then run again: every video,
    none written twice, the frames of a one-process run."""
    data = tmp_path / "gen"
    data.mkdir()
    gen = torch.Generator().manual_seed(2)
    for i in range(24):
        torch.save(torch.randn(4, 5, 4, 4, generator=gen), data / f"g{i:02d}.pt")
    one = tmp_path / "one"
    decode_dataset(_decode(one, data, ckpt=str(weights[KL_V11])))
    two = tmp_path / "two"
    args = [f"ckpt={weights[KL_V11]}", f"data.dir={data}", f"output.dir={two}", "threads=1", "output.progress=false"]
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("WORLD_SIZE", None)

    def launch() -> list[str]:
        return accelerate_launch(REPO / "decode.py", args, tmp_path / "hydra")

    killed, before = False, {}
    for _ in range(4):
        shutil.rmtree(two, ignore_errors=True)
        proc = subprocess.Popen(launch(), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            if len(list(two.glob("g*.mp4"))) >= 2:
                kill_process_tree(proc.pid)  # the launcher and both processes
                break
            time.sleep(0.01)
        proc.wait()
        before = {p.name: p.stat().st_mtime_ns for p in two.glob("g*.mp4")}
        killed = proc.returncode != 0 and len(before) < 24
        if killed:
            break
    assert killed, "the run ended before the kill"
    done = subprocess.run(launch(), env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"({len(before)} done before, 0 failed" in done.stdout, done.stdout
    assert sorted(p.name for p in two.glob("*.mp4")) == sorted(p.name for p in one.glob("*.mp4"))
    assert not list(two.glob(".*"))  # no temporary file left
    for name, mtime in before.items():
        assert (two / name).stat().st_mtime_ns == mtime, f"{name} was written twice"
    for path in sorted(one.glob("*.mp4")):
        assert torch.equal(_frames(path), _frames(two / path.name)), path.name
