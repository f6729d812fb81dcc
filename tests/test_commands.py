"""Video I/O, token files, and the reconstruct / encode / decode commands end to end on generated mp4s."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_cli import run_vidtok

import vidtok
from vidtok.cli import main as cli
from vidtok.errors import TokenFileError, VideoError
from vidtok.inference.pipeline import ReadSettings, decode_frames, encode_video
from vidtok.io.token_files import load_tokens, save_tokens
from vidtok.io.video import VideoWriter, frames_to_tensor, iter_frames, read_info, resize_crop, tensor_to_frames
from vidtok.synthetic import moving_shapes

from conftest import REPO, tiny_tokenizer, training_checkpoint


def write_clip(path: Path, frames: int = 21, height: int = 40, width: int = 56, fps: float = 24) -> Path:
    """A real H.264 mp4 of the built-in moving-shapes clip."""
    video = moving_shapes(frames, height, width)
    with VideoWriter(path, fps, crf=0) as writer:
        writer.write(tensor_to_frames(video))
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("videos") / "clip.mp4")


# ---- video I/O ----------------------------------------------------------------------------------


def test_probe_and_read_back(clip: Path) -> None:
    info = read_info(clip)
    assert (info.width, info.height, info.fps, info.frames) == (56, 40, 24.0, 21)
    frames = torch.cat(list(iter_frames(clip, chunk=8)))
    assert frames.shape == (21, 40, 56, 3) and frames.dtype == torch.uint8
    original = tensor_to_frames(moving_shapes(21, 40, 56))
    assert (frames.float() - original.float()).abs().mean() < 8  # crf 0, but yuv420p halves the chroma


def test_frame_sampling_and_resizing(clip: Path) -> None:
    chunks = list(iter_frames(clip, sample_fps=8, size=(32, 32), chunk=4))
    assert [c.shape[0] for c in chunks] == [4, 3]  # every 3rd frame of 21
    assert chunks[0].shape[1:] == (32, 32, 3)
    assert sum(c.shape[0] for c in iter_frames(clip, max_frames=5)) == 5


def test_resize_crop_covers_then_crops() -> None:
    frames = torch.arange(2 * 40 * 80 * 3, dtype=torch.int64).remainder(256).to(torch.uint8).view(2, 40, 80, 3)
    assert resize_crop(frames, 40, 40).shape == (2, 40, 40, 3)
    assert torch.equal(resize_crop(frames, 40, 40), frames[:, :, 20:60])  # no resampling needed: pure crop
    assert resize_crop(frames, 64, 64).shape == (2, 64, 64, 3)
    assert resize_crop(frames, 20, 60).shape == (2, 20, 60, 3)


def test_tensor_frame_round_trip() -> None:
    frames = torch.randint(0, 256, (3, 8, 8, 3), dtype=torch.uint8)
    video = frames_to_tensor(frames)
    assert video.shape == (1, 3, 3, 8, 8) and video.min() >= -1 and video.max() <= 1
    assert torch.equal(tensor_to_frames(video), frames)


def test_unreadable_videos_get_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="does not exist"):
        read_info(tmp_path / "missing.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    with pytest.raises(VideoError, match="bad.mp4"):
        list(iter_frames(bad))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoError, match="empty.mp4"):
        read_info(empty)


def test_writer_leaves_nothing_half_written(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(target, 10) as writer:
            writer.write(torch.zeros(2, 16, 16, 3, dtype=torch.uint8))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


# ---- token files --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["vidtok_kl_causal_488_4chn_v1_1", "vidtok_fsq_causal_488_4096", "vidtok_kl_noncausal_488_4chn"]
)
def test_token_file_round_trip_equals_in_memory(name: str, clip: Path, weights, tmp_path: Path) -> None:
    tok = vidtok.load_tokenizer(ckpt=weights[name])
    indices, causal = tok.config.is_discrete, tok.config.causal
    # a causal stream's chunks / non-causal clips
    options = vidtok.InferenceOptions(chunk_frames=8) if causal else None
    reading = ReadSettings(height=32, width=48) if causal else ReadSettings(height=32, width=48, clip_frames=8)
    tokens = encode_video(tok, clip, reading=reading, options=options, indices=indices)
    path = save_tokens(tmp_path / "t.safetensors", tokens)
    loaded = load_tokens(path)
    assert loaded.kind == tokens.kind and torch.equal(loaded.data, tokens.data)
    assert (loaded.frames, loaded.height, loaded.width, loaded.fps) == (21, 32, 48, 24.0)
    assert loaded.tokenizer == tok.config
    decode_options = vidtok.InferenceOptions(chunk_latents=2 if causal else None)
    decoded = torch.cat(list(decode_frames(tok, loaded, options=decode_options)))
    assert decoded.shape == (21, 32, 48, 3)

    # the same clip in memory, in one pass (non-causal: the same 8-frame clips)
    video = frames_to_tensor(torch.cat(list(iter_frames(clip, size=(32, 48)))))
    with torch.no_grad():
        if tok.config.causal:
            expected = tok(video)
        else:
            expected = torch.cat([tok(video[:, :, i : i + 8], pad=True) for i in range(0, 21, 8)], dim=2)
    assert (decoded.float() - tensor_to_frames(expected).float()).abs().max() <= 1  # uint8 rounding only


def test_token_files_from_other_tokenizers_are_refused(clip: Path, weights, tmp_path: Path) -> None:
    kl = vidtok.load_tokenizer(ckpt=weights["vidtok_kl_causal_488_4chn_v1_1"])
    fsq = vidtok.load_tokenizer(ckpt=weights["vidtok_fsq_causal_488_4096"])
    tokens = encode_video(kl, clip, reading=ReadSettings(height=32, width=32, max_frames=9))
    with pytest.raises(TokenFileError, match="encoded with tokenizer 'vidtok_kl_causal_488_4chn_v1_1'"):
        list(decode_frames(fsq, tokens))
    not_tokens = weights["vidtok_fsq_causal_488_4096"]
    with pytest.raises(TokenFileError, match="not a vidtok token file"):
        load_tokens(not_tokens)


@pytest.mark.parametrize(
    "name, lengths, cut",
    [
        ("vidtok_kl_causal_488_4chn_v1_1", (1, 2, 5, 7, 16, 19), {}),  # (T - 1) % 4: 0, 1, 0, 2, 3, 2
        ("vidtok_kl_noncausal_488_4chn", (4, 6, 8, 11, 16, 21), {"clip_frames": 8}),  # T % 8: 4, 6, 0, 3, 0, 5
    ],
)
def test_token_files_of_any_length_load(name: str, lengths: tuple, cut: dict, clip: Path, weights, tmp_path) -> None:
    """What `vidtok encode` writes passes the frame check of load_tokens at any length: a causal stream's
    1 + ceil((T-1)/4) latents, non-causal clips of 8 frames with the last one padded to a multiple of 4."""
    tok = vidtok.load_tokenizer(ckpt=weights[name])
    for frames in lengths:
        tokens = encode_video(tok, clip, reading=ReadSettings(height=32, width=32, max_frames=frames, **cut))
        loaded = load_tokens(save_tokens(tmp_path / f"{frames}.safetensors", tokens))
        assert (loaded.frames, loaded.latent_frames) == (frames, tok.config.latent_frames(frames))


def test_token_file_whose_tensor_disagrees_with_its_metadata_is_refused(clip: Path, weights, tmp_path: Path) -> None:
    """21 frames hold 6 latent frames (which decode to 21): metadata saying 5 frames (which take 2) or 25 (which
    take 7) is refused when the file is read, naming both numbers, by load_tokens and by `vidtok decode`."""
    ckpt = weights["vidtok_kl_causal_488_4chn_v1_1"]
    tokens = encode_video(vidtok.load_tokenizer(ckpt=ckpt), clip, reading=ReadSettings(height=32, width=32))
    assert (tokens.frames, tokens.latent_frames) == (21, 6)
    for frames, need in ((5, 2), (25, 7)):
        tampered = save_tokens(tmp_path / f"says_{frames}.safetensors", dataclasses.replace(tokens, frames=frames))
        numbers = f"says {frames} frames, but its tensor holds 6 latent frames; {frames} frames take {need} latent"
        with pytest.raises(TokenFileError, match=f"{numbers} frames and 6 latent frames decode to 21 frames"):
            load_tokens(tampered)
    out = tmp_path / "never.mp4"
    run = run_vidtok("decode", str(tampered), str(out), "--ckpt", str(ckpt), "--quiet")
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.count("\n") == 1 and "says 25 frames, but its tensor holds 6 latent frames" in run.stderr
    assert not out.exists()


# ---- commands -----------------------------------------------------------------------------------


def test_reconstruct_command_side_by_side(clip: Path, weights, tmp_path: Path, capsys) -> None:
    out = tmp_path / "rec.mp4"
    ckpt = weights["vidtok_kl_causal_488_4chn_v1_1"]
    args = ["reconstruct", str(clip), str(out), "--ckpt", str(ckpt), "--height", "32", "--width", "48"]
    assert cli([*args, "--chunk-frames", "8", "--chunk-latents", "2", "--side-by-side", "--quiet"]) == 0
    info = read_info(out)
    assert (info.frames, info.height, info.width, info.fps) == (21, 32, 96, 24.0)
    assert "21 frames, 32x48 at 24 fps" in capsys.readouterr().out
    left = torch.cat(list(iter_frames(out)))[:, :, :48]
    source = torch.cat(list(iter_frames(clip, size=(32, 48))))
    assert (left.float() - source.float()).abs().mean() < 8  # the input half is the input


def test_reconstruct_tiled_fsq_and_non_causal(clip: Path, weights, tmp_path: Path) -> None:
    for name, extra in (
        ("vidtok_fsq_causal_488_4096", ["--tile", "32", "--tile-overlap", "8"]),
        ("vidtok_kl_noncausal_488_4chn", ["--fps", "12"]),
    ):
        out = tmp_path / f"{name}.mp4"
        size = ["--height", "40", "--width", "56"]
        assert cli(["reconstruct", str(clip), str(out), "--ckpt", str(weights[name]), *size, "--quiet", *extra]) == 0
        assert read_info(out).frames == (21 if "causal_488_4096" in name else 11)  # 24 -> 12 fps: every 2nd frame


def test_encode_decode_commands_through_the_console_script(clip: Path, weights, tmp_path: Path) -> None:
    ckpt = str(weights["vidtok_fsq_causal_488_4096"])
    tokens, video = tmp_path / "clip.tokens.safetensors", tmp_path / "decoded.mp4"
    size = ("--height", "32", "--width", "32")
    run = run_vidtok("encode", str(clip), str(tokens), "--ckpt", ckpt, *size, "--indices", "--quiet")
    assert run.returncode == 0, run.stderr
    assert "indices (1, 6, 4, 4) for 21 frames" in run.stdout
    run = run_vidtok("decode", str(tokens), str(video), "--ckpt", ckpt, "--quiet")
    assert run.returncode == 0, run.stderr
    assert read_info(video).frames == 21


def test_reconstruct_refuses_bad_inputs_in_one_line_and_writes_nothing(
    clip: Path, weights, tmp_path: Path, capsys
) -> None:
    """In this process (the console script's exit status and one-line errors are checked by test_entry_errors.py
    and the documentation tests): a clear error, status 2, no output file and no temporary file left."""
    from vidtok.cli import main

    ckpt = str(weights["vidtok_fsq_causal_488_4096"])
    bad_out = tmp_path / "never.mp4"
    (tmp_path / "tokens.safetensors").write_bytes(b"not a video")
    refusals = [
        ((str(tmp_path / "tokens.safetensors"),), "cannot read video"),
        ((str(clip), "--chunk-frames", "6"), "chunk_frames must be a positive multiple of 4"),
        ((str(clip), "--height", "36"), "even multiples of 8"),
    ]
    for args, message in refusals:
        status = main(["reconstruct", args[0], str(bad_out), "--ckpt", ckpt, "--quiet", *args[1:]])
        err = capsys.readouterr().err
        assert status == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not bad_out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".never")]


def run_module(*args: str) -> subprocess.CompletedProcess:
    """``python -m vidtok.cli ARGS`` with this checkout first on the path (output captured)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "vidtok.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_ckpt_takes_a_training_checkpoint_folder(clip: Path, tmp_path: Path) -> None:
    """The folder the training log names (``saved checkpoint .../checkpoints/step_00000400``) is a --ckpt."""
    step = training_checkpoint(tiny_tokenizer("vidtok_kl_causal_488_4chn_v1_1", ch=4), tmp_path / "run")
    out = tmp_path / "out.mp4"
    size = ("--height", "32", "--width", "32", "--max-frames", "9", "--quiet")
    run = run_module("reconstruct", "--ckpt", str(step), str(clip), str(out), *size)
    assert run.returncode == 0, run.stderr
    assert f"wrote {out}: 9 frames, 32x32" in run.stdout and read_info(out).frames == 9


def test_a_ckpt_folder_holding_no_tokenizer_is_refused_in_one_line(clip: Path, tmp_path: Path) -> None:
    empty = tmp_path / "run"
    empty.mkdir()
    run = run_module("reconstruct", "--ckpt", str(empty), str(clip), str(tmp_path / "out.mp4"), "--quiet")
    expected = (
        f"vidtok reconstruct: error: {empty} holds no tokenizer: expected config.json + model.safetensors "
        "(save_pretrained) or one of tokenizer.safetensors, tokenizer_ema.safetensors (a training checkpoint)"
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.strip().splitlines()[-1] == expected and not (tmp_path / "out.mp4").exists()
