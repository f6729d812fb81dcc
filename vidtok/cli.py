"""The ``vidtok`` console script.

vidtok list                              the official tokenizers, what they produce, which are cached
vidtok download NAME ... | --all         fetch published weights from the Hugging Face Hub into the cache
vidtok export-diffusers --tokenizer NAME OUT   a folder that diffusers.AutoencoderVidTok.from_pretrained loads
vidtok config NAME [-o key=value ...]    print a tokenizer's resolved config as YAML
vidtok convert IN.ckpt OUT.safetensors   official checkpoint -> safetensors with the config inside
vidtok demo [--tokenizer NAME] [--ckpt WEIGHTS]
                                         tokenize a built-in clip and report shapes, speed, PSNR
vidtok fvd GENERATED REAL                FVD between two sets of videos (not paired; any counts)
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from omegaconf import OmegaConf

from .composition import compose_tokenizer_config, official_names
from .defaults import CHUNK_FRAMES, CHUNK_LATENTS, protocol_clip_frames
from .errors import ConfigError, InputError, VidtokError, report
from .io.files import existing_file, read_json
from .io.token_files import load_tokens, save_tokens
from .io.weight_files import META_SOURCE, save_tokenizer_safetensors
from .models import InferenceOptions
from .models.loading import load_tokenizer
from .models.weights import WHAT_CKPT_TAKES
from .synthetic import moving_shapes

if TYPE_CHECKING:
    from .inference.pipeline import ReadSettings

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
    from .hub import cached

    header = f"{'name':38s} {'version':7s} {'causal':6s} {'factors':8s} {'latent':8s} {'codebook':>9s}  {'cached':>9s}"
    print(header)
    print("-" * len(header))
    total = 0
    for name in official_names():
        c = compose_tokenizer_config(name)
        latent = f"FSQ {c.latent_channels}" if c.is_discrete else f"KL {c.latent_channels}"
        codebook = f"{c.codebook_size:,}" if c.is_discrete else "-"
        factors = "x".join(map(str, c.factors))
        here = cached(name)
        total += here.size
        state = f"{here.size / 2**20:,.0f} MiB" if here.checkpoint else "no"
        print(
            f"{name:38s} {c.version:7s} {'yes' if c.causal else 'no':6s} {factors:8s} {latent:8s} {codebook:>9s}  "
            f"{state:>9s}"
        )
    print(f"cached: {total / 2**20:,.0f} MiB (Hub cache and vidtok's converted copies); `vidtok download NAME` fetches")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from .hub import cached, pretrained_file

    names = official_names() if args.all else args.names
    if not names:
        raise ConfigError("name the tokenizers to download (vidtok download NAME ...) or pass --all")
    unknown = [n for n in names if n not in official_names()]
    if unknown:
        raise ConfigError(f"not official names: {unknown}; `vidtok list` shows them")
    for name in names:
        path = pretrained_file(name, revision=args.revision, progress=not args.quiet)
        print(f"{name}: {cached(name).size / 2**20:,.0f} MiB cached, weights at {path}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    config = compose_tokenizer_config(args.name, args.overrides)
    print(OmegaConf.to_yaml(OmegaConf.structured(config)), end="")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    tokenizer = load_tokenizer(args.tokenizer, ckpt=args.input, overrides=args.overrides)
    source = f"converted by vidtok convert from {tokenizer.weights_file.name} ({tokenizer.weights_source})"
    out = save_tokenizer_safetensors(tokenizer.state_dict(), tokenizer.config, args.output, {META_SOURCE: source})
    n = sum(p.numel() for p in tokenizer.parameters())
    print(f"wrote {out} ({tokenizer.config.name or 'custom config'}, {n:,} parameters)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    torch.manual_seed(0)
    name = args.tokenizer or (None if args.ckpt else DEFAULT_TOKENIZER)
    tokenizer = load_tokenizer(
        name, ckpt=args.ckpt, overrides=args.overrides, pretrained=not args.random_weights, revision=args.revision
    )
    cfg = tokenizer.config
    frames = args.frames if args.frames else protocol_clip_frames(cfg.causal)
    video = moving_shapes(frames, args.size, args.size)
    params = sum(p.numel() for p in tokenizer.parameters())
    print(
        f"tokenizer  {cfg.name or name}  ({cfg.version}, {'causal' if cfg.causal else 'non-causal'}, "
        f"{'x'.join(map(str, cfg.factors))}, {params / 1e6:.1f}M parameters, "
        f"{_weights_origin(args)})"
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
    from .metrics.frame import psnr as psnr_of

    psnr = psnr_of(video, recon)
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


def _weights_origin(args: argparse.Namespace) -> str:
    if args.ckpt:
        return f"weights from {args.ckpt}"
    if args.random_weights:
        return "random weights: quality numbers are meaningless"
    return "published weights (Hugging Face Hub, microsoft/VidTok)"


def _add_weights(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ckpt", default=None, metavar="WEIGHTS", help=f"the weights: {WHAT_CKPT_TAKES} (default: the published ones)"
    )
    parser.add_argument(
        "--revision",
        default=None,
        help="Hub revision of the published weights or of --ckpt's repository (default main)",
    )
    parser.add_argument("--random-weights", action="store_true", help="no weights at all: random initialisation")


def _add_model(parser: argparse.ArgumentParser, default_from: str = "the checkpoint") -> None:
    parser.add_argument(
        "--tokenizer", default=None, help=f"official name or config file (default: taken from {default_from})"
    )
    _add_weights(parser)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda (default cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_overrides(parser)


def _add_reading(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--height", type=int, default=None, help="frame height (default: the video's, cropped to fit)")
    parser.add_argument("--width", type=int, default=None, help="frame width (default: the video's, cropped to fit)")
    parser.add_argument("--fps", type=float, default=None, help="sample frames at this rate (default: the video's)")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many (sampled) frames")
    parser.add_argument(
        "--chunk-frames",
        type=int,
        default=None,
        help=f"causal models: frames encoded at a time (default {CHUNK_FRAMES})",
    )
    parser.add_argument(
        "--clip-frames",
        type=int,
        default=protocol_clip_frames(causal=False),
        help=f"non-causal models: frames per independent clip (default {protocol_clip_frames(causal=False)})",
    )


def _add_tiling(parser: argparse.ArgumentParser, chunk_latents: bool = True) -> None:
    parser.add_argument("--tile", type=int, default=None, help="process frames in tiles of this many pixels")
    parser.add_argument("--tile-overlap", type=int, default=None, help="tile overlap in pixels (default tile/4)")
    if chunk_latents:
        parser.add_argument(
            "--chunk-latents",
            type=int,
            default=None,
            help=f"causal models: latents per decoder pass (default {CHUNK_LATENTS})",
        )


def _options(args: argparse.Namespace) -> InferenceOptions:
    """The inference options the command line gave (checked against the model once, by the file function)."""
    return InferenceOptions(
        chunk_frames=getattr(args, "chunk_frames", None),
        chunk_latents=getattr(args, "chunk_latents", None),
        tile=args.tile,
        tile_overlap=args.tile_overlap,
    )


def _reading(args: argparse.Namespace) -> ReadSettings:
    """How ``reconstruct`` and ``encode`` read (and, for non-causal models, cut) the input video, as the command line
    gave it."""
    from .inference.pipeline import ReadSettings  # lazy, as the commands import the pipeline: PyAV is slow to import

    return ReadSettings(
        height=args.height,
        width=args.width,
        sample_fps=args.fps,
        max_frames=args.max_frames,
        clip_frames=args.clip_frames,
    )


def _load(args: argparse.Namespace, name: str | None = None):
    name = name or args.tokenizer
    if args.ckpt is None and name is None:
        raise ConfigError(f"give --tokenizer NAME (its published weights) or --ckpt WEIGHTS ({WHAT_CKPT_TAKES})")
    if args.ckpt is None and args.random_weights:
        print("warning: --random-weights: the output is meaningless", file=sys.stderr)
    return load_tokenizer(
        name,
        ckpt=args.ckpt,
        overrides=args.overrides,
        device=args.device,
        pretrained=not args.random_weights,
        revision=args.revision,
    )


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from .inference.pipeline import reconstruct_video

    tok = _load(args)
    stats = reconstruct_video(
        tok,
        args.input,
        args.output,
        reading=_reading(args),
        options=_options(args),
        side_by_side=args.side_by_side,
        progress=not args.quiet,
    )
    print(
        f"wrote {args.output}: {stats['frames']} frames, {stats['height']}x{stats['width']} at "
        f"{stats['fps']:g} fps, PSNR {stats['psnr']:.2f} dB against the input"
    )
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    from .inference.pipeline import encode_video

    tok = _load(args)
    tokens = encode_video(
        tok,
        args.input,
        reading=_reading(args),
        options=_options(args),
        indices=args.indices,
        progress=not args.quiet,
    )
    save_tokens(args.output, tokens)
    print(
        f"wrote {args.output}: {tokens.kind} {tuple(tokens.data.shape)} for {tokens.frames} frames "
        f"{tokens.height}x{tokens.width} at {tokens.fps:g} fps"
    )
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    from .inference.pipeline import decode_video

    tokens = load_tokens(args.input)
    name = args.tokenizer
    if name is None:
        name = tokens.tokenizer.name
        if not args.overrides:
            args.overrides = _overrides_for(tokens.tokenizer)
    tok = _load(args, name)
    n = decode_video(
        tok,
        tokens,
        args.output,
        options=_options(args),
        progress=not args.quiet,
    )
    print(f"wrote {args.output}: {n} frames at {tokens.fps:g} fps")
    return 0


def cmd_export_diffusers(args: argparse.Namespace) -> int:
    from .diffusers_export import export_diffusers

    tok = _load(args)
    if args.stats is not None:
        tok.latent_stats = read_json(existing_file(args.stats, "statistics file", InputError), InputError,
                                     "statistics file", "give an encode.py stats.json")  # fmt: skip
    out = export_diffusers(tok, args.output, force=args.force)
    print(f"wrote {out}: diffusers.AutoencoderVidTok.from_pretrained({str(out)!r}) loads it")
    return 0


def cmd_shards(args: argparse.Namespace) -> int:
    import logging

    from .data import video_records, write_shards

    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    records = video_records(args.input, data_dir=args.data_dir, column=args.column)
    summary = write_shards(
        records,
        args.output,
        max_count=args.max_count,
        max_bytes=int(args.max_size_mb * 2**20),
        resize=args.resize,
        manifest=args.manifest,
        progress=not args.quiet,
    )
    resumed = f" (resumed after {summary.resumed_from} inputs)" if summary.resumed_from else ""
    print(
        f"wrote {summary.samples} videos into {len(summary.shards)} shards{resumed}; "
        f"{len(summary.failed)} unreadable inputs skipped (listed in the manifest)"
    )
    return 0


def cmd_fvd(args: argparse.Namespace) -> int:
    import json

    from .evaluation.fvd_sets import FVDProtocol, fvd_between
    from .metrics.fvd import I3D_SHA256

    protocol = FVDProtocol(args.height, args.width, None if args.sample_fps <= 0 else args.sample_fps, args.frames,
                           args.clip_frames, args.clips)  # fmt: skip
    report = fvd_between(
        args.generated,
        args.real,
        protocol,
        detector_path=args.detector,
        detector_sha256=None if args.no_detector_check else I3D_SHA256,
        cache_dir=None if args.no_cache else (args.cache or "default"),
        device=args.device or ("cuda" if torch.cuda.is_available() else "cpu"),
        limit=args.limit,
    )
    for s in (report.generated, report.real):
        for failure in s.failed:
            print(f"skipped {failure['name']}: {failure['reason']}", file=sys.stderr)
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report.to_dict(), indent=1) + "\n")
    print(report.line())
    return 0


def _overrides_for(config) -> list[str]:
    """Overrides that turn the named preset into ``config`` (e.g. a narrower test width)."""
    if config.name is None:
        return []
    base = compose_tokenizer_config(config.name)
    return [] if base.model.ch == config.model.ch else [f"model.ch={config.model.ch}"]


def _video_command(sub, name: str, summary: str, output: str, func) -> argparse.ArgumentParser:
    """A command that reads a video file through a tokenizer (``reconstruct``, ``encode``): input, output, the model,
    how the video is read, chunks and tiles (``encode`` has no decoder chunks)."""
    p = sub.add_parser(name, help=summary)
    p.add_argument("input", type=Path, help="input video")
    p.add_argument("output", type=Path, help=output)
    _add_model(p)
    _add_reading(p)
    _add_tiling(p, chunk_latents=name != "encode")
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidtok", description="VidTok video tokenizers")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list the official tokenizers")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("download", help="fetch published weights into the cache (with a progress bar)")
    p.add_argument("names", nargs="*", help="official names")
    p.add_argument("--all", action="store_true", help="all 23 official tokenizers (about 15 GB)")
    p.add_argument("--revision", default=None, help="Hub revision (default main)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("config", help="print a tokenizer's resolved config")
    p.add_argument("name", help="official name or config file")
    _add_overrides(p)
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("convert", help="convert a checkpoint to safetensors with its config as metadata")
    p.add_argument("input", help=f"the weights to convert: {WHAT_CKPT_TAKES}")
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
    _add_weights(p)
    p.add_argument(
        "--frames", type=int, default=0, help="clip length (default: the protocol's 17 causal / 16 non-causal)"
    )
    p.add_argument("--size", type=int, default=64, help="frame height and width (default 64)")
    _add_overrides(p)
    p.set_defaults(func=cmd_demo)

    p = _video_command(sub, "reconstruct", "encode and decode a video file", "output video (.mp4)", cmd_reconstruct)
    p.add_argument("--side-by-side", action="store_true", help="write input | reconstruction")

    p = _video_command(sub, "encode", "tokenize a video file into tokens", "token file (.safetensors)", cmd_encode)
    p.add_argument("--indices", action="store_true", help="FSQ models: store code indices instead of codes")

    p = sub.add_parser("decode", help="decode a token file into a video file")
    p.add_argument("input", type=Path, help="token file written by vidtok encode")
    p.add_argument("output", type=Path, help="output video (.mp4)")
    _add_model(p, default_from="the token file")
    _add_tiling(p)
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("export-diffusers", help="write a folder that diffusers.AutoencoderVidTok loads")
    _add_model(p, default_from="--ckpt")
    p.add_argument("output", type=Path, help="output folder")
    p.add_argument(
        "--force", action="store_true", help="export v1.0 causal models too (diffusers computes them differently)"
    )
    p.add_argument("--stats", type=Path, help="an encode.py stats.json to carry (latent_stats.json beside the config)")
    p.set_defaults(func=cmd_export_diffusers)

    p = sub.add_parser("shards", help="pack videos into WebDataset tar shards (resumable)")
    p.add_argument("input", help="a folder of videos (searched recursively) or a CSV of relative paths")
    p.add_argument("output", help="shard path pattern with one integer field, e.g. out/train-%%06d.tar")
    p.add_argument("--data-dir", default=None, help="CSV input: folder the paths are relative to (default: its own)")
    p.add_argument("--column", default="videos", help="CSV input: the column of paths (default videos)")
    p.add_argument("--max-count", type=int, default=1000, help="videos per shard at most (default 1000)")
    p.add_argument("--max-size-mb", type=float, default=1024, help="shard size limit in MiB (default 1024)")
    p.add_argument("--resize", type=int, default=None, help="re-encode with this short side (default: keep bytes)")
    p.add_argument("--manifest", default=None, help="manifest path (default: manifest.json beside the shards)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_shards)

    p = sub.add_parser("fvd", help="FVD between two sets of videos (not paired; any counts), evaluate.py's protocol")
    p.add_argument("generated", help="the generated videos: a folder (recursive), a CSV of paths, or tar shards")
    p.add_argument("real", help="the real videos, the same kinds (its features are cached: featurized once)")
    p.add_argument("--height", type=int, default=256, help="frames resized to cover and cropped (default 256)")
    p.add_argument("--width", type=int, default=256, help="(default 256)")
    p.add_argument("--sample-fps", type=float, default=30.0, help="keep every round(fps / this)-th frame; 0: every")
    p.add_argument("--frames", type=int, default=16, help="frames the detector sees per clip (default 16)")
    p.add_argument("--clip-frames", type=int, default=None, help="clip length (default: --frames)")
    p.add_argument("--clips", choices=("all", "first"), default="all", help="every clip of a video, or its first")
    p.add_argument("--limit", type=int, default=None, help="the first N videos of each set")
    p.add_argument("--detector", default=None, help="the I3D TorchScript file (default $VIDTOK_I3D, the hub cache)")
    p.add_argument("--no-detector-check", action="store_true", help="skip the reference I3D's SHA-256 check")
    p.add_argument("--cache", default=None, help="feature cache folder (default: fvd/ in vidtok's cache)")
    p.add_argument("--no-cache", action="store_true", help="featurize both sets, keep nothing")
    p.add_argument("--device", default=None, help="default cuda if available, else cpu")
    p.add_argument("--report", type=Path, default=None, help="also write the report as JSON here")
    p.set_defaults(func=cmd_fvd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The ``vidtok`` command; a user error ([`VidtokError`][vidtok.errors.VidtokError]) is one line and exit
    status 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except VidtokError as err:
        return report(f"vidtok {args.command}", err)


if __name__ == "__main__":
    raise SystemExit(main())
