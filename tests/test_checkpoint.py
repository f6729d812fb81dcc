"""Conversion to safetensors, config metadata, loading by file name or config file, and what a name, file, folder or
Hub repository id means as weights (locate_weights)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hubcache import COMMIT, add_repo_to_hub_cache, add_to_hub_cache, use_hub_cache
from safetensors import safe_open

import vidtok
from vidtok.cli import main as cli
from vidtok.errors import HubError, WeightsNotFoundError
from vidtok.hub import converted_path
from vidtok.io.weight_files import META_CONFIG, META_NAME
from vidtok.models.weights import WeightsLocation, locate_weights

from conftest import random_video, tiny_tokenizer, training_checkpoint

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


# ---- what a name means as weights: one dispatch (locate_weights) for ckpt=, --ckpt, init_from=, from_pretrained ----


def same_weights(a: vidtok.Tokenizer, b: vidtok.Tokenizer) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture()
def tiny() -> vidtok.Tokenizer:
    return tiny_tokenizer(NAME, ch=4)


def test_an_existing_file_means_itself(official_file: Path) -> None:
    assert locate_weights(official_file) == WeightsLocation(official_file)
    assert locate_weights(str(official_file)).config_file is None


def test_a_save_pretrained_folder_means_its_weights_with_their_config_json(tmp_path: Path, tiny) -> None:
    folder = tmp_path / "saved"
    tiny.save_pretrained(folder)
    assert locate_weights(folder) == WeightsLocation(folder / "model.safetensors", folder / "config.json")
    assert same_weights(vidtok.load_tokenizer(ckpt=folder), tiny)
    # config.json is the folder's word on the config: one that disagrees with the weights' metadata is refused
    (folder / "config.json").write_text((folder / "config.json").read_text().replace('"ch": 4', '"ch": 8'))
    with pytest.raises(vidtok.CheckpointError, match=r"config differs .*model.ch: 8 != 4"):
        vidtok.load_tokenizer(ckpt=folder)


def test_a_training_checkpoint_folder_means_its_tokenizer_weights_else_the_ema_ones(tmp_path: Path, tiny) -> None:
    ema_only = training_checkpoint(tiny, tmp_path / "ema_run", ema=True)
    assert locate_weights(ema_only) == WeightsLocation(ema_only / "tokenizer_ema.safetensors")
    step = training_checkpoint(tiny, tmp_path / "run", step=400)
    training_checkpoint(tiny_tokenizer(NAME, ch=4, seed=1), tmp_path / "run", step=400, ema=True)
    assert locate_weights(step) == WeightsLocation(step / "tokenizer.safetensors")
    loaded = vidtok.load_tokenizer(ckpt=step)
    assert same_weights(loaded, tiny) and loaded.weights_file == step / "tokenizer.safetensors"
    assert loaded.weights_source == f"trained with vidtok train.py: run {tmp_path / 'run'}, step 400"


def test_an_official_name_means_its_published_weights_unless_a_path_has_that_name(
    tmp_path: Path, official_file: Path, monkeypatch
) -> None:
    use_hub_cache(monkeypatch, add_to_hub_cache(tmp_path / "hf", {NAME: official_file}), tmp_path / "vidtok_cache")
    published = locate_weights(NAME)
    assert published.file == converted_path(NAME, COMMIT) and published.config_file is None
    original = locate_weights(NAME, original_checkpoint=True).file  # training's init_from: the discriminator too
    assert original.name == f"{NAME}.ckpt" and f"snapshots/{COMMIT}/" in original.as_posix()
    monkeypatch.chdir(tmp_path)
    (tmp_path / NAME).write_bytes(official_file.read_bytes())
    assert locate_weights(NAME) == WeightsLocation(Path(NAME))


def test_a_hub_repository_id_means_its_save_pretrained_weights(tmp_path: Path, tiny, monkeypatch) -> None:
    folder = tmp_path / "saved"
    tiny.save_pretrained(folder)
    root = add_repo_to_hub_cache(tmp_path / "hf", "someone/tiny-vidtok", {p.name: p for p in folder.iterdir()})
    use_hub_cache(monkeypatch, root, tmp_path / "vidtok_cache")
    found = locate_weights("someone/tiny-vidtok", local_files_only=True)
    assert found.file.name == "model.safetensors" and found.config_file.name == "config.json"
    assert f"models--someone--tiny-vidtok/snapshots/{COMMIT}/" in found.file.as_posix()
    assert same_weights(vidtok.load_tokenizer(ckpt="someone/tiny-vidtok"), tiny)


def test_what_holds_no_weights_is_refused_naming_what_was_expected(tmp_path: Path, monkeypatch) -> None:
    use_hub_cache(monkeypatch, add_to_hub_cache(tmp_path / "hf", {}), tmp_path / "vidtok_cache")
    (tmp_path / "run").mkdir()
    with pytest.raises(WeightsNotFoundError, match=r"run holds no tokenizer: expected config.json \+ model.safet"):
        locate_weights(tmp_path / "run")
    with pytest.raises(WeightsNotFoundError, match=r"nope.ckpt does not exist or is not a file: expected an official"):
        locate_weights(tmp_path / "nope.ckpt")
    with pytest.raises(HubError, match=r"someone/missing is no file or folder on this machine.*model.safetensors"):
        locate_weights("someone/missing")
