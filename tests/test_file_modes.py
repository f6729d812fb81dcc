"""Every file vidtok writes through a temporary name ends up with the permissions a plain ``open()`` gives it:
0o666 minus the umask, so teammates on a shared cluster can read what one of them wrote (not mkstemp's 0o600)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from test_commands import write_clip

from vidtok.data import folder_records, write_shards
from vidtok.encoding import encode_dataset
from vidtok.io.files import write_atomic
from vidtok.io.token_files import TokenFile, save_tokens
from vidtok.io.weight_files import save_tokenizer_safetensors
from vidtok.training.checkpoints import CheckpointDir

from conftest import tiny_tokenizer

KL_V11 = "vidtok_kl_causal_488_4chn_v1_1"


@pytest.fixture
def umask(request: pytest.FixtureRequest):
    """Run the test under the umask it is parametrised with, and restore the process's own afterwards."""
    before = os.umask(request.param)
    yield request.param
    os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_every_kind(root: Path) -> list[Path]:
    """One file of each kind vidtok writes through a temporary name, under ``root``; returns their paths."""
    tok = tiny_tokenizer(KL_V11, ch=8)
    weights = save_tokenizer_safetensors(tok.state_dict(), tok.config, root / "weights" / "tok.safetensors")
    video = write_clip(root / "videos" / "clip.mp4", frames=17, height=32, width=32)
    tokens = TokenFile("latents", torch.zeros(1, 4, 5, 4, 4), tok.config, fps=24.0, frames=17, height=32, width=32)
    token_file = save_tokens(root / "clip.tokens.safetensors", tokens)
    report = write_atomic(root / "report.json", b"{}")
    shards = write_shards(folder_records(root / "videos"), str(root / "shards" / "train-%03d.tar"), progress=False)
    encoded = root / "encoded"
    config = {"ckpt": str(weights), "data": {"dir": str(root / "videos")}, "height": 32, "width": 32}
    encode_dataset({**config, "sample_fps": None, "threads": 1, "output": {"dir": str(encoded), "progress": False}})
    # a training checkpoint: Accelerate's save_state writes model.safetensors with safetensors' save_file
    checkpoint = CheckpointDir(root / "checkpoints").save(
        1, lambda d: save_file({"w": torch.zeros(2)}, d / "model.safetensors")
    )
    written = [weights, video, token_file, report, *map(Path, shards.shards), root / "shards" / "manifest.json"]
    written += sorted(encoded.glob("part-*.tar")) + sorted((encoded / "index").glob("*.json"))
    return written + sorted(checkpoint.iterdir())


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o077, 0o600)], indirect=["umask"])
def test_written_files_get_the_mode_the_umask_gives(umask: int, expected: int, tmp_path: Path) -> None:
    written = write_every_kind(tmp_path)
    kinds = {p.suffix for p in written}
    assert {".safetensors", ".mp4", ".json", ".tar"} <= kinds and any("index" in p.parts for p in written)
    assert all(p.is_file() for p in written), [p for p in written if not p.is_file()]
    wrong = {str(p.relative_to(tmp_path)): oct(mode(p)) for p in written if mode(p) != expected}
    assert not wrong, f"expected {oct(expected)} under umask {oct(umask)}, found {wrong}"


def test_a_video_writer_that_cannot_start_leaves_no_temporary_file(tmp_path: Path) -> None:
    from vidtok.io.video import VideoWriter

    with pytest.raises(Exception, match="no_such_codec"):
        VideoWriter(tmp_path / "out.mp4", 24, codec="no_such_codec")
    assert list(tmp_path.iterdir()) == []
