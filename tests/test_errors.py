"""Bad input gets a clear error that names what was expected and what was found."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

import vidtok

from conftest import random_video, tiny_tokenizer

NAME = "vidtok_kl_causal_488_4chn"


@pytest.fixture(scope="module")
def kl() -> vidtok.Tokenizer:
    return tiny_tokenizer(NAME, ch=4)


@pytest.fixture(scope="module")
def fsq() -> vidtok.Tokenizer:
    return tiny_tokenizer("vidtok_fsq_causal_488_4096", ch=4)


# ---- tensors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "x, pattern",
    [
        (torch.zeros(3, 5, 16, 16), r"shape \(B, 3, T, H, W\), got shape \(3, 5, 16, 16\).*unsqueeze\(2\)"),
        (torch.zeros(1, 4, 5, 16, 16), r"shape \(B, 3, T, H, W\), got shape \(1, 4, 5, 16, 16\)"),
        (torch.zeros(1, 3, 5, 16, 16, dtype=torch.uint8), r"floating-point .* got dtype torch.uint8"),
        (torch.zeros(1, 3, 5, 16, 16, dtype=torch.int64), r"floating-point .* got dtype torch.int64"),
        (torch.zeros(1, 3, 0, 16, 16), r"T >= 1 frames, got T=0"),
        (torch.zeros(1, 3, 5, 20, 16), r"multiples of 8, got 20x16"),
        (torch.full((1, 3, 5, 16, 16), 255.0), r"values in \[-1, 1\], got \[255, 255\].*127.5"),
        (torch.full((1, 3, 5, 16, 16), float("nan")), r"NaN"),
        ([[0.0]], r"torch.Tensor video"),
    ],
)
def test_bad_videos_are_refused(kl: vidtok.Tokenizer, x, pattern: str) -> None:
    with pytest.raises(vidtok.InputError, match=pattern):
        kl.encode(x)


def test_noncausal_frame_count_error_says_which_counts_work() -> None:
    tok = tiny_tokenizer("vidtok_kl_noncausal_488_4chn", ch=4)
    with pytest.raises(vidtok.InputError, match=r"multiple of 4 frames \(e.g. 16 or 20\), got T=17"):
        tok.encode(random_video(17))


@pytest.mark.parametrize(
    "z, pattern",
    [
        (torch.zeros(1, 5, 2, 2, 2), r"latents of shape \(B, 4, t>=1, h, w\), got shape \(1, 5, 2, 2, 2\)"),
        (torch.zeros(1, 4, 2, 2), r"got shape \(1, 4, 2, 2\)"),
        (torch.zeros(1, 4, 2, 2, 2, dtype=torch.int32), r"floating-point latents, got dtype torch.int32"),
    ],
)
def test_bad_latents_are_refused(kl: vidtok.Tokenizer, z, pattern: str) -> None:
    with pytest.raises(vidtok.InputError, match=pattern):
        kl.decode(z)


def test_bad_indices_are_refused(fsq: vidtok.Tokenizer) -> None:
    with pytest.raises(vidtok.InputError, match=r"integer tensor of code indices .* got torch.float32"):
        fsq.decode_indices(torch.zeros(1, 2, 2, 2))
    with pytest.raises(vidtok.InputError, match=r"\[0, 4096\).* got \[0, 4096\]"):
        fsq.decode_indices(torch.tensor([[[[0, 4096]]]]))
    with pytest.raises(vidtok.InputError, match=r"got \[-1, 0\]"):
        fsq.decode_indices(torch.tensor([[[[-1, 0]]]]))
    with pytest.raises(vidtok.InputError, match=r"shape \(B, t>=1, h, w\), got shape \(2, 2\)"):
        fsq.decode_indices(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="FSQ"):
        tiny_tokenizer(NAME, ch=4).encode_indices(random_video(1))
    with pytest.raises(ValueError, match="sample=True only applies to KL"):
        fsq.encode(random_video(1), sample=True)


# ---- checkpoints --------------------------------------------------------------------------------


def save_state(path: Path, state: dict) -> Path:
    torch.save({"state_dict": state}, path)
    return path


def test_missing_unexpected_and_misshaped_keys_are_all_listed(tmp_path: Path, kl: vidtok.Tokenizer) -> None:
    state = dict(kl.state_dict())
    state.pop("decoder.conv_out.conv.bias")
    state.pop("encoder.mid.attn_1.q.conv.weight")
    state["encoder.extra.weight"] = torch.zeros(2)
    state["decoder.norm_out.norm.weight"] = torch.zeros(7)
    path = save_state(tmp_path / "bad.ckpt", state)
    with pytest.raises(vidtok.CheckpointError) as info:
        vidtok.load_tokenizer(NAME, ckpt=path, overrides=["model.ch=4"])
    msg = str(info.value)
    assert "2 missing keys: decoder.conv_out.conv.bias, encoder.mid.attn_1.q.conv.weight" in msg
    assert "1 unexpected keys: encoder.extra.weight" in msg
    assert "decoder.norm_out.norm.weight (expected [4], found [7])" in msg


def test_wrong_width_gets_a_hint(tmp_path: Path, kl: vidtok.Tokenizer) -> None:
    path = save_state(tmp_path / "w4.ckpt", kl.state_dict())
    with pytest.raises(vidtok.CheckpointError, match=r"looks like model.ch=4 \(the config has 8\)"):
        vidtok.load_tokenizer(NAME, ckpt=path, overrides=["model.ch=8"])


def test_non_causal_weights_do_not_load_into_a_causal_model(tmp_path: Path) -> None:
    nc = tiny_tokenizer("vidtok_kl_noncausal_488_4chn", ch=4)
    path = save_state(tmp_path / "nc.ckpt", nc.state_dict())
    with pytest.raises(vidtok.CheckpointError, match="missing keys: decoder.conv_in.conv.bias"):
        vidtok.load_tokenizer(NAME, ckpt=path, overrides=["model.ch=4"])


@pytest.mark.parametrize(
    "content, pattern",
    [
        (b"", "is empty"),
        (b"hello, I am a text file\n", "is not a checkpoint.*found bytes b'hello, I'"),
        (b"\x00\x00\x00\x18ftypisom" + b"\x00" * 64, "is not a checkpoint"),
    ],
)
def test_files_that_are_not_checkpoints(tmp_path: Path, content: bytes, pattern: str) -> None:
    path = tmp_path / "model.ckpt"
    path.write_bytes(content)
    with pytest.raises(vidtok.CheckpointError, match=pattern):
        vidtok.load_tokenizer(NAME, ckpt=path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(vidtok.CheckpointError, match="does not exist"):
        vidtok.load_tokenizer(NAME, ckpt=tmp_path / "nope.ckpt")


def test_truncated_checkpoints(tmp_path: Path, kl: vidtok.Tokenizer) -> None:
    full = save_state(tmp_path / "full.ckpt", kl.state_dict()).read_bytes()
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(full[: len(full) // 2])
    with pytest.raises(vidtok.CheckpointError, match="truncated or corrupt"):
        vidtok.load_tokenizer(NAME, ckpt=cut, overrides=["model.ch=4"])
    from safetensors.torch import save_file

    save_file(dict(kl.state_dict()), str(tmp_path / "full.safetensors"))
    data = (tmp_path / "full.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) - 100])
    with pytest.raises(vidtok.CheckpointError, match="truncated or corrupt"):
        vidtok.load_tokenizer(NAME, ckpt=tmp_path / "cut.safetensors", overrides=["model.ch=4"])


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickles_that_need_code_execution_are_refused(tmp_path: Path, kl: vidtok.Tokenizer) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": dict(kl.state_dict()), "payload": _Exploit(marker)}, path)
    assert zipfile.is_zipfile(path)
    with pytest.raises(vidtok.CheckpointError, match=r"refusing to load .*execute pickled code.*(system|posix)"):
        vidtok.load_tokenizer(NAME, ckpt=path, overrides=["model.ch=4"])
    assert not marker.exists()
    legacy = tmp_path / "legacy.pt"
    with legacy.open("wb") as fh:
        pickle.dump({"state_dict": {}, "payload": _Exploit(marker)}, fh, protocol=2)
    with pytest.raises(vidtok.CheckpointError):
        vidtok.load_tokenizer(NAME, ckpt=legacy)
    assert not marker.exists()


def test_checkpoint_without_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "list.ckpt"
    torch.save([1, 2, 3], path)
    with pytest.raises(vidtok.CheckpointError, match="holds no state dict.*found list"):
        vidtok.load_tokenizer(NAME, ckpt=path)
    torch.save({"state_dict": {"encoder.x": 3}}, path)
    with pytest.raises(vidtok.CheckpointError, match="not tensors: encoder.x"):
        vidtok.load_tokenizer(NAME, ckpt=path)


# ---- configs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, overrides, pattern",
    [
        ("vidtok_nope", [], r"unknown tokenizer 'vidtok_nope': expected one of the official names"),
        (NAME, ["compression=999"], r"Could not find 'compression/999'"),
        (NAME, ["model.chh=3"], r"chh"),
        (NAME, ["model.ch=abc"], r"model.ch"),
        (NAME, ["compression.temporal=8"], r"compression.temporal=8 does not match compression.temporal_down"),
        (NAME, ["regularizer=fsq", "regularizer.channels=4"], r"one latent channel per level"),
        (NAME, ["model.temporal_pad=reflect"], r"model.temporal_pad must be one of"),
        (NAME, ["model=noncausal", "model.temporal_upsample=linear"], r"only apply to causal models"),
        (
            NAME,
            ["compression.temporal_down=[0]", "compression.temporal=2", "compression.temporal_up=[5]"],
            r"compression.temporal_up must list distinct levels in 0..3",
        ),
    ],
)
def test_bad_configs_name_the_value(name: str, overrides: list[str], pattern: str) -> None:
    with pytest.raises(vidtok.ConfigError, match=pattern):
        vidtok.compose_tokenizer_config(name, overrides)


def test_unnamed_checkpoint_needs_a_name(tmp_path: Path, kl: vidtok.Tokenizer) -> None:
    path = save_state(tmp_path / "my_weights.ckpt", kl.state_dict())
    with pytest.raises(vidtok.ConfigError, match="cannot tell which tokenizer .*my_weights.ckpt"):
        vidtok.load_tokenizer(ckpt=path)


def test_stage_configs_compose_and_validate() -> None:
    from omegaconf import OmegaConf

    from vidtok.composition import conf_dir
    from vidtok.training.config import StageConfig

    def load(name: str, **changes) -> StageConfig:
        preset = OmegaConf.load(conf_dir() / "stage" / f"{name}.yaml")
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(StageConfig), preset, changes))

    low = load("lowres").validate(spatial_factor=8)
    assert (low.resolution, low.freeze_encoder) == (128, False)
    high = load("highres_decoder", init_from="stage1.safetensors").validate(spatial_factor=16)
    assert (high.resolution, high.freeze_encoder) == (256, True)
    with pytest.raises(vidtok.ConfigError, match="stage.init_from must name the checkpoint"):
        load("highres_decoder", init_from=None).validate()
    with pytest.raises(vidtok.ConfigError, match="multiple of the spatial factor 16, got 200"):
        load("lowres", resolution=200).validate(spatial_factor=16)


# ---- files written into place ------------------------------------------------------------------


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    from vidtok.io.files import read_json, replaced_atomically, write_atomic

    path = write_atomic(tmp_path / "state.json", b'{"step": 1}')
    with pytest.raises(RuntimeError, match="disk full"), replaced_atomically(path) as tmp:
        tmp.write_bytes(b'{"st')
        raise RuntimeError("disk full")
    assert read_json(path, ValueError, "state", "-") == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
    path.write_bytes(b'{"st')  # torn by hand
    with pytest.raises(vidtok.ConfigError, match=r"state .*state.json is unreadable \(.*\); remove it"):
        read_json(path, vidtok.ConfigError, "state", "remove it")
