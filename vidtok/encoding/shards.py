"""The output of a dataset encoding run: WebDataset tar shards that each process owns, written so that a run
killed at any moment and started again produces every sample exactly once.

Layout of ``output.dir``::

    run.json                          the job: tokenizer identity and the keys that decide the samples
    part-r00000-000000.tar            process 0's first shard (webdataset samples: <key>.safetensors, <key>.json)
    index/part-r00000-000000.json     what that shard holds (videos, samples) and the videos that failed before it
    index/part-r00000-000000.codes.safetensors   FSQ indices: the shard's code counts (written before its index)
    stats.json                        at the end: statistics of everything written (vidtok.encoding.stats)
    manifest.jsonl                    at the end: one line per sample (key, shard, video, frames), in video order
    failed.jsonl                      at the end: the videos that were skipped, with the reason

A shard is written under a hidden temporary name, fsynced and renamed; then its index file is written the same
way. The index file is the commit: a shard without one (the run died between the two renames) is removed when the
run starts again and its videos are encoded again. A video's samples always go into one shard, so resuming works
video by video.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import webdataset as wds

from ..errors import ConfigError
from ..io.files import read_json, write_atomic
from ..metrics.codes import CodeCounts

INDEX_DIR = "index"
SHARD_NAME = "part-r{rank:05d}-{number:06d}"
CODES_SUFFIX = ".codes.safetensors"
_SHARD_RE = re.compile(r"^part-r(\d{5})-(\d{6})$")


@dataclass
class Committed:
    """What earlier runs finished: every video key done or failed, and each rank's next shard number."""

    done: set[str] = field(default_factory=set)
    next_number: dict[int, int] = field(default_factory=dict)
    indexes: list[dict] = field(default_factory=list)


def read_committed(out_dir: Path) -> Committed:
    """The index files under ``out_dir`` (unreadable ones - a torn write cannot happen, but a hand-edited file
    can - are an error naming the file)."""
    state = Committed()
    for path in sorted((out_dir / INDEX_DIR).glob("part-*.json")):
        match = _SHARD_RE.match(path.stem)
        if not match:
            continue
        index = read_json(path, ConfigError, "index file", "remove it and its shard to encode again")
        rank, number = int(match.group(1)), int(match.group(2))
        state.next_number[rank] = max(state.next_number.get(rank, 0), number + 1)
        state.done.update(v["key"] for v in index["videos"])
        state.done.update(f["key"] for f in index["failed"])
        state.indexes.append(index)
    return state


def remove_uncommitted(out_dir: Path) -> list[str]:
    """Remove temporary files and shards without an index file (left by a run that was killed); their names."""
    removed = []
    for path in out_dir.glob(".*.tmp*"):
        path.unlink(missing_ok=True)
        removed.append(path.name)
    index_dir = out_dir / INDEX_DIR
    for path in index_dir.glob(".*.tmp*") if index_dir.is_dir() else ():
        path.unlink(missing_ok=True)
        removed.append(f"{INDEX_DIR}/{path.name}")
    for path in out_dir.glob("part-*.tar"):
        stem = path.name[: -len(".tar")]
        if _SHARD_RE.match(stem) and not (index_dir / f"{stem}.json").is_file():
            path.unlink()
            removed.append(path.name)
    for path in index_dir.glob(f"part-*{CODES_SUFFIX}") if index_dir.is_dir() else ():
        stem = path.name[: -len(CODES_SUFFIX)]
        if _SHARD_RE.match(stem) and not (index_dir / f"{stem}.json").is_file():
            path.unlink()
            removed.append(f"{INDEX_DIR}/{path.name}")
    return removed


def code_files(out_dir: Path) -> list[Path]:
    """The committed shards' code-count files (FSQ indices)."""
    index_dir = out_dir / INDEX_DIR
    return sorted(
        p
        for p in index_dir.glob(f"part-*{CODES_SUFFIX}")
        if (index_dir / p.name.replace(CODES_SUFFIX, ".json")).is_file()
    )


class ShardSink:
    """One process's shards: whole videos are added; a shard closes when the next video would pass its limits."""

    def __init__(
        self,
        out_dir: Path,
        rank: int,
        first_number: int,
        max_count: int,
        max_bytes: int,
        codebook_size: int = 0,
        write_samples: bool = True,
    ):
        """``codebook_size``: the shards hold FSQ indices of that many codes, counted per shard (see ``stats``).
        ``write_samples=False``: only the index records (and code counts) are committed, no shard (statistics
        only)."""
        self.out_dir, self.rank, self.number = out_dir, rank, first_number
        self.write_samples = write_samples
        self.codebook_size = codebook_size
        self._codes = CodeCounts(codebook_size) if codebook_size else None
        self.max_count, self.max_bytes = max_count, max_bytes
        (out_dir / INDEX_DIR).mkdir(parents=True, exist_ok=True)
        self._tar: Optional[wds.TarWriter] = None
        self._file = None
        self._count = self._bytes = 0
        self._videos: list[dict] = []
        self._failed: list[dict] = []
        self.shards: list[str] = []

    def _name(self) -> str:
        return SHARD_NAME.format(rank=self.rank, number=self.number)

    def _tmp(self) -> Path:
        return self.out_dir / f".{self._name()}.tar.tmp{os.getpid()}"

    def add_video(self, video: dict, samples: list[tuple[str, bytes, dict]], indices: tuple = ()) -> None:
        """``samples``: (key, safetensors bytes, json record) of one video; ``video``: its record for the index;
        ``indices``: its samples' FSQ indices, when the shards hold indices (counted into the shard's codes)."""
        size = sum(len(data) for _, data, _ in samples)
        if self._count and (self._count + len(samples) > self.max_count or self._bytes + size > self.max_bytes):
            self.commit()
        if self._tar is None and self.write_samples:
            self._file = open(self._tmp(), "wb")
            self._tar = wds.TarWriter(self._file, encoder=False, mtime=0)
        for key, data, record in samples if self.write_samples else ():
            self._tar.write({"__key__": key, "safetensors": data, "json": json.dumps(record).encode()})
        for sample in indices:
            self._codes.add(sample)
        self._count += len(samples)
        self._bytes += size
        records = [dict(record, key=key) for key, _, record in samples]
        shard = f"{self._name()}.tar" if self.write_samples else None
        self._videos.append(dict(video, shard=shard, samples=records))

    def add_failure(self, failure: dict) -> None:
        """A video that was skipped (recorded with the next commit)."""
        self._failed.append(failure)

    def commit(self) -> None:
        """Close the open shard into place and write its index file (also a shard-less one that records only
        failures). Nothing to do when there is neither."""
        if self._tar is None and not self._videos and not self._failed:
            return
        name = self._name()
        shard = None
        if self._tar is not None:
            self._tar.close()
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._tmp(), self.out_dir / f"{name}.tar")
            shard = f"{name}.tar"
            self.shards.append(shard)
        if self._codes is not None:  # before the index: the index file is the commit of both
            write_atomic(self.out_dir / INDEX_DIR / f"{name}{CODES_SUFFIX}", self._codes.to_bytes())
            self._codes = CodeCounts(self.codebook_size)
        index = {"shard": shard, "rank": self.rank, "videos": self._videos, "failed": self._failed}
        write_atomic(self.out_dir / INDEX_DIR / f"{name}.json", json.dumps(index, indent=1).encode())
        self.number += 1
        self._tar, self._file, self._count, self._bytes = None, None, 0, 0
        self._videos, self._failed = [], []

    def abort(self) -> None:
        """Drop the open shard (an error ends the run: its videos are encoded again next time)."""
        if self._tar is not None:
            self._tar.close()
            self._file.close()
            self._tmp().unlink(missing_ok=True)
            self._tar = None
        if self._codes is not None:
            self._codes = CodeCounts(self.codebook_size)


def write_manifest(out_dir: Path) -> tuple[int, int]:
    """``manifest.jsonl`` (one line per sample, in video order) and ``failed.jsonl`` from the index files;
    returns (samples, failed videos)."""
    state = read_committed(out_dir)
    videos = sorted((v for index in state.indexes for v in index["videos"]), key=lambda v: v["order"])
    failed = sorted((f for index in state.indexes for f in index["failed"]), key=lambda f: f["order"])
    lines = []
    for video in videos:
        for record in video["samples"]:
            lines.append(json.dumps(dict(record, shard=video["shard"])))
    write_atomic(out_dir / "manifest.jsonl", "".join(line + "\n" for line in lines).encode())
    write_atomic(out_dir / "failed.jsonl", "".join(json.dumps(f) + "\n" for f in failed).encode())
    return len(lines), len(failed)
