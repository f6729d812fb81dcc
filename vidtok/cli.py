"""The ``vidtok`` console script.

vidtok list                              the official tokenizers and what they produce
vidtok config NAME [-o key=value ...]    print a tokenizer's resolved config as YAML
vidtok convert IN.ckpt OUT.safetensors   official checkpoint -> safetensors with the config inside
vidtok demo [--tokenizer NAME] [--ckpt FILE]
                                         tokenize a built-in clip and report shapes, speed, PSNR
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import OmegaConf

from .checkpoint import CheckpointError, save_tokenizer_safetensors
from .config import ConfigError, compose_tokenizer_config, official_names
from .loading import load_tokenizer
from .models import InputError
from .synthetic import moving_shapes

DEFAULT_TOKENIZER = "vidtok_kl_causal_488_4chn"


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--override",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, e.g. -o model.ch=16 (repeatable)",
    )


def cmd_list(args: argparse.Namespace) -> int:
    header = f"{'name':38s} {'version':7s} {'causal':6s} {'factors':8s} {'latent':8s} {'codebook':>9s}"
    print(header)
    print("-" * len(header))
    for name in official_names():
        c = compose_tokenizer_config(name)
        latent = f"FSQ {c.latent_channels}" if c.is_discrete else f"KL {c.latent_channels}"
        codebook = f"{c.codebook_size:,}" if c.is_discrete else "-"
        factors = "x".join(map(str, c.factors))
        print(f"{name:38s} {c.version:7s} {'yes' if c.causal else 'no':6s} {factors:8s} {latent:8s} {codebook:>9s}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    config = compose_tokenizer_config(args.name, args.overrides)
    print(OmegaConf.to_yaml(OmegaConf.structured(config)), end="")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    tokenizer = load_tokenizer(args.tokenizer, ckpt=args.input, overrides=args.overrides)
    out = save_tokenizer_safetensors(tokenizer.state_dict(), tokenizer.config, args.output)
    n = sum(p.numel() for p in tokenizer.parameters())
    print(f"wrote {out} ({tokenizer.config.name or 'custom config'}, {n:,} parameters)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    torch.manual_seed(0)
    name = args.tokenizer or (None if args.ckpt else DEFAULT_TOKENIZER)
    tokenizer = load_tokenizer(name, ckpt=args.ckpt, overrides=args.overrides)
    cfg = tokenizer.config
    frames = args.frames if args.frames else (17 if cfg.causal else 16)
    video = moving_shapes(frames, args.size, args.size)
    params = sum(p.numel() for p in tokenizer.parameters())
    print(
        f"tokenizer  {cfg.name or name}  ({cfg.version}, {'causal' if cfg.causal else 'non-causal'}, "
        f"{'x'.join(map(str, cfg.factors))}, {params / 1e6:.1f}M parameters, "
        f"{'weights from ' + str(args.ckpt) if args.ckpt else 'random weights: quality numbers are meaningless'})"
    )
    print(f"input      {tuple(video.shape)} built-in moving-shapes clip, {torch.get_num_threads()} threads")
    with torch.inference_mode():
        start = time.perf_counter()
        latents = tokenizer.encode(video)
        encode_s = time.perf_counter() - start
        start = time.perf_counter()
        recon = tokenizer.decode(latents)[:, :, :frames]
        decode_s = time.perf_counter() - start
        indices = tokenizer.encode_indices(video) if cfg.is_discrete else None
    mse = torch.mean(((recon.clamp(-1, 1) - video) / 2) ** 2).item()
    psnr = 10 * torch.log10(torch.tensor(1.0 / max(mse, 1e-12))).item()
    ratio = video.numel() / latents.numel()
    print(f"latents    {tuple(latents.shape)}  ({ratio:.0f}x fewer values than the input)")
    if indices is not None:
        print(f"indices    {tuple(indices.shape)} in [0, {cfg.codebook_size:,})")
    print(f"recon      {tuple(recon.shape)}  PSNR {psnr:.2f} dB")
    print(
        f"time       encode {encode_s:.2f} s, decode {decode_s:.2f} s, "
        f"{frames / (encode_s + decode_s):.2f} frames/s round trip"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidtok", description="VidTok video tokenizers")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list the official tokenizers")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("config", help="print a tokenizer's resolved config")
    p.add_argument("name", help="official name or config file")
    _add_overrides(p)
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("convert", help="convert a checkpoint to safetensors with its config as metadata")
    p.add_argument("input", type=Path, help="official .ckpt, a state dict, or safetensors")
    p.add_argument("output", type=Path, help="output .safetensors path")
    p.add_argument("--tokenizer", default=None, help="official name or config file (default: from the file name)")
    _add_overrides(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("demo", help="tokenize a built-in clip and report shapes, speed and PSNR")
    p.add_argument(
        "--tokenizer",
        default=None,
        help=f"official name or config file (default: from --ckpt, else {DEFAULT_TOKENIZER})",
    )
    p.add_argument("--ckpt", type=Path, default=None, help="weights (official .ckpt or safetensors)")
    p.add_argument("--frames", type=int, default=0, help="clip length (default 17 causal, 16 non-causal)")
    p.add_argument("--size", type=int, default=64, help="frame height and width (default 64)")
    _add_overrides(p)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, CheckpointError, InputError) as err:
        print(f"vidtok {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
