"""Conversion to safetensors, config metadata, and loading by file name or config file."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import vidtok
from vidtok.cli import main as cli
from vidtok.io.weight_files import META_CONFIG, META_NAME

from conftest import random_video, tiny_tokenizer

NAME = "vidtok_kl_causal_488_4chn"


@pytest.fixture()
def official_file(tmp_path: Path) -> Path:
    """A tiny model saved the way official checkpoints are: named <official name>.ckpt, Lightning dict."""
    tok = tiny_tokenizer(NAME, ch=4)
    path = tmp_path / f"{NAME}.ckpt"
    torch.save({"state_dict": dict(tok.state_dict()), "epoch": 3}, path)
    return path


def outputs(tok: vidtok.Tokenizer) -> torch.Tensor:
    with torch.no_grad():
        return tok(random_video(9, 16))


def test_convert_writes_config_metadata_and_loads_identically(tmp_path: Path, official_file: Path) -> None:
    out = tmp_path / "converted.safetensors"
    assert cli(["convert", str(official_file), str(out), "-o", "model.ch=4"]) == 0
    with safe_open(str(out), framework="pt") as fh:
        meta = fh.metadata()
    assert meta[META_NAME] == NAME
    assert vidtok.TokenizerConfig.from_any(meta[META_CONFIG]).model.ch == 4
    original = vidtok.load_tokenizer(NAME, ckpt=official_file, overrides=["model.ch=4"])
    converted = vidtok.load_tokenizer(ckpt=out)  # name and width come from the metadata
    assert converted.config == original.config
    assert torch.equal(outputs(converted), outputs(original))
    # naming the same tokenizer again is fine; naming a different one is refused
    assert torch.equal(outputs(vidtok.load_tokenizer(NAME, ckpt=out, overrides=["model.ch=4"])), outputs(original))


def test_v1_0_weights_are_refused_as_v1_1(tmp_path: Path, official_file: Path) -> None:
    """Same keys, different maths: the metadata catches what a key check cannot."""
    out = tmp_path / "v10.safetensors"
    cli(["convert", str(official_file), str(out), "-o", "model.ch=4"])
    with pytest.raises(vidtok.CheckpointError, match=r"model.temporal_pad: 'replicate' != 'zeros'"):
        vidtok.load_tokenizer(f"{NAME}_v1_1", ckpt=out, overrides=["model.ch=4"])


def test_official_name_is_taken_from_the_file_name(official_file: Path) -> None:
    tok = vidtok.load_tokenizer(ckpt=official_file, overrides=["model.ch=4"])
    assert tok.config.name == NAME
    renamed = official_file.with_name(f"{NAME}_v1_1.ckpt")
    shutil.copy(official_file, renamed)
    # v1.1 file name, v1.0 weights: the key check cannot tell, the name decides (as for official files)
    assert vidtok.load_tokenizer(ckpt=renamed, overrides=["model.ch=4"]).config.version == "v1.1"


def test_plain_safetensors_without_metadata_need_a_name(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    save_file(dict(tiny_tokenizer(NAME, ch=4).state_dict()), str(path))
    with pytest.raises(vidtok.ConfigError, match="pass the name"):
        vidtok.load_tokenizer(ckpt=path)
    assert vidtok.load_tokenizer(NAME, ckpt=path, overrides=["model.ch=4"]).config.name == NAME


def test_config_file_round_trip(tmp_path: Path, capsys) -> None:
    assert cli(["config", "vidtok_fsq_causal_888_32768_v1_1", "-o", "model.ch=4"]) == 0
    path = tmp_path / "tok.yaml"
    path.write_text(capsys.readouterr().out)
    tok = vidtok.load_tokenizer(str(path), pretrained=False)
    assert tok.config == vidtok.compose_tokenizer_config("vidtok_fsq_causal_888_32768_v1_1", ["model.ch=4"])
    wider = vidtok.load_tokenizer(str(path), overrides=["model.ch=8"], pretrained=False)
    assert wider.config.model.ch == 8
    with pytest.raises(vidtok.ConfigError, match="modle"):
        bad = tmp_path / "bad.yaml"
        bad.write_text(path.read_text().replace("model:", "modle:"))
        vidtok.load_tokenizer(str(bad), pretrained=False)


def test_converted_file_is_written_atomically(tmp_path: Path, official_file: Path, monkeypatch) -> None:
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"previous content")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        cli(["convert", str(official_file), str(out), "-o", "model.ch=4"])
    assert out.read_bytes() == b"previous content"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_console_script_reports_errors_without_a_traceback(tmp_path: Path) -> None:
    exe = shutil.which("vidtok") or shutil.which("vidtok", path=str(Path(sys.executable).parent))
    assert exe, "the vidtok console script is not installed (pip install -e .)"
    bad = tmp_path / "bad.ckpt"
    bad.write_text("not a checkpoint")
    run = subprocess.run(
        [exe, "convert", str(bad), str(tmp_path / "o.safetensors"), "--tokenizer", NAME], capture_output=True, text=True
    )
    assert run.returncode == 2
    assert "is not a checkpoint" in run.stderr and "Traceback" not in run.stderr
