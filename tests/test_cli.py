"""The `vidtok` console script end to end."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import vidtok
from vidtok.cli import main as cli


def vidtok_exe() -> str:
    exe = shutil.which("vidtok") or shutil.which("vidtok", path=str(Path(sys.executable).parent))
    assert exe, "the vidtok console script is not installed (pip install -e .)"
    return exe


def run_vidtok(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """The installed `vidtok` console script run with ``args``, as a user types it (output captured)."""
    return subprocess.run([vidtok_exe(), *args], capture_output=True, text=True, timeout=timeout)


def test_list_shows_every_official_tokenizer(capsys) -> None:
    assert cli(["list"]) == 0
    out = capsys.readouterr().out
    for name in vidtok.official_names():
        assert re.search(rf"^{name}\s", out, re.M), name
    assert re.search(r"^vidtok_fsq_causal_888_32768_v1_1\s+v1.1\s+yes\s+8x8x8\s+FSQ 5\s+32,768\s+no$", out, re.M)


def test_demo_runs_on_the_built_in_clip() -> None:
    run = run_vidtok(
        "demo", "--tokenizer", "vidtok_fsq_causal_488_4096", "--size", "32", "-o", "model.ch=4", "--random-weights"
    )
    assert run.returncode == 0, run.stderr
    assert "latents    (1, 4, 5, 4, 4)" in run.stdout
    assert "indices    (1, 5, 4, 4) in [0, 4,096)" in run.stdout
    assert "recon      (1, 3, 17, 32, 32)" in run.stdout


def test_demo_with_a_converted_checkpoint(tmp_path: Path, capsys) -> None:
    tok = vidtok.build_tokenizer(vidtok.compose_tokenizer_config("vidtok_kl_noncausal_488_4chn", ["model.ch=4"]))
    from vidtok.io.weight_files import save_tokenizer_safetensors

    path = save_tokenizer_safetensors(tok.state_dict(), tok.config, tmp_path / "nc.safetensors")
    assert cli(["demo", "--ckpt", str(path), "--size", "16"]) == 0
    out = capsys.readouterr().out
    assert "vidtok_kl_noncausal_488_4chn" in out and "(1, 3, 16, 16, 16)" in out


def test_bad_tokenizer_name_is_a_clean_error(capsys) -> None:
    assert cli(["demo", "--tokenizer", "vidtok_kl_causal_999"]) == 2
    assert "unknown tokenizer 'vidtok_kl_causal_999'" in capsys.readouterr().err
