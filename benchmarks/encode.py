"""Dataset encoding throughput: frames/s of the whole ``encode.py`` job beside frames/s of the model alone.

    python benchmarks/encode.py                                    # KL 488 v1.1, full width, 17x128x128 clips
    python benchmarks/encode.py --videos 8 --frames 68 --workers 0 2
    python benchmarks/encode.py --device cuda --precision bf16 --size 256 --workers 0 4 8

Each row runs the library's ``encode_dataset`` (what ``encode.py`` runs: reading and resizing beside the model in a
background thread (``workers 0``) or DataLoader processes, the model, the safetensors members, the shard writer)
over ``--videos`` generated moving-shapes videos (``vidtok.synthetic``, h264 mp4, ``--source`` pixels square, 30
fps) resized to ``--size`` x ``--size``, cut into clips of 17 frames (16 for non-causal presets; ``last_clip:
drop``), with a tokenizer of random weights of the preset (speed does not depend on the values), ``model.ch`` set
to ``--width`` (128: full width). ``model only`` runs ``tok.encode`` on the same clips, decoded beforehand into
tensors, in batches of ``--batch`` clips: the ceiling the job can reach. Both are timed after an untimed warm-up
pass (kernel selection, allocator growth). ``share`` is job / model only. ``stats`` is the share of the job's time
that its statistics take (``stats.json``: each video's float64 moments, or an FSQ shard's code counts, and the
merge at the end), timed again on the written samples.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from common import add_job_model_arguments, job_device, make_videos, sync


def model_only(tok, cfg, videos: Path, device: torch.device) -> tuple[int, float]:
    """(frames, seconds) of tok.encode alone on the job's clips, read beforehand."""
    from vidtok.data.videos import list_videos, video_pieces

    cutting = cfg.cutting(tok.config.causal)
    batches = [p.video.to(device) for task in list_videos(cfg.data) for p in video_pieces(task, cutting)]
    options = cfg.inference_options(tok.config)
    with torch.inference_mode(), cfg.autocast(device):
        tok.encode(batches[0], options=options)  # warm-up
        sync(device)
        start = time.perf_counter()
        for x in batches:
            tok.encode(x, options=options)
        sync(device)
    return sum(x.shape[0] * x.shape[2] for x in batches), time.perf_counter() - start


def stats_seconds(tok, out: Path) -> float:
    """Seconds the job's statistics take: each video's moments (KL) or code counts (FSQ) over its written samples,
    and stats.json from the committed index records, as encode_dataset computes them."""
    from vidtok.data import LatentDataset
    from vidtok.encoding.shards import code_files, read_committed
    from vidtok.encoding.stats import CodeCounts, video_moments, write_stats

    videos: dict[str, list[torch.Tensor]] = {}
    for sample in LatentDataset(out):
        data = sample["latents"] if "latents" in sample else sample["indices"]
        videos.setdefault(sample["meta"]["video"], []).append(data)
    kind = "indices" if tok.config.is_discrete else "latents"
    start = time.perf_counter()
    counts = CodeCounts(tok.config.codebook_size) if kind == "indices" else None
    for parts in videos.values():
        if counts is None:
            video_moments(parts, tok.config.causal)
        else:
            for part in parts:
                counts.add(part)
    write_stats(out, read_committed(out).indexes, tok.config, kind, code_files(out))
    return time.perf_counter() - start


def measure(tok, ckpt: Path, videos: Path, out: Path, device: torch.device, *, workers: int, size: int, batch: int,
            precision: str) -> dict:  # fmt: skip
    """One row: ``encode_dataset`` on ``videos`` (after a one-video warm-up) beside the model alone on the same
    clips; frames, seconds, frames/s of each and the job's share of the model's rate."""
    from vidtok.encoding import EncodeConfig, encode_dataset

    cfg = {
        "ckpt": str(ckpt),
        "data": {"dir": str(videos)},
        "height": size,
        "width": size,
        "sample_fps": None,
        "batch_size": batch,
        "precision": precision,
        "device": str(device),
        "workers": workers,
        "output": {"dir": str(out), "progress": False},
    }
    warm = dict(cfg, data={"dir": str(videos), "limit": 1}, output={"dir": f"{out}-warm", "progress": False})
    encode_dataset(warm, tokenizer=tok)
    result = encode_dataset(cfg, tokenizer=tok)
    frames, seconds = model_only(tok, EncodeConfig.from_any(cfg), videos, device)
    job_fps, model_fps = result.frames / result.seconds, frames / seconds
    return {"workers": workers, "frames": result.frames, "job_s": result.seconds, "job_fps": job_fps,
            "model_fps": model_fps, "share": job_fps / model_fps,
            "stats": stats_seconds(tok, out) / result.seconds}  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=34, help="frames per generated video")
    parser.add_argument("--source", type=int, default=160, help="generated videos' side in pixels")
    parser.add_argument("--size", type=int, default=128, help="encoded frame side in pixels")
    parser.add_argument("--batch", type=int, default=2, help="clips per model call")
    parser.add_argument("--workers", type=int, nargs="+", default=[0])
    add_job_model_arguments(parser)
    args = parser.parse_args(argv)

    import vidtok
    from vidtok.io.weight_files import save_tokenizer_safetensors

    device = job_device(args)
    print(f"# {args.tokenizer} model.ch={args.width}, {args.videos} videos of {args.frames} frames, "
          f"{args.source}px -> {args.size}px, batch {args.batch}, precision {args.precision}")  # fmt: skip
    print(f"{'workers':>7s} {'frames':>7s} {'job s':>7s} {'job f/s':>8s} {'model f/s':>9s} {'share':>6s} {'stats':>6s}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_videos(root / "videos", args.videos, args.frames, args.source)
        tok = vidtok.load_tokenizer(args.tokenizer, overrides=[f"model.ch={args.width}"], pretrained=False)
        ckpt = save_tokenizer_safetensors(tok.state_dict(), tok.config, root / "tok.safetensors")
        tok = tok.to(device).eval()
        for workers in args.workers:
            r = measure(tok, ckpt, root / "videos", root / f"out{workers}", device, workers=workers, size=args.size,
                        batch=args.batch, precision=args.precision)  # fmt: skip
            print(f"{workers:7d} {r['frames']:7d} {r['job_s']:7.1f} {r['job_fps']:8.2f} {r['model_fps']:9.2f} "
                  f"{r['share']:6.1%} {r['stats']:6.2%}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
