"""Write videos into WebDataset tar shards, resumably: ``vidtok shards INPUT OUTPUT_PATTERN``.

Each sample is ``<key>.mp4`` (the original bytes, or a re-encoded H.264 copy with ``resize``) and
``<key>.json`` with ``fps``, ``frames``, ``width``, ``height``, ``duration`` and ``source``. Keys are
the videos' relative paths without extension (dots made underscores, as WebDataset keys end at the
first dot). A shard is written to a temporary file and renamed when complete; ``manifest.json`` beside
the shards lists the complete ones, the inputs they cover and the inputs that failed. Run the same
command again after an interruption and it continues after the last complete shard.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import webdataset as wds

from ..errors import ShardWriterError, VideoError
from ..io.files import read_json, write_atomic
from ..io.video import VideoWriter, read_info
from .sources import Record

log = logging.getLogger("vidtok.data")

MANIFEST_VERSION = 1


@dataclass
class ShardSummary:
    """What a call wrote: shard paths, samples written, inputs that failed (source, reason)."""

    shards: list[str] = field(default_factory=list)
    samples: int = 0
    failed: list[dict] = field(default_factory=list)
    resumed_from: int = 0  # inputs that earlier runs had already finished


def sample_key(rel: str, used: set[str]) -> str:
    """A WebDataset key for a relative path: no extension, no dots in the file name, unique."""
    stem = rel.rsplit(".", 1)[0] if "." in rel.rsplit("/", 1)[-1] else rel
    head, _, base = stem.rpartition("/")
    key = (head + "/" if head else "") + base.replace(".", "_")
    unique, n = key, 1
    while unique in used:
        n += 1
        unique = f"{key}_{n}"
    used.add(unique)
    return unique


def write_shards(
    inputs: Sequence[Record],
    pattern: str,
    *,
    max_count: int = 1000,
    max_bytes: int = 1 << 30,
    resize: Optional[int] = None,
    manifest: Optional[str | os.PathLike] = None,
    progress: bool = True,
) -> ShardSummary:
    """Write ``inputs`` (path records, e.g. from [`folder_records`][]) to shards named ``pattern % i``
    (``"out/train-%06d.tar"``), at most ``max_count`` samples and about ``max_bytes`` per shard.

    ``resize`` re-encodes each video with its short side at that many pixels (H.264, sizes even).
    Unreadable inputs are logged, listed in the manifest and skipped. Resumes from ``manifest``
    (default: ``manifest.json`` beside the shards) when it was written for the same inputs and options.
    """
    try:
        pattern % 0
    except TypeError:
        raise ShardWriterError(f"output pattern {pattern!r} needs one integer field such as %06d") from None
    if max_count < 1 or max_bytes < 1:
        raise ShardWriterError(f"max_count and max_bytes must be positive, got {max_count} and {max_bytes}")
    out_dir = Path(pattern % 0).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = Path(manifest) if manifest else out_dir / "manifest.json"
    options = {"pattern": pattern, "max_count": max_count, "max_bytes": max_bytes, "resize": resize}
    fingerprint = hashlib.sha256("\n".join(r.key for r in inputs).encode()).hexdigest()
    state = _load_manifest(manifest_path, options, fingerprint, len(inputs))
    for stale in out_dir.glob(".*.tar.tmp*"):
        stale.unlink()  # a shard an interrupted run left unfinished

    summary = ShardSummary(resumed_from=state["inputs_done"])
    used_keys: set[str] = set()
    for record in inputs[: state["inputs_done"]]:
        sample_key(record.key, used_keys)
    shard: Optional[_Shard] = None
    failed: list[dict] = []  # since the last complete shard; recorded with the next one
    bar = _progress(len(inputs), state["inputs_done"], progress)
    try:
        for position in range(state["inputs_done"], len(inputs)):
            record = inputs[position]
            key = sample_key(record.key, used_keys)
            bar.update(1)
            try:
                data, meta = _encode(record, resize)
            except (VideoError, OSError) as err:
                log.warning("skipping %s: %s", record.name, err)
                failed.append({"source": record.name, "reason": str(err)})
                continue
            if shard is not None and (shard.count >= max_count or shard.bytes + len(data) > max_bytes):
                _commit(shard, position, failed, state, manifest_path, summary)
                shard, failed = None, []
            if shard is None:
                shard = _Shard(pattern % len(state["shards"]))
            shard.add(key, data, meta)
            summary.samples += 1
        _commit(shard, len(inputs), failed, state, manifest_path, summary)
        shard = None
    finally:
        bar.close()
        if shard is not None:
            shard.abort()
    return summary


def _encode(record: Record, resize: Optional[int]) -> tuple[bytes, dict]:
    """The bytes to store and their metadata (frames counted, not taken from the header)."""
    if resize is None:
        data = Path(record.source).read_bytes() if isinstance(record.source, str) else record.source
    else:
        data = _resized_copy(record, resize)
    info = read_info(data, record.name, count=True)
    if not info.frames:
        raise VideoError(f"{record.name} holds no video frames")
    meta = {
        "fps": info.fps,
        "frames": info.frames,
        "width": info.width,
        "height": info.height,
        "duration": info.duration if info.duration is not None else info.frames / info.fps,
        "source": record.key,
    }
    return data, meta


def _resized_copy(record: Record, short_side: int) -> bytes:
    from ..io.video import iter_frames
    from .transforms import cover_size

    info = read_info(record.source, record.name)
    h, w = cover_size(info.height, info.width, short_side, short_side)
    h, w = max(2, h // 2 * 2), max(2, w // 2 * 2)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "resized.mp4"
        with VideoWriter(path, info.fps) as writer:
            for frames in iter_frames(record.source, size=(h, w)):
                writer.write(frames)
        return path.read_bytes()


class _Shard:
    """One tar being written with webdataset's ``TarWriter`` to a hidden temporary file beside its final name."""

    def __init__(self, path: str):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        self.file = open(self.tmp, "wb")
        # mtime 0 and sorted members (TarWriter's order): the same inputs give byte-identical shards
        self.tar = wds.TarWriter(self.file, encoder=False, mtime=0)
        self.count, self.bytes = 0, 0

    def add(self, key: str, data: bytes, meta: dict) -> None:
        self.tar.write({"__key__": key, "mp4": data, "json": json.dumps(meta).encode()})
        self.count += 1
        self.bytes += len(data)

    def close(self) -> None:
        self.tar.close()
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.tar.close()
        self.file.close()
        self.tmp.unlink(missing_ok=True)


def _commit(
    shard: Optional[_Shard], inputs_done: int, failed: list[dict], state: dict, manifest: Path, summary: ShardSummary
) -> None:
    """Close ``shard`` (if any) into place and record it, the failures before ``inputs_done`` and the progress."""
    if shard is not None:
        shard.close()
        state["shards"].append({"path": shard.path.name, "samples": shard.count, "bytes": shard.path.stat().st_size})
        summary.shards.append(str(shard.path))
    state["failed"].extend(failed)
    summary.failed.extend(failed)
    state["inputs_done"] = inputs_done
    _save_manifest(manifest, state)


def _load_manifest(path: Path, options: dict, fingerprint: str, total: int) -> dict:
    fresh = {
        "version": MANIFEST_VERSION,
        "options": options,
        "inputs": {"count": total, "sha256": fingerprint},
        "inputs_done": 0,
        "shards": [],
        "failed": [],
    }
    if not path.exists():
        return fresh
    state = read_json(path, ShardWriterError, "manifest", "remove it to start over")
    if state.get("options") != options or state.get("inputs") != fresh["inputs"]:
        raise ShardWriterError(
            f"{path} was written for other inputs or options ({state.get('options')}, "
            f"{state.get('inputs', {}).get('count')} inputs); use another output folder or remove it to start over"
        )
    missing = [s["path"] for s in state["shards"] if not (path.parent / s["path"]).is_file()]
    if missing:
        raise ShardWriterError(f"{path} lists shards that are gone: {missing[:3]}; remove it to start over")
    return state


def _save_manifest(path: Path, state: dict) -> None:
    data = dict(state)
    data["complete"] = data["inputs_done"] == data["inputs"]["count"]
    write_atomic(path, json.dumps(data, indent=1).encode())


def _progress(total: int, done: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="video", desc="shards", disable=not enabled)
