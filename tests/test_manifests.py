"""Every official preset at full width has exactly the official checkpoint's keys and shapes.

The manifests (../shared/manifests) list the state-dict keys and shapes of the 23 published
checkpoints and the shapes the original produces for a (1, 3, 17, 256, 256) input. Models are built
on the meta device, so this covers full-size networks in seconds.
"""

from __future__ import annotations

import json

import pytest
import torch

import vidtok

from conftest import MANIFESTS, needs_shared

pytestmark = needs_shared(MANIFESTS)


def manifest(name: str) -> dict:
    return json.loads((MANIFESTS / f"{name}.json").read_text())


def test_there_is_one_preset_per_manifest(official: list[str]) -> None:
    names = sorted(p.stem for p in MANIFESTS.glob("vidtok_*.json"))
    assert official == names
    assert len(official) == 23


@pytest.mark.parametrize("name", vidtok.official_names())
def test_preset_keys_shapes_and_sizes_match_manifest(name: str) -> None:
    m = manifest(name)
    config = vidtok.compose_tokenizer_config(name)
    with torch.device("meta"):
        tok = vidtok.Tokenizer(config)
    ours = {k: list(v.shape) for k, v in tok.state_dict().items()}
    assert ours == m["state_dict"]
    assert sum(p.numel() for p in tok.encoder.parameters()) == m["params_encoder"]
    assert sum(p.numel() for p in tok.decoder.parameters()) == m["params_decoder"]
    assert config.causal == m["is_causal"]
    assert config.temporal_factor == m["time_downsample_factor"]
    assert config.version == m["version"]
    if config.is_discrete:
        levels = m["regularizer_params"]["levels"]
        assert config.regularizer.levels == levels
        assert config.codebook_size == int(torch.tensor(levels).prod())


@pytest.mark.parametrize("name", vidtok.official_names())
def test_preset_latent_and_output_shapes_match_manifest(name: str) -> None:
    """Shapes for the manifest's (1, 3, 17, 256, 256) input (16 frames for non-causal models, as the
    original drops the 17th; v1.1 decode returns f-1 padding frames that we drop)."""
    m = manifest(name)
    with torch.device("meta"):
        tok = vidtok.Tokenizer(vidtok.compose_tokenizer_config(name))
        frames = 17 if tok.config.causal else 16
        moments = tok.encoder(tok._pad_frames(torch.empty(1, 3, frames, 256, 256)))
        latents = tok.regularizer(moments)
        video = tok.decode(latents)
    assert list(moments.shape) == m["encoder_output_shape_1x3x17x256x256"]
    assert list(latents.shape) == m["latent_shape_1x3x17x256x256"]
    assert list(video.shape) == m["forward_output_shape_1x3x17x256x256"]
    assert tok.latent_frames(frames) == m["latent_shape_1x3x17x256x256"][2]


@pytest.mark.slow
def test_load_tokenizer_full_width_matches_manifest_for_every_name(official: list[str]) -> None:
    for name in official:
        with torch.device("meta"):  # shapes only: no 150M random weights to draw, 23 times
            tok = vidtok.load_tokenizer(name, pretrained=False, device="meta")
        assert {k: list(v.shape) for k, v in tok.state_dict().items()} == manifest(name)["state_dict"], name
        assert not tok.training and not any(p.requires_grad for p in tok.parameters())
        del tok


def test_training_only_loss_keys_are_ignored_when_loading(tmp_path) -> None:
    """Official checkpoints carry `loss.*` entries (LPIPS, discriminator); they are not the tokenizer's."""
    name = "vidtok_kl_causal_488_4chn"
    m = manifest(name)
    assert m["loss_state_dict_num_keys"] > 0
    tok = vidtok.build_tokenizer(vidtok.compose_tokenizer_config(name, ["model.ch=4"]))
    state = dict(tok.state_dict())
    state.update({k: torch.zeros(s) for k, s in list(m["loss_state_dict"].items())[:5]})
    torch.save({"state_dict": state, "global_step": 10}, tmp_path / "train.ckpt")
    loaded = vidtok.load_tokenizer(name, ckpt=tmp_path / "train.ckpt", overrides=["model.ch=4"])
    assert set(loaded.state_dict()) == {k for k in state if not k.startswith("loss.")}
