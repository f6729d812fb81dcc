"""InferenceOptions: one checked object for chunks, tiles and padding, passed from every entry point down."""

from __future__ import annotations

import pytest
import torch
from test_commands import write_clip

import vidtok
from vidtok import InferenceOptions, InputError
from vidtok.evaluation import EvalConfig
from vidtok.inference import ReadSettings, encode_video, reconstruct_video

from conftest import random_video, tiny_tokenizer

CAUSAL = "vidtok_kl_causal_488_4chn_v1_1"
NONCAUSAL = "vidtok_kl_noncausal_488_4chn"


@pytest.fixture(scope="module")
def tok() -> vidtok.Tokenizer:
    return tiny_tokenizer(CAUSAL)


@pytest.fixture
def full_checks(monkeypatch) -> list[str]:
    """The models that ``InferenceOptions.checked`` checked an object against, one entry per call that did the work
    (not those that found the object checked already)."""
    done: list[str] = []
    check = InferenceOptions.checked

    def counted(self: InferenceOptions, config) -> InferenceOptions:
        if not self.is_checked_for(config):
            done.append(config.label)
        return check(self, config)

    monkeypatch.setattr(InferenceOptions, "checked", counted)
    return done


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        ({"tile": 12}, r"tile must be a positive multiple of 8 pixels .*got 12"),
        ({"tile": 32, "tile_overlap": 4}, r"tile_overlap must be a multiple of 8 .*got 4"),
        ({"tile_overlap": 8}, r"tile_overlap \(8\) needs tile"),
        ({"chunk_frames": 6}, r"chunk_frames must be a positive multiple of 4 .*e\.g\. 4, 8, 16, 32.*got 6"),
        ({"chunk_latents": 0}, r"chunk_latents must be a positive multiple of 1"),
        ({"chunk_frames": True}, r"chunk_frames must be"),
        ({"pad": "yes"}, r"pad must be True or False"),
    ],
)
def test_every_bad_option_is_one_error_type(tok, options: dict, pattern: str) -> None:
    with pytest.raises(InputError, match=pattern):
        InferenceOptions(**options).checked(tok.config)
    with pytest.raises(InputError, match=pattern):  # the same check, the same error, through the model
        tok(random_video(5, 32), **options)
    with pytest.raises(InputError) as fresh:
        InferenceOptions(**options).checked(tok.config)
    with pytest.raises(InputError) as changed:  # and when a checked object is changed
        InferenceOptions().checked(tok.config).replace(**options)
    assert str(changed.value) == str(fresh.value)


def test_checked_fills_the_overlap_and_is_done_once(tok) -> None:
    opts = InferenceOptions(tile=64).checked(tok.config)
    assert opts.tile_overlap == 16  # a quarter tile, a multiple of the spatial factor
    assert opts.checked(tok.config) is opts  # not checked again for the same model
    assert InferenceOptions(tile=40).checked(tok.config).tile_overlap == 8  # 40 // 4 = 10, rounded down to 8
    assert opts == InferenceOptions(tile=64, tile_overlap=16)  # the check mark does not take part in equality
    assert opts.replace(tile=64) is opts and opts.replace(tile=32).tile_overlap == 16


def test_replace_keeps_a_checked_object_checked(tok, full_checks) -> None:
    opts = InferenceOptions(tile=64).checked(tok.config)
    padded = opts.replace(pad=True)
    assert padded.is_checked_for(tok.config) and padded.pad and padded.tile_overlap == 16
    assert padded.replace(tile=None, tile_overlap=None).is_checked_for(tok.config)
    assert padded.checked(tok.config) is padded
    assert full_checks == [tok.config.label]  # the first check only: replace checks just the fields it changes
    assert not InferenceOptions().replace(pad=True).is_checked_for(tok.config)  # an unchecked object stays so


def test_options_checked_for_another_model_are_checked_afresh(tok) -> None:
    """Keywords on top of options checked for one model are judged by the model they are handed to: a 40-pixel
    tile is valid for a 4x8x8 model but not for a 4x16x16 one, and the message names the model that refuses it."""
    wide = tiny_tokenizer("vidtok_kl_causal_41616_4chn", ch=4)
    for_wide = InferenceOptions(tile=64).checked(wide.config)
    x = random_video(5, 32)
    with torch.no_grad():
        z = tok.encode(x, options=for_wide, tile=40)  # valid here, though not for the model it was checked for
    assert z.shape[-1] == 4
    with pytest.raises(InputError, match=r"tile must be a positive multiple of 8 pixels for vidtok_kl_causal_488"):
        tok.encode(x, options=InferenceOptions(tile=64).checked(wide.config), tile=12)
    with pytest.raises(InputError, match=r"multiple of 16 .*vidtok_kl_causal_41616_4chn"):
        wide.encode(random_video(5, 64), options=InferenceOptions(tile=32).checked(tok.config), tile=24)


def test_non_causal_models_refuse_chunks() -> None:
    config = tiny_tokenizer(NONCAUSAL).config
    for field in ("chunk_frames", "chunk_latents"):
        with pytest.raises(InputError, match=rf"non-causal.*chunk by chunk \({field}=8\)"):
            InferenceOptions(**{field: 8}).checked(config)
    assert InferenceOptions(tile=32, pad=True).checked(config).tile_overlap == 8
    with pytest.raises(InputError, match=r"non-causal.*chunk by chunk \(chunk_frames=8\)"):
        InferenceOptions().checked(config).replace(chunk_frames=8)


def test_options_object_equals_keywords(tok) -> None:
    x = random_video(9, 48)  # two 32-pixel tiles per side
    opts = InferenceOptions(chunk_frames=4, chunk_latents=1, tile=32, tile_overlap=8)
    with torch.no_grad():
        assert torch.equal(tok(x, options=opts), tok(x, chunk_frames=4, chunk_latents=1, tile=32, tile_overlap=8))
        z = tok.encode(x, options=opts)  # encode reads only its own fields of a shared object
        assert torch.equal(z, tok.encode(x, chunk_frames=4, tile=32, tile_overlap=8))
        assert torch.equal(tok.decode(z, options=opts), tok.decode(z, chunk_latents=1, tile=32, tile_overlap=8))
        # keywords on top of an object win
        assert torch.equal(tok.encode(x, options=opts, tile=None), tok.encode(x, options=opts))  # None: not given
        assert not torch.equal(tok.encode(x, options=opts, tile_overlap=16), z)


def test_stray_and_unknown_keywords_are_refused(tok) -> None:
    x = random_video(5, 32)
    with pytest.raises(
        TypeError, match=r"encode takes the options chunk_frames, tile, tile_overlap, pad; got chunk_latents"
    ):
        tok.encode(x, chunk_latents=2)
    with pytest.raises(TypeError, match=r"decode takes the options .*got chunk_frames"):
        tok.decode(tok.encode(x), chunk_frames=4)
    with pytest.raises(TypeError, match="unknown inference option"):
        InferenceOptions().replace(tiles=2)
    with pytest.raises(TypeError, match="options must be an InferenceOptions"):
        tok.encode(x, options={"tile": 32})


def test_streams_take_the_same_options(tok) -> None:
    x = random_video(9, 32)
    opts = InferenceOptions(chunk_frames=8, tile=32, tile_overlap=8)
    with torch.no_grad(), tok.encoder_stream(options=opts) as enc:
        assert enc.options.chunk_frames == 8 and (enc.options.tile, enc.options.tile_overlap) == (32, 8)
        z = torch.cat([enc.push(x), enc.finish()], dim=2)
    assert torch.allclose(z, tok.encode(x, tile=32, tile_overlap=8), atol=1e-5)
    assert tok.encoder_stream(4, options=opts).options.chunk_frames == 4  # the argument wins over the options
    assert tok.decoder_stream().options.chunk_latents == 4  # the defaults
    assert tok.encoder_stream().options.chunk_frames == 16
    with pytest.raises(InputError, match="non-causal"):
        tiny_tokenizer(NONCAUSAL).encoder_stream()


def test_eval_config_gives_the_options(tok) -> None:
    clips = EvalConfig.from_any({"data": {"dir": "videos"}, "tile": 32})
    assert clips.inference_options(tok.config) == InferenceOptions(tile=32, tile_overlap=8)
    whole = EvalConfig.from_any({"data": {"dir": "videos"}, "mode": "whole", "chunk_frames": 8})
    assert whole.inference_options(tok.config) == InferenceOptions(chunk_frames=8, chunk_latents=2)
    assert whole.clip_length(True) == 17 and whole.clip_length(False) == 16  # clips do not follow chunk_frames
    with pytest.raises(vidtok.ConfigError, match="tile must be a positive multiple of 8"):
        EvalConfig.from_any({"data": {"dir": "videos"}, "tile": 30}).inference_options(tok.config)


@pytest.mark.parametrize("name", [CAUSAL, NONCAUSAL])
def test_a_file_pass_checks_its_options_once(name: str, full_checks, tmp_path) -> None:
    tok = tiny_tokenizer(name)
    clip = write_clip(tmp_path / "in.mp4", frames=9, height=24, width=24)
    reading = ReadSettings(height=24, width=24, clip_frames=8)  # non-causal: clips of 8 frames, the last padded
    options = InferenceOptions(tile=16, tile_overlap=8)  # 2 x 2 tiles
    reconstruct_video(tok, clip, tmp_path / "out.mp4", reading=reading, options=options)
    assert full_checks == [tok.config.label]  # once for the whole video, not once per clip, stream or pass
    encode_video(tok, clip, reading=reading, options=options)
    assert full_checks == [tok.config.label] * 2
    checked = options.checked(tok.config)
    full_checks.clear()
    reconstruct_video(tok, clip, tmp_path / "again.mp4", reading=reading, options=checked)
    encode_video(tok, clip, reading=reading, options=checked)
    assert full_checks == []  # a checked object is passed down as it is
