"""decode.py throughput: frames/s of the whole job beside frames/s of the decoder alone on the same latents.

    python benchmarks/decode.py                                    # KL 488 v1.1, full width, 17x128x128 clips
    python benchmarks/decode.py --samples 8 --size 256 --device cuda --precision bf16

Latents of ``--samples`` clips of 17 frames at ``--size`` x ``--size`` (random normal values, the preset's latent
shape; speed does not depend on the values) are written as raw ``.pt`` tensors, the way a generative model would
write them. ``job`` runs the library's ``decode_dataset`` (what ``decode.py`` runs: each file read in a background
thread, the causal decoder stream of ``chunk_latents`` latent frames, frames to uint8, the h264 mp4 writer) with a
tokenizer of random weights of the preset at ``model.ch = --width`` (128: full width). ``decoder only`` runs
``tok.decode`` on the same latents, already in memory. Both after an untimed warm-up; ``share`` is job / decoder.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from common import add_job_model_arguments, job_device, sync


def decoder_only(tok, latents: list[torch.Tensor], device: torch.device, autocast) -> tuple[int, float]:
    """(frames, seconds) of tok.decode alone on ``latents`` (each (1, C, t, h, w))."""
    with torch.inference_mode(), autocast:
        tok.decode(latents[0].to(device))  # warm-up
        sync(device)
        start = time.perf_counter()
        frames = 0
        for z in latents:
            frames += tok.decode(z.to(device)).shape[2]
        sync(device)
    return frames, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--frames", type=int, default=17, help="frames each sample decodes to")
    parser.add_argument("--size", type=int, default=128, help="decoded frame side in pixels")
    add_job_model_arguments(parser)
    args = parser.parse_args(argv)

    import vidtok
    from vidtok.decoding import DecodeConfig, decode_dataset
    from vidtok.io.weight_files import save_tokenizer_safetensors

    device = job_device(args)
    tok = vidtok.load_tokenizer(args.tokenizer, overrides=[f"model.ch={args.width}"], pretrained=False)
    c = tok.config
    shape = (
        c.latent_channels,
        c.latent_frames(args.frames),
        args.size // c.spatial_factor,
        args.size // c.spatial_factor,
    )
    print(f"# {args.tokenizer} model.ch={args.width}, {args.samples} samples of {args.frames}x{args.size}x{args.size} "
          f"(latents {shape}), precision {args.precision}")  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    latents = [torch.randn((1, *shape), generator=gen) for _ in range(args.samples)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ckpt = save_tokenizer_safetensors(tok.state_dict(), c, root / "tok.safetensors")
        tok = tok.to(device).eval()
        (root / "gen").mkdir()
        for i, z in enumerate(latents):
            torch.save(z[0], root / "gen" / f"s{i:03d}.pt")
        (root / "warm").mkdir()
        torch.save(latents[0][0], root / "warm" / "w.pt")
        cfg = {"ckpt": str(ckpt), "data": {"dir": str(root / "gen")}, "precision": args.precision,
               "device": str(device), "output": {"dir": str(root / "out"), "progress": False}}  # fmt: skip
        decode_dataset(dict(cfg, data={"dir": str(root / "warm")}, output={"dir": str(root / "w"), "progress": False}),
                       tokenizer=tok)  # fmt: skip
        result = decode_dataset(cfg, tokenizer=tok)
        autocast = DecodeConfig.from_any(cfg).autocast(device)
        frames, seconds = decoder_only(tok, latents, device, autocast)
    job_fps, model_fps = result.frames / result.seconds, frames / seconds
    print(f"{'frames':>7s} {'job s':>7s} {'job f/s':>8s} {'decoder f/s':>11s} {'share':>6s}")
    print(f"{result.frames:7d} {result.seconds:7.1f} {job_fps:8.2f} {model_fps:11.2f} {job_fps / model_fps:6.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
