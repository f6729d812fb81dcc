"""Export to diffusers: the folder ``vidtok export-diffusers`` writes loads in ``diffusers.AutoencoderVidTok`` and
computes what ours computes (v1.1 causal and non-causal models); v1.0 causal models are refused unless forced."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import vidtok
from vidtok.diffusers_export import diffusers_config, export_diffusers
from vidtok.errors import ExportError

diffusers = pytest.importorskip("diffusers", reason="diffusers (dev extra) is not installed")
WIDTH = ["model.ch=8"]


def perturbed(name: str) -> vidtok.Tokenizer:
    """Width 8 with every tensor perturbed (the zero-initialised temporal blocks would otherwise be identities)."""
    torch.manual_seed(0)
    tok = vidtok.load_tokenizer(name, overrides=WIDTH, pretrained=False)
    state = {k: v + 0.02 * torch.randn_like(v) if v.is_floating_point() else v for k, v in tok.state_dict().items()}
    tok.load_state_dict(state)
    return tok


def theirs(tok: vidtok.Tokenizer, x: torch.Tensor, out: Path) -> tuple[torch.Tensor, torch.Tensor]:
    export_diffusers(tok, out, force=True)
    model = diffusers.AutoencoderVidTok.from_pretrained(out).eval()
    with torch.no_grad():
        if tok.config.is_discrete:
            z, _ = model(x, encoder_mode=True)
        else:
            z = model(x, sample_posterior=False, encoder_mode=True)  # the posterior mean, as ours
        return z, model(x, sample_posterior=False).sample


@pytest.mark.parametrize(
    ("name", "frames"),
    [
        ("vidtok_kl_causal_488_4chn_v1_1", 17),
        ("vidtok_kl_causal_488_4chn_v1_1", 33),
        ("vidtok_fsq_causal_488_32768_v1_1", 17),
        ("vidtok_kl_noncausal_488_4chn", 16),
        ("vidtok_fsq_noncausal_488_262144", 16),
    ],
)
def test_diffusers_computes_what_we_compute(name: str, frames: int, tmp_path: Path) -> None:
    tok = perturbed(name)
    x = torch.rand((1, 3, frames, 32, 32), generator=torch.Generator().manual_seed(1)) * 2 - 1
    z_theirs, rec_theirs = theirs(tok, x, tmp_path / "out")
    with torch.no_grad():
        z, rec = tok.encode(x), tok(x)
    assert z.shape == z_theirs.shape and rec.shape == rec_theirs.shape
    assert (z - z_theirs).abs().max() <= 1e-4
    assert (rec - rec_theirs).abs().max() <= 1e-4


def test_v1_0_causal_models_are_exported_only_when_forced(tmp_path: Path, capsys) -> None:
    tok = perturbed("vidtok_kl_causal_488_4chn")
    with pytest.raises(ExportError, match="v1.0 causal model.*v1.1 maths.*force"):
        export_diffusers(tok, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    x = torch.rand((1, 3, 17, 32, 32), generator=torch.Generator().manual_seed(1)) * 2 - 1
    _, rec_theirs = theirs(tok, x, tmp_path / "forced")
    with torch.no_grad():
        assert (tok(x) - rec_theirs).abs().max() > 0.1  # what the warning says: diffusers computes it differently

    from vidtok.cli import main as cli

    ckpt = tmp_path / "vidtok_kl_causal_488_4chn.ckpt"
    torch.save({"state_dict": tok.state_dict()}, ckpt)
    assert cli(["export-diffusers", "--ckpt", str(ckpt), "-o", "model.ch=8", str(tmp_path / "cli")]) == 2
    assert "--force" in capsys.readouterr().err
    assert cli(["export-diffusers", "--ckpt", str(ckpt), "-o", "model.ch=8", "--force", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "config.json").is_file()


def test_config_mapping_covers_every_official_preset() -> None:
    for name in vidtok.official_names():
        config = vidtok.compose_tokenizer_config(name, WIDTH)
        args = diffusers_config(config)
        assert args["is_causal"] == config.causal and args["z_channels"] == config.latent_channels
        with torch.device("meta"):
            if args["regularizer"] == "kl":  # diffusers' FSQ cannot be built on the meta device
                model = diffusers.AutoencoderVidTok(**args)
                ours = vidtok.Tokenizer(config)
                assert {k: v.shape for k, v in model.state_dict().items()} == {
                    k: v.shape for k, v in ours.state_dict().items()
                }, name
