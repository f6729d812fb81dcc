"""Every tensor the tokenizer, its streams, tiling and the file pipelines make follows the input's device and dtype.

Checked without a GPU in two ways. On the meta device (shapes only, no arithmetic), a tensor made on the CPU that
meets the input fails the op, and every result must be a meta tensor: this covers the inference forms (fused time
upsampling, whose frame bookkeeping is real host arithmetic on shapes) and, with grad mode on, the general forms
(what autocast runs). A fake CUDA device (``FakeTensorMode``: CUDA tensors that hold no memory) covers the general
forms on the device type itself; the fused forms cannot run there, as their host bookkeeping would be faked too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from videos import write_indexed_video

import vidtok
from vidtok.inference import ReadSettings, decode_frames, encode_video, reconstruct_video
from vidtok.inference import pipeline as file_pipeline

NAMES = [
    "vidtok_kl_causal_488_4chn",
    "vidtok_kl_causal_488_4chn_v1_1",
    "vidtok_kl_noncausal_488_4chn",
    "vidtok_fsq_causal_488_262144",
]


def built_on(device: str, name: str, dtype: torch.dtype = torch.float32) -> vidtok.Tokenizer:
    with torch.device(device):
        tok = vidtok.Tokenizer(vidtok.compose_tokenizer_config(name, ["model.ch=8"]))
    if dtype != torch.float32:
        tok = tok.to(dtype)
    return tok.eval().requires_grad_(False)


def passes(tok: vidtok.Tokenizer, x: torch.Tensor, every: bool = True) -> dict:
    """The passes of ``tok`` on ``x``: full, indices (FSQ); with ``every`` also tiled, chunked and streamed
    (causal models)."""
    runs = {"encode": lambda: tok.encode(x), "decode": lambda: tok.decode(tok.encode(x))}
    if tok.config.is_discrete:
        runs["indices"] = lambda: tok.decode_indices(tok.encode_indices(x))
        if every and tok.config.causal:  # (the networks are a KL model's: their other passes are checked there)
            runs["indices chunked"] = lambda: tok.decode_indices(tok.encode_indices(x, chunk_frames=8), chunk_latents=2)
    if not every or tok.config.is_discrete:
        return runs
    runs["tiled"] = lambda: tok(x, tile=16, tile_overlap=8)
    if tok.config.causal:
        runs["chunked"] = lambda: tok.decode(tok.encode(x, chunk_frames=8), chunk_latents=2)
        runs["chunked tiled"] = lambda: tok(x, chunk_frames=16, chunk_latents=4, tile=16, tile_overlap=8)
        runs["encoder stream, nothing complete"] = lambda: tok.encoder_stream(chunk_frames=8).push(x[:, :, :0])
        runs["decoder stream, nothing complete"] = lambda: tok.decoder_stream(chunk_latents=2).push(
            tok.encode(x)[:, :, :1]
        )
    return runs


def frames_for(tok: vidtok.Tokenizer) -> int:
    return 17 if tok.config.causal else 16


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("grad", [False, True], ids=["inference forms", "general forms"])
def test_every_pass_stays_on_the_meta_device(name: str, grad: bool) -> None:
    tok = built_on("meta", name)
    x = torch.empty(1, 3, frames_for(tok), 24, 24, device="meta")  # 2x2 tiles of 16
    with torch.enable_grad() if grad else torch.inference_mode():
        for what, run in passes(tok, x).items():
            out = run()
            assert out.device.type == "meta", (what, out.device)
            if out.is_floating_point():
                assert out.dtype == torch.float32, (what, out.dtype)


@pytest.mark.parametrize("name", ["vidtok_kl_causal_488_4chn_v1_1", "vidtok_fsq_causal_488_262144"])
def test_half_precision_weights_give_results_of_their_dtype(name: str) -> None:
    tok = built_on("meta", name, torch.bfloat16)
    x = torch.empty(1, 3, 17, 24, 24, device="meta")
    with torch.inference_mode():
        for what, run in passes(tok, x, every=False).items():
            out = run()
            assert out.device.type == "meta" and (out.dtype == torch.bfloat16 or not out.is_floating_point()), what


def test_general_forms_stay_on_a_fake_cuda_device() -> None:
    """v1.1 (linear time upsampling, the first frame group carried as one frame): the richer of the two designs."""
    with FakeTensorMode():
        tok = built_on("cuda", "vidtok_kl_causal_488_4chn_v1_1")
        x = torch.empty(1, 3, 17, 24, 24, device="cuda")
        with torch.enable_grad():
            for what, run in passes(tok, x).items():
                out = run()
                assert out.device.type == "cuda", (what, out.device)


def test_a_stream_with_nothing_complete_answers_like_its_other_results() -> None:
    """An empty result has the device and dtype of the stream's other results, under autocast too, so joining
    them keeps both (a CPU float32 empty among bf16 results used to promote the join, or fail on a GPU)."""
    from conftest import tiny_tokenizer

    tok = tiny_tokenizer("vidtok_kl_causal_488_4chn_v1_1")
    x = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    for autocast in (False, True):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            with tok.encoder_stream(chunk_frames=8) as enc:
                empty, latents = enc.push(x[:, :, :1]), enc.finish()
            assert empty.shape[2] == 0 and latents.shape[2] > 0
            assert (empty.dtype, empty.device) == (latents.dtype, latents.device), autocast
            with tok.decoder_stream(chunk_latents=4) as dec:
                nothing, frames = dec.push(latents[:, :, :1]), dec.finish()
            assert nothing.shape[2] == 0 and frames.shape[2] > 0
            assert (nothing.dtype, nothing.device) == (frames.dtype, frames.device), autocast


@pytest.mark.parametrize("name", ["vidtok_kl_causal_488_4chn_v1_1", "vidtok_fsq_noncausal_488_262144"])
def test_file_pipelines_run_where_the_tokenizer_is(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames read from a file go to the tokenizer's device and results come back to the host: with the
    tokenizer on the meta device (results brought back as zeros of their shape), a frame left on the host or a
    result never brought back fails here as it would on a GPU."""
    video = write_indexed_video(tmp_path / "in.mp4", frames=17, fps=24, height=24, width=24)
    tok = built_on("meta", name)
    brought_back = []

    def to_host(t: torch.Tensor) -> torch.Tensor:
        assert t.device.type == "meta", t.device
        brought_back.append(t.shape)
        return torch.zeros(t.shape, dtype=t.dtype)

    monkeypatch.setattr(file_pipeline, "to_host", to_host)
    chunks = {"chunk_frames": 8, "chunk_latents": 2} if tok.config.causal else {}
    reading, options = ReadSettings(clip_frames=16), vidtok.InferenceOptions(**chunks)
    for indices in (False, True) if tok.config.is_discrete else (False,):
        tokens = encode_video(tok, video, reading=reading, options=options, indices=indices)
        assert tokens.data.device.type == "cpu"
        frames = list(decode_frames(tok, tokens, options=options))
        assert sum(f.shape[0] for f in frames) == tokens.frames and all(f.device.type == "cpu" for f in frames)
    report = reconstruct_video(tok, video, tmp_path / "out.mp4", reading=reading, options=options)
    assert report["frames"] == 17
    assert brought_back


def test_a_model_on_one_device_and_frames_on_another_meet_on_the_model() -> None:
    """``reconstruct_stream`` takes chunks from anywhere (a reader on the host, say) and works where the model is."""
    from vidtok.inference import reconstruct_stream

    tok = built_on("meta", "vidtok_kl_causal_488_4chn_v1_1")
    chunks = [torch.zeros(1, 3, 8, 32, 32), torch.zeros(1, 3, 9, 32, 32)]
    with torch.inference_mode():
        pairs = list(reconstruct_stream(tok, chunks, options=vidtok.InferenceOptions(chunk_frames=8)))
    assert sum(p[1].shape[2] for p in pairs) == 17 and all(p[1].device.type == "meta" for p in pairs)
