"""Names mean published weights: loading through an offline Hugging Face Hub cache built here (the real
``hf_hub_download`` path; only the network is absent), the converted safetensors cache, damaged files, errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hubcache import COMMIT, add_to_hub_cache, use_hub_cache
from safetensors.torch import load_file
from videos import write_indexed_video

import vidtok
from vidtok.errors import HubError
from vidtok.hub import cached, converted_path, hub_filename, pretrained_file
from vidtok.io import weight_files as checkpoint_module

from conftest import FIXTURES, fixture_dirs, fixture_meta, needs_shared

V10, V11 = "vidtok_kl_causal_488_4chn", "vidtok_kl_causal_488_4chn_v1_1"
TINY = ["model.ch=4"]


def official_stand_in(name: str, path: Path, seed: int = 0) -> Path:
    """A width-4 model of ``name`` in the official checkpoint format (with a loss.* entry, as the real ones have)."""
    torch.manual_seed(seed)
    state = vidtok.load_tokenizer(name, overrides=TINY, pretrained=False).state_dict()
    state = {k: v + 0.02 * torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()}
    state["loss.logvar"] = torch.zeros(())
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state}, path)
    return path


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An offline Hub cache holding width-4 stand-ins of a v1.0 and a v1.1 model."""
    files = {name: official_stand_in(name, tmp_path / "src" / f"{name}.ckpt") for name in (V10, V11)}
    root = add_to_hub_cache(tmp_path / "hf", files)
    use_hub_cache(monkeypatch, root, tmp_path / "vidtok_cache")
    return root


def same_weights(a: vidtok.Tokenizer, b: vidtok.Tokenizer) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_hub_file_names_follow_the_repository_layout() -> None:
    assert hub_filename(V10) == "checkpoints/vidtok_kl_causal_488_4chn.ckpt"
    assert hub_filename(V11) == "checkpoints/vidtok_v1_1/vidtok_kl_causal_488_4chn_v1_1.ckpt"
    assert sum(hub_filename(n).startswith("checkpoints/vidtok_v1_1/") for n in vidtok.official_names()) == 7


def test_a_name_means_its_published_weights(hub: Path, tmp_path: Path) -> None:
    for name in (V10, V11):
        tok = vidtok.load_tokenizer(name, overrides=TINY)
        direct = vidtok.load_tokenizer(name, ckpt=tmp_path / "src" / f"{name}.ckpt", overrides=TINY)
        assert same_weights(tok, direct), name
        assert not tok.training and not any(p.requires_grad for p in tok.parameters())
    random = vidtok.load_tokenizer(V10, overrides=TINY, pretrained=False)
    assert not same_weights(random, direct)
    custom = tmp_path / "custom.yaml"
    with custom.open("w") as out:
        made = subprocess.run(
            [sys.executable, "-m", "vidtok.cli", "config", V10, "-o", "model.ch=4"], stdout=out, stderr=subprocess.PIPE
        )
    assert made.returncode == 0, made.stderr.decode()
    with pytest.raises(vidtok.ConfigError, match="no weights for .*custom.yaml.* or pretrained=False"):
        vidtok.load_tokenizer(str(custom))
    assert vidtok.load_tokenizer(str(custom), pretrained=False).config.model.ch == 4


@needs_shared(FIXTURES)
@pytest.mark.parametrize("folder", fixture_dirs(), ids=[p.name for p in fixture_dirs()])
def test_name_only_loading_gives_the_fixtures_reference_outputs(folder: Path, tmp_path, monkeypatch) -> None:
    meta = fixture_meta(folder)
    root = add_to_hub_cache(tmp_path / "hf", {meta["name"]: folder / "model.ckpt"})
    use_hub_cache(monkeypatch, root, tmp_path / "vidtok_cache")
    tok = vidtok.load_tokenizer(meta["name"], overrides=meta["overrides"])
    io = load_file(folder / "io.safetensors")
    with torch.no_grad():
        z = tok.encode(io["x"])
    assert (z - io["z"]).abs().max() <= 1e-4
    if "indices" in io:
        assert torch.equal(tok.encode_indices(io["x"]).to(torch.int64), io["indices"].to(torch.int64))


def test_missing_weights_give_one_error_naming_repository_file_and_what_to_do(tmp_path, monkeypatch) -> None:
    use_hub_cache(monkeypatch, add_to_hub_cache(tmp_path / "hf", {}), tmp_path / "vidtok_cache")
    for name, filename in ((V10, "checkpoints/vidtok_kl_causal_488_4chn.ckpt"), (V11, hub_filename(V11))):
        with pytest.raises(HubError) as err:
            vidtok.load_tokenizer(name)
        message = str(err.value)
        assert "microsoft/VidTok" in message and filename in message and "HF_HUB_OFFLINE=1" in message
        assert "--ckpt" in message and f"hf download microsoft/VidTok {filename}" in message
    with pytest.raises(HubError, match="not an official VidTok checkpoint"):
        pretrained_file("vidtok_kl_causal_999_4chn")


def test_the_converted_copy_is_reused_without_reading_the_ckpt_again(hub: Path, monkeypatch) -> None:
    first = vidtok.load_tokenizer(V11, overrides=TINY)
    copy = converted_path(V11, COMMIT)
    assert copy.is_file() and cached(V11).converted == copy and cached(V11).size > copy.stat().st_size

    def no_pickles(*args, **kwargs):
        raise AssertionError("the .ckpt was read again")

    monkeypatch.setattr(checkpoint_module, "_read_torch", no_pickles)
    monkeypatch.setattr(torch, "load", no_pickles)
    second = vidtok.load_tokenizer(V11, overrides=TINY)
    assert same_weights(first, second)


def test_a_damaged_converted_copy_is_converted_again(hub: Path) -> None:
    good = vidtok.load_tokenizer(V10, overrides=TINY)
    copy = converted_path(V10, COMMIT)
    damaged = copy.with_suffix(".damaged")
    damaged.write_bytes(copy.read_bytes()[: copy.stat().st_size // 2])  # truncated; a new file, as `good` maps the old
    damaged.replace(copy)
    again = vidtok.load_tokenizer(V10, overrides=TINY)
    assert same_weights(good, again) and load_file(copy)  # rewritten whole


def test_a_damaged_cached_checkpoint_is_reported_offline_and_fetched_again_online(hub: Path, monkeypatch) -> None:
    link = hub / "models--microsoft--VidTok" / "snapshots" / COMMIT / hub_filename(V10)
    blob = link.resolve()
    good = blob.read_bytes()
    blob.unlink()
    blob.write_bytes(good[: len(good) // 3])
    with pytest.raises(HubError, match=f"{link}.* is damaged.*delete it"):
        vidtok.load_tokenizer(V10, overrides=TINY)
    assert not converted_path(V10, COMMIT).exists()  # nothing was loaded from it

    from huggingface_hub import constants

    import vidtok.hub as hub_module

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    calls = []

    def fake_download(repo_id, filename, **kwargs):  # the Hub client, online: a forced download replaces the blob
        calls.append(kwargs["force_download"])
        if kwargs["force_download"]:
            blob.write_bytes(good)
        return str(link)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_download)
    tok = vidtok.load_tokenizer(V10, overrides=TINY)
    assert calls == [False, True] and hub_module.converted_path(V10, COMMIT).is_file()
    assert same_weights(tok, vidtok.load_tokenizer(V10, ckpt=link, overrides=TINY))


def test_revisions_are_separate_snapshots_and_copies(hub: Path, tmp_path: Path) -> None:
    other = "fedcba9876543210fedcba9876543210fedcba98"
    add_to_hub_cache(hub, {V10: official_stand_in(V10, tmp_path / "v2" / f"{V10}.ckpt", seed=1)}, other, "v2")
    main = vidtok.load_tokenizer(V10, overrides=TINY)
    tagged = vidtok.load_tokenizer(V10, overrides=TINY, revision="v2")
    assert not same_weights(main, tagged)
    assert converted_path(V10, COMMIT).is_file() and converted_path(V10, other).is_file()


def test_overrides_that_do_not_fit_the_published_weights_are_refused(hub: Path) -> None:
    with pytest.raises(vidtok.CheckpointError, match=r"model.ch=4 \(the config has 8\)"):
        vidtok.load_tokenizer(V10, overrides=["model.ch=8"])


# ---- the commands, without --ckpt ----------------------------------------------------------------------------


def test_commands_take_official_names_without_ckpt(
    hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, caplog
) -> None:
    """Every command takes an official name alone (its published weights, here the offline Hub cache's stand-ins).
    Run in this process: the console script and the Hydra apps around these entry functions are run as typed by
    the documentation tests (with full-width official-format weights)."""
    import logging

    from vidtok.cli import main as vidtok_cmd
    from vidtok.composition import compose_conf
    from vidtok.evaluation.entry import evaluate_from_hydra
    from vidtok.training.run import compose_train_config, train_from_hydra

    def run(*args: str) -> str:
        assert vidtok_cmd(list(args)) == 0, capsys.readouterr().err[-3000:]
        return capsys.readouterr().out

    monkeypatch.chdir(tmp_path)
    write_indexed_video(tmp_path / "videos" / "in.mp4", frames=9, fps=24, height=32, width=32)
    model = ["--tokenizer", V11, "-o", "model.ch=4", "--quiet"]
    assert "wrote out.mp4: 9 frames" in run("reconstruct", *model, "videos/in.mp4", "out.mp4")
    run("encode", *model, "videos/in.mp4", "t.safetensors")
    assert "wrote back.mp4" in run("decode", "t.safetensors", "back.mp4")
    listing = run("list")
    assert [line.split()[-2:] != ["no"] for line in listing.splitlines() if line.startswith(V11)] == [True]
    assert "MiB" in next(line for line in listing.splitlines() if line.startswith(V10))
    assert f"{V10}: " in run("download", V10, "-q")
    assert vidtok_cmd(["download", "vidtok_kl_causal_444_4chn"]) == 2
    assert "checkpoints/vidtok_kl_causal_444_4chn.ckpt" in capsys.readouterr().err

    evaluate = [f"tokenizer={V11}", "model.ch=4", "data.dir=videos", "height=32", "width=32", "clip_frames=9"]
    evaluate_from_hydra(compose_conf("eval", [*evaluate, "metrics.lpips=false", "output.dir=eval"], "eval"))
    assert "1 videos evaluated" in capsys.readouterr().out

    caplog.set_level(logging.INFO, logger="vidtok.train")
    train = ["experiment=debug", f"tokenizer={V10}", "model.ch=4", f"init_from={V10}", "data.path=videos"]
    train_from_hydra(compose_train_config([*train, "train.max_steps=1", "run_dir=run", "validation.every=100"]))
    assert "tokenizer initialised from" in caplog.text


# ---- save_pretrained / from_pretrained -------------------------------------------------------------------------


def test_save_pretrained_round_trips_exactly_with_config_and_model_card(hub: Path, tmp_path: Path) -> None:
    from vidtok import Tokenizer

    tok = vidtok.load_tokenizer(V11, overrides=TINY)  # the published (stand-in) weights
    out = tmp_path / "saved"
    tok.save_pretrained(out)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert vidtok.TokenizerConfig.from_any(__import__("json").loads((out / "config.json").read_text())) == tok.config
    back = Tokenizer.from_pretrained(out)
    assert back.config == tok.config and same_weights(back, tok) and not back.training
    card = (out / "README.md").read_text()
    for text in (V11, "v1.1, causal", "4 x 8 x 8", "KL, 4 channels", "(4, 5, 32, 32)", "license: mit", "library_name"):
        assert text in card, text
    params = sum(p.numel() for p in tok.parameters())
    assert f"{params:,}" in card and f"checkpoints/vidtok_v1_1/{V11}.ckpt" in card and COMMIT in card
    assert back.weights_source == tok.weights_source  # carried in the weights file's metadata
    # the same folder as a Hub repository, offline
    from hubcache import add_repo_to_hub_cache

    add_repo_to_hub_cache(hub, "someone/my-vidtok", {p.name: p for p in out.iterdir()})
    from_repo = Tokenizer.from_pretrained("someone/my-vidtok", local_files_only=True)
    assert same_weights(from_repo, tok) and from_repo.config == tok.config


def test_from_pretrained_takes_names_files_and_training_checkpoints(hub: Path, tmp_path: Path, capsys) -> None:
    from vidtok import Tokenizer
    from vidtok.cli import main as cli

    published = Tokenizer.from_pretrained(V10, overrides=TINY)
    assert same_weights(published, vidtok.load_tokenizer(V10, overrides=TINY))
    assert "published checkpoint checkpoints/vidtok_kl_causal_488_4chn.ckpt" in published.weights_source
    # vidtok convert output: one file that carries its config
    assert (
        cli(["convert", str(tmp_path / "src" / f"{V10}.ckpt"), str(tmp_path / "c.safetensors"), *("-o", "model.ch=4")])
        == 0
    )
    converted = Tokenizer.from_pretrained(tmp_path / "c.safetensors")
    assert same_weights(converted, published) and "converted by vidtok convert" in converted.weights_source
    # a training checkpoint folder (checkpoints/step_N/ holds tokenizer.safetensors with its config)
    step = tmp_path / "run" / "checkpoints" / "step_00000010"
    step.mkdir(parents=True)
    (step / "tokenizer.safetensors").write_bytes((tmp_path / "c.safetensors").read_bytes())
    assert same_weights(Tokenizer.from_pretrained(step), published)
    with pytest.raises(FileNotFoundError, match="holds no tokenizer"):
        Tokenizer.from_pretrained(tmp_path / "run")
