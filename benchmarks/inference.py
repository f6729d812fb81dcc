"""Inference speed and memory: vidtok (and optionally the original implementation) on one machine.

    python benchmarks/inference.py --tokenizer vidtok_kl_causal_488_4chn --frames 17 --size 128
    python benchmarks/inference.py --original /path/to/VidTok --frames 17 257 --chunk 16 4 ...

Every row runs in a fresh process (full width, random weights: speed does not depend on the values),
so peak memory is that run's alone: ``peak RSS`` is the process's peak resident memory and ``above
weights`` subtracts what it held right after loading the model (CPU); on GPU it is the peak
allocated memory. Both implementations run with the same ``THP_MEM_ALLOC_ENABLE`` (``--thp``: PyTorch's
allocator on transparent huge pages; vidtok turns it on by default, the original does not) and the
fastest of ``--repeat`` runs counts,
as this 2-core VM's timings move by +-10% between runs. ``GFLOP`` counts the convolution, matrix
and attention FLOPs that each implementation performs for one full-pass encode + decode (counted on
the meta device; vidtok folds v1.0's repeated frames into its convs, so it does less work for the
same result); ``GFLOP/s`` divides that by the time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from common import timed

ROOT = Path(__file__).resolve().parents[1]
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def original_model(checkout: str, name: str):
    """The original implementation of ``name`` at full width, from the microsoft/VidTok checkout (tools/original.py)."""
    sys.path.insert(0, str(ROOT / "tools"))
    from original import Original

    return Original(Path(checkout), name, 128)


def flop_counts(
    name: str, frames: int, size: int, original: str | None = None, overrides: tuple = (), autocast: bool = False
) -> dict[str, float]:
    """GFLOP of one full-pass encode + decode, counted on the meta device, by kind: ``conv`` (convolutions),
    ``matmul`` (matrix products and attention) and ``total``. ``overrides``: tokenizer config overrides such as
    ``model.ch=8``, for vidtok. ``autocast``: the paths vidtok takes under autocast (its general forms, with more
    work than the fused inference forms of fp32), counted with grad mode on, which selects the same paths; else the
    inference paths (what fp32 runs)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import vidtok

    x = torch.empty(1, 3, frames, size, size, device="meta")
    if original:
        model = original_model(original, name).to("meta")  # built on CPU: it makes CPU tensors itself
        with FlopCounterMode(display=False) as counter:
            model.decoder(model.encode(x)[0])
    else:
        with torch.device("meta"):
            tok = vidtok.Tokenizer(vidtok.compose_tokenizer_config(name, list(overrides))).requires_grad_(False)
        mode = torch.enable_grad() if autocast else torch.inference_mode()
        with mode, FlopCounterMode(display=False) as counter:
            tok.decoder(tok.regularizer.latents(tok.encoder(tok._pad_frames(x))))
    by_op = counter.get_flop_counts()["Global"]
    conv = sum(n for op, n in by_op.items() if "convolution" in str(op))
    total = counter.get_total_flops()
    return {"conv": conv / 1e9, "matmul": (total - conv) / 1e9, "total": total / 1e9}


def count_gflop(name: str, frames: int, size: int, original: str | None = None, overrides: tuple = ()) -> float:
    """GFLOP of one full-pass encode + decode on the inference paths (see ``flop_counts``)."""
    return flop_counts(name, frames, size, original, overrides)["total"]


def worker(args: argparse.Namespace) -> dict:
    """One measurement, in this process."""
    import torch

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, DTYPES[args.dtype])
    torch.manual_seed(0)
    if args.impl == "original":
        model = original_model(args.original, args.tokenizer).eval().to(device)
        for p in model.parameters():
            p.requires_grad_(False)

        def encode(x):
            return model.encode_chunked(x, args.chunk_frames)[0] if args.chunk_frames else model.encode(x)[0]

        def decode(z):
            return model.decode_chunked(z, args.chunk_latents) if args.chunk_latents else model.decode(z)
    else:
        import vidtok

        model = vidtok.load_tokenizer(args.tokenizer, device=device, pretrained=False)

        def encode(x):
            return model.encode(x, chunk_frames=args.chunk_frames or None)

        def decode(z):
            return model.decode(z, chunk_latents=args.chunk_latents or None)

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    base_rss = rss_mb()
    x = torch.rand(1, 3, args.frames, args.size, args.size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    x = x.to(device)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    times = {"encode": [], "decode": []}
    for _ in range(args.repeat):
        with torch.inference_mode(), autocast:
            z, seconds = timed(device, lambda: encode(x))
            times["encode"].append(seconds)
            y, seconds = timed(device, lambda z=z: decode(z))
            times["decode"].append(seconds)
        out_frames = y.shape[2]
        del y, z
    result = {
        "encode_s": min(times["encode"]),
        "decode_s": min(times["decode"]),
        "frames": args.frames,
        "out_frames": out_frames,
        "peak_rss_mb": peak_rss_mb(),
        "above_weights_mb": peak_rss_mb() - base_rss,
    }
    if device.type == "cuda":
        result["peak_rss_mb"] = torch.cuda.max_memory_allocated() / 2**20
        result["above_weights_mb"] = result["peak_rss_mb"] - base
    return result


def stream_worker(args: argparse.Namespace) -> dict:
    """Stream a video through encoder and decoder streams, frames made chunk by chunk, outputs dropped:
    what ``vidtok reconstruct`` does, so memory must not depend on the length."""
    import torch

    import vidtok

    torch.set_num_threads(args.threads)
    tok = vidtok.load_tokenizer(args.tokenizer, device=args.device, pretrained=False)
    base_rss = rss_mb()
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    out_frames = 0
    cached = 0
    with torch.inference_mode():
        enc = tok.encoder_stream(args.chunk_frames)
        with enc, tok.decoder_stream(args.chunk_latents) as dec:
            for first in range(0, args.frames, args.chunk_frames):
                n = min(args.chunk_frames, args.frames - first)
                frames = torch.rand(1, 3, n, args.size, args.size, generator=gen).to(args.device) * 2 - 1
                out_frames += dec.push(enc.push(frames)).shape[2]
                cached = max(cached, enc.cache_bytes + dec.cache_bytes)
            out_frames += dec.push(enc.finish()).shape[2]
            out_frames += dec.finish().shape[2]
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "frames": args.frames,
        "out_frames": out_frames,
        "peak_rss_mb": peak_rss_mb(),
        "above_weights_mb": peak_rss_mb() - base_rss,
        "cache_mb": cached / 2**20,
    }


def run_row(args: argparse.Namespace, impl: str, name: str, frames: int, chunk: tuple[int, int] | None) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--impl",
        impl,
        "--tokenizer",
        name,
        "--frames",
        str(frames),
        "--size",
        str(args.size[0]),
        "--dtype",
        args.dtype[0],
        "--threads",
        str(args.threads),
        "--device",
        args.device,
        "--repeat",
        str(args.repeat),
    ]
    if chunk:
        cmd += ["--chunk-frames", str(chunk[0]), "--chunk-latents", str(chunk[1])]
    if args.stream:
        cmd.append("--stream")
    if impl == "original":
        cmd += ["--original", args.original]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env["THP_MEM_ALLOC_ENABLE"] = "1" if args.thp == "on" else "0"  # the same for both implementations
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(lines[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--tokenizer", nargs="+", default=["vidtok_kl_causal_488_4chn", "vidtok_kl_causal_488_4chn_v1_1"]
    )
    parser.add_argument("--frames", nargs="+", type=int, default=[17])
    parser.add_argument("--size", nargs="+", type=int, default=[128])
    parser.add_argument("--dtype", nargs="+", default=["fp32"], choices=sorted(DTYPES))
    parser.add_argument(
        "--chunk",
        nargs=2,
        type=int,
        default=None,
        metavar=("FRAMES", "LATENTS"),
        help="also run chunked: encode FRAMES frames / decode LATENTS latents at a time",
    )
    parser.add_argument("--original", default=None, help="checkout of microsoft/VidTok to run beside vidtok")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--thp",
        choices=["on", "off"],
        default="on",
        help="THP_MEM_ALLOC_ENABLE for both implementations (vidtok's default: on)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=2, help="runs per row; the fastest counts (default 2)")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    parser.add_argument(
        "--stream",
        action="store_true",
        help="stream each video through encoder/decoder streams (--chunk sizes) and report memory",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--impl", default="vidtok", help=argparse.SUPPRESS)
    parser.add_argument("--chunk-frames", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--chunk-latents", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.tokenizer, args.frames, args.size, args.dtype = (
            args.tokenizer[0],
            args.frames[0],
            args.size[0],
            args.dtype[0],
        )
        print(json.dumps(stream_worker(args) if args.stream else worker(args)))
        return 0

    if args.stream:
        return stream_table(args)

    rows = []
    header = (
        f"{'impl':9s} {'model':32s} {'input':>11s} {'dtype':5s} {'chunk':>6s} {'encode s':>9s} {'decode s':>9s} "
        f"{'frames/s':>9s} {'peak RSS':>9s} {'>weights':>9s} {'GFLOP':>7s} {'GFLOP/s':>8s}"
    )
    print(header)
    print("-" * len(header))
    impls = ["vidtok"] + (["original"] if args.original else [])
    for name in args.tokenizer:
        for size in args.size:
            for frames in args.frames:
                gflops = {
                    impl: count_gflop(name, frames, size, args.original if impl == "original" else None)
                    for impl in impls
                }
                for dtype in args.dtype:
                    for chunk in [None] + ([tuple(args.chunk)] if args.chunk else []):
                        for impl in impls:
                            if chunk and impl == "original" and not name.endswith("_v1_1"):
                                continue  # the original chunks only its v1.1 models
                            sub = argparse.Namespace(**{**vars(args), "size": [size], "dtype": [dtype]})
                            r = run_row(sub, impl, name, frames, chunk)
                            gflop = gflops[impl]
                            r.update(impl=impl, model=name, size=size, dtype=dtype, chunk=chunk, gflop=gflop)
                            rows.append(r)
                            label = f"{chunk[0]}/{chunk[1]}" if chunk else "-"
                            inp = f"{frames}x{size}x{size}"
                            if "error" in r:
                                print(f"{impl:9s} {name:32s} {inp:>11s} {dtype:5s} {label:>6s} error: {r['error']}")
                                continue
                            total = r["encode_s"] + r["decode_s"]
                            print(
                                f"{impl:9s} {name:32s} {inp:>11s} {dtype:5s} {label:>6s} {r['encode_s']:9.2f} "
                                f"{r['decode_s']:9.2f} {frames / total:9.2f} {r['peak_rss_mb']:8.0f}M "
                                f"{r['above_weights_mb']:8.0f}M {gflop:7.0f} {gflop / total:8.1f}",
                                flush=True,
                            )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


def stream_table(args: argparse.Namespace) -> int:
    chunk = tuple(args.chunk or (16, 4))
    print(
        f"{'model':32s} {'input':>12s} {'chunk':>6s} {'total s':>8s} {'frames/s':>9s} {'peak RSS':>9s} {'>weights':>9s}"
        f" {'caches':>8s}"
    )
    for name in args.tokenizer:
        for size in args.size:
            for frames in args.frames:
                sub = argparse.Namespace(**{**vars(args), "size": [size]})
                r = run_row(sub, "vidtok", name, frames, chunk)
                inp = f"{frames}x{size}x{size}"
                if "error" in r:
                    print(f"{name:32s} {inp:>12s} error: {r['error']}")
                    continue
                print(
                    f"{name:32s} {inp:>12s} {chunk[0]}/{chunk[1]:<4d} {r['seconds']:8.1f} "
                    f"{frames / r['seconds']:9.2f} {r['peak_rss_mb']:8.0f}M {r['above_weights_mb']:8.0f}M "
                    f"{r['cache_mb']:7.0f}M",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
