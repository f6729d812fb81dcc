"""Seam quality of spatial tiling: tiled against untiled reconstructions of frames that fit in memory.

    python benchmarks/tiling.py --tokenizer vidtok_kl_causal_488_4chn --ckpt vidtok_kl_causal_488_4chn.ckpt \
        --video clip.mp4 --size 256 --tiles 128:32 192:64

For each tile/overlap it reports the PSNR of the tiled reconstruction against the untiled one (higher
is closer; identical is infinite), the largest pixel difference, and how much larger the error is in
8-pixel bands around tile borders than elsewhere (``seam ratio``; 1 means no visible seams). Without
``--ckpt`` the weights are random, which exaggerates differences (random attention mixes the whole
frame); ``--fit STEPS`` first fits them to the clip (L1 on random crops, Adam), a stand-in for trained
weights where none can be had (use a narrow model: ``-o model.ch=32``). Without ``--video`` the
built-in moving-shapes clip is used.

    python benchmarks/tiling.py -o model.ch=32 --fit 400 --video clip.mp4 --size 256 --tiles 128:32 128:64
"""

from __future__ import annotations

import argparse
import time

import torch

import vidtok
from vidtok.io.video import frames_to_tensor, iter_frames
from vidtok.metrics import psnr
from vidtok.models.tiling import tile_starts
from vidtok.synthetic import moving_shapes


def border_mask(size: int, tile: int, overlap: int, band: int = 8) -> torch.Tensor:
    """True within ``band`` pixels of any tile edge that lies inside the frame (1-D)."""
    mask = torch.zeros(size, dtype=torch.bool)
    for start in tile_starts(size, tile, overlap):
        for edge in (start, start + tile):
            if 0 < edge < size:
                mask[max(0, edge - band) : edge + band] = True
    return mask


def fit(tok: vidtok.Tokenizer, x: torch.Tensor, steps: int, crop: int, frames: int, lr: float = 3e-4) -> float:
    """Fit ``tok`` to random ``frames x crop x crop`` crops of ``x`` with an L1 loss; returns the last loss."""
    gen = torch.Generator().manual_seed(0)
    tok.train().requires_grad_(True)
    optimizer = torch.optim.Adam(tok.parameters(), lr=lr)
    frames, crop = min(frames, x.shape[2]), min(crop, x.shape[-1])
    loss = torch.zeros(())
    for step in range(steps):
        t, i, j = (
            int(torch.randint(0, n + 1, (), generator=gen))
            for n in (x.shape[2] - frames, *(s - crop for s in x.shape[-2:]))
        )
        clip = x[:, :, t : t + frames, i : i + crop, j : j + crop]
        loss = (tok(clip) - clip).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"fit step {step:4d}: L1 {loss.item():.4f}", flush=True)
    tok.eval().requires_grad_(False)
    return loss.item()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", default="vidtok_kl_causal_488_4chn")
    parser.add_argument("--ckpt", default=None)
    parser.add_argument("-o", "--override", dest="overrides", action="append", default=[])
    parser.add_argument("--video", default=None, help="a video file (default: the built-in clip)")
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--tiles", nargs="+", default=["64:0", "64:16", "64:32", "96:32"], metavar="TILE:OVERLAP")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fit", type=int, default=0, metavar="STEPS", help="first fit the weights to the clip")
    parser.add_argument("--fit-crop", type=int, default=64, help="crop size of the fitting steps")
    parser.add_argument("--fit-frames", type=int, default=9, help="frames per fitting step")
    parser.add_argument("--fit-lr", type=float, default=3e-4, help="Adam learning rate of the fitting steps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    tok = vidtok.load_tokenizer(
        args.tokenizer, ckpt=args.ckpt, overrides=args.overrides, pretrained=args.ckpt is not None
    )
    if args.video:
        frames = torch.cat(list(iter_frames(args.video, size=(args.size, args.size), max_frames=args.frames)))
        x = frames_to_tensor(frames)
    else:
        x = moving_shapes(args.frames, args.size, args.size)
    if args.fit:
        start = time.perf_counter()
        fit(tok, x, args.fit, args.fit_crop, args.fit_frames, args.fit_lr)
        print(f"fitted {args.fit} steps in {time.perf_counter() - start:.0f} s")
    weights = (
        f"weights {args.ckpt}"
        if args.ckpt
        else (f"weights fitted to the clip ({args.fit} steps)" if args.fit else "random weights")
    )
    with torch.inference_mode():
        start = time.perf_counter()
        reference = tok(x)
        untiled_s = time.perf_counter() - start
        print(
            f"{tok.config.name}, {weights}, "
            f"input {tuple(x.shape)}; untiled {untiled_s:.1f} s, PSNR vs input {psnr(reference, x):.2f} dB"
        )
        print(
            f"{'tile':>5s} {'overlap':>7s} {'PSNR vs untiled':>16s} {'max diff':>9s} {'seam ratio':>10s} {'time s':>7s}"
        )
        for spec in args.tiles:
            tile, overlap = (int(v) for v in spec.split(":"))
            start = time.perf_counter()
            tiled = tok(x, tile=tile, tile_overlap=overlap)
            seconds = time.perf_counter() - start
            err = (tiled - reference).abs().mean(dim=(0, 1, 2))  # (H, W)
            rows, cols = border_mask(args.size, tile, overlap), border_mask(args.size, tile, overlap)
            seam = rows[:, None] | cols[None, :]
            ratio = (err[seam].mean() / err[~seam].mean()).item() if seam.any() and (~seam).any() else float("nan")
            print(
                f"{tile:5d} {overlap:7d} {psnr(tiled, reference):16.2f} {(tiled - reference).abs().max():9.4f} "
                f"{ratio:10.2f} {seconds:7.1f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
