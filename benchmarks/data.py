"""Data throughput: does loading keep up with training?

    python benchmarks/data.py                                  # generated videos, 17x256x256 clips
    python benchmarks/data.py --videos /data/clips --workers 0 1 2 4 --batch 2

Packs the videos into shards with the shard writer (reported: videos/s), then reads training clips
(random temporal and spatial crops, ``--frames`` x ``--size`` x ``--size``, every
``round(fps / sample_fps)``-th frame) from the shards with 0, 1, 2, ... DataLoader workers and reports
clips/s after the first batch (worker start-up excluded). Beside it: one training step of the tokenizer
(forward + backward of an L1 loss, ``--width`` for a narrower model, ``--no-model`` to skip) on a batch
of the same shape, in clips/s, so it shows whether data keeps up. Also compares reading a clip from
late in a video by seeking against decoding from the start.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import torch

from vidtok.data import VideoClipDataset, collate_clips, folder_records, read_clip, write_shards
from vidtok.io import video as video_module
from vidtok.io.video import VideoWriter, iter_frames, read_info, tensor_to_frames
from vidtok.synthetic import moving_shapes


def make_videos(folder: Path, count: int, frames: int, height: int, width: int, fps: float) -> None:
    for i in range(count):
        with VideoWriter(folder / f"clip{i:03d}.mp4", fps) as writer:
            for first in range(0, frames, 30):
                n = min(30, frames - first)
                writer.write(tensor_to_frames(moving_shapes(n, height, width, seed=i * 1000 + first)))


def loader_rate(shards: str, args: argparse.Namespace, workers: int) -> float:
    dataset = VideoClipDataset(
        shards=shards, num_frames=args.frames, size=(args.size, args.size), sample_fps=args.sample_fps, train=True
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch, num_workers=workers, collate_fn=collate_clips, persistent_workers=workers > 0
    )
    batches = iter(loader)
    next(batches)  # worker start-up and the first shard's shuffle buffer
    start = time.perf_counter()
    for batch in itertools.islice(batches, args.batches):
        assert batch["video"].shape == (args.batch, 3, args.frames, args.size, args.size)
    return args.batches * args.batch / (time.perf_counter() - start)


def train_step_rate(args: argparse.Namespace) -> tuple[float, str]:
    import vidtok

    overrides = [f"model.ch={args.width}"] if args.width else []
    tok = vidtok.load_tokenizer(args.model, overrides=overrides, pretrained=False).train().requires_grad_(True)
    optimizer = torch.optim.Adam(tok.parameters(), lr=1e-5)
    x = torch.rand(args.batch, 3, args.frames, args.size, args.size) * 2 - 1
    times = []
    for _ in range(args.steps + 1):
        start = time.perf_counter()
        loss = (tok(x) - x).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    label = f"{args.model}{' ch=' + str(args.width) if args.width else ''}"
    return args.batch / min(times[1:]), label


def seek_vs_decode_all(path: Path, frames: int, interval: int) -> tuple[float, float]:
    """Seconds (best of 3) to read the video's last clip by seeking, and by decoding from the start."""
    total = read_info(path, count=True).frames
    indices = list(range(total - (frames - 1) * interval - 1, total, interval))[:frames]

    def best(read) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            read()
            times.append(time.perf_counter() - start)
        return min(times)

    seek = best(lambda: read_clip(path, indices))
    full = best(lambda: video_module._front_frames(path, set(indices), str(path)))
    return seek, full


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", default=None, help="a folder of videos (default: generate some)")
    parser.add_argument("--count", type=int, default=8, help="generated videos (default 8)")
    parser.add_argument("--video-frames", type=int, default=300, help="frames per generated video (default 300)")
    parser.add_argument("--video-size", default="360x640", help="generated video size HxW (default 360x640)")
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--sample-fps", type=float, default=10.0, help="(default 10: every 3rd frame of 30 fps)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--batches", type=int, default=20, help="batches timed per row (default 20)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--model", default="vidtok_kl_causal_488_4chn")
    parser.add_argument("--width", type=int, default=None, help="model base width (default: the preset's)")
    parser.add_argument("--steps", type=int, default=2, help="timed training steps (default 2)")
    parser.add_argument("--no-model", action="store_true", help="skip the training-step row")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.videos:
            folder = Path(args.videos)
        else:
            folder = tmp / "videos"
            height, width = (int(v) for v in args.video_size.split("x"))
            start = time.perf_counter()
            make_videos(folder, args.count, args.video_frames, height, width, 30.0)
            print(
                f"generated {args.count} videos of {args.video_frames} frames {height}x{width} "
                f"in {time.perf_counter() - start:.1f} s"
            )
        records = folder_records(folder)
        start = time.perf_counter()
        summary = write_shards(records, str(tmp / "shards" / "s-%04d.tar"), max_count=4, progress=False)
        shard_s = time.perf_counter() - start
        shards = str(tmp / "shards" / f"s-{{0000..{len(summary.shards) - 1:04d}}}.tar")
        print(f"shard writer: {summary.samples} videos in {shard_s:.2f} s ({summary.samples / shard_s:.1f} videos/s)")

        first = Path(records[0].source)
        start = time.perf_counter()
        decoded = sum(len(frames) for frames in iter_frames(first))
        info = read_info(first)
        print(
            f"PyAV decoding {first.name} ({info.height}x{info.width}): "
            f"{decoded / (time.perf_counter() - start):.0f} frames/s to RGB"
        )
        seek, full = seek_vs_decode_all(first, args.frames, 3)
        print(
            f"a {args.frames}-frame clip at the end of {records[0].key}: seek {seek * 1000:.0f} ms, "
            f"decode from the start {full * 1000:.0f} ms"
        )

        clip = f"{args.frames}x{args.size}x{args.size}"
        print(f"\n{'what':44s} {'clip':>11s} {'batch':>5s} {'clips/s':>8s}")
        print("-" * 71)
        for workers in args.workers:
            rate = loader_rate(shards, args, workers)
            print(
                f"{'data: shards, ' + str(workers) + ' workers':44s} {clip:>11s} {args.batch:5d} {rate:8.2f}",
                flush=True,
            )
        if not args.no_model:
            rate, label = train_step_rate(args)
            print(f"{'train step: ' + label:44s} {clip:>11s} {args.batch:5d} {rate:8.3f}")
    print(f"\n{args.threads} threads; each worker is one more process on the same cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
