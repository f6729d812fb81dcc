"""Where videos come from: a CSV of relative paths (the original layout), a folder, or WebDataset tar shards.

A source yields :class:`Record` s: a video's key, a name for messages, its path or bytes, and any
metadata stored with it. Shards are read as a stream (``tarfile`` in ``r|`` mode), so a shard can be a
local file or the output of a command (``pipe:aws s3 cp s3://bucket/shard-000.tar -``); samples are
the files sharing a key (``<key>.mp4`` + ``<key>.json``), as WebDataset writes and reads them.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import subprocess
import tarfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

log = logging.getLogger("vidtok.data")

VIDEO_EXTENSIONS = ("mp4", "avi", "mkv", "mov", "webm", "m4v", "mpg", "mpeg", "flv", "ts", "gif")


class DataSourceError(ValueError):
    """A data source cannot be listed at all (missing CSV column, empty folder, no shards)."""


@dataclass
class Record:
    """One video: ``source`` is a path or the file's bytes; ``meta`` what was stored beside it."""

    key: str
    name: str
    source: Union[str, bytes]
    meta: dict = field(default_factory=dict)


@dataclass
class Failure:
    """Something that could not be read (a video, or part of a shard), with the reason."""

    name: str
    reason: str


def csv_records(data_dir: str | os.PathLike, csv_path: str | os.PathLike, column: str = "videos") -> list[Record]:
    """The original layout: ``data_dir`` plus a CSV whose ``column`` holds paths relative to it.
    Empty cells are skipped (the original drops rows with missing values)."""
    csv_path, data_dir = Path(csv_path), Path(data_dir)
    if not csv_path.is_file():
        raise DataSourceError(f"CSV file {csv_path} does not exist")
    raw = csv_path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # the original reads its CSVs as ISO-8859-1
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or column not in reader.fieldnames:
        raise DataSourceError(f"CSV file {csv_path} has no column {column!r} (columns: {reader.fieldnames})")
    records = []
    for row in reader:
        rel = (row.get(column) or "").strip()
        if rel:
            records.append(Record(key=rel, name=str(data_dir / rel), source=str(data_dir / rel)))
    if not records:
        raise DataSourceError(f"CSV file {csv_path} lists no videos in column {column!r}")
    return records


def folder_records(root: str | os.PathLike, extensions: Sequence[str] = VIDEO_EXTENSIONS) -> list[Record]:
    """Every file under ``root`` (recursively) with one of ``extensions``, in sorted order."""
    root = Path(root)
    if not root.is_dir():
        raise DataSourceError(f"video folder {root} does not exist")
    suffixes = {"." + e.lower().lstrip(".") for e in extensions}
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    if not paths:
        raise DataSourceError(f"no videos ({', '.join(sorted(suffixes))}) under {root}")
    return [Record(key=p.relative_to(root).as_posix(), name=str(p), source=str(p)) for p in paths]


_BRACES = re.compile(r"\{([^{}]*)\}")


def expand_urls(urls: Union[str, Sequence[str]]) -> list[str]:
    """Shard lists: ``"a-{000..099}.tar"`` ranges (zero padding kept), ``{x,y}`` choices, several
    patterns joined by ``::`` or given as a list. Order is kept."""
    if isinstance(urls, (str, os.PathLike)):
        urls = str(urls).split("::")
    out: list[str] = []
    for url in urls:
        out.extend(_expand(str(url).strip()))
    if not out:
        raise DataSourceError(f"no shards in {urls!r}")
    return out


def _expand(pattern: str) -> list[str]:
    match = _BRACES.search(pattern)
    if match is None:
        return [pattern] if pattern else []
    body, head, tail = match.group(1), pattern[: match.start()], pattern[match.end() :]
    span = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if span:
        lo, hi = span.group(1), span.group(2)
        width = len(lo) if lo.startswith("0") or len(lo) == len(hi) else 0
        step = 1 if int(hi) >= int(lo) else -1
        choices = [str(i).zfill(width) for i in range(int(lo), int(hi) + step, step)]
    else:
        choices = body.split(",")
    return [url for choice in choices for url in _expand(head + choice + tail)]


def open_shard(url: str) -> tuple[io.BufferedIOBase, Optional[subprocess.Popen]]:
    """A readable byte stream for a local path or a ``pipe:COMMAND`` url (the command's stdout)."""
    if url.startswith("pipe:"):
        proc = subprocess.Popen(url[5:], shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return proc.stdout, proc
    path = url[7:] if url.startswith("file://") else url
    return open(path, "rb"), None


def shard_records(url: str, retries: int = 2, retry_wait: float = 1.0) -> Iterator[Union[Record, Failure]]:
    """The samples of one tar shard, in order; problems come out as :class:`Failure` s, never raised.

    A shard that cannot be opened (or whose command fails before yielding anything) is retried
    ``retries`` times; a shard that breaks part way (truncated, corrupt) yields what came before the
    damage and one failure naming the shard, so no sample is ever delivered twice.
    """
    for attempt in range(retries + 1):
        delivered = 0
        try:
            for item in _read_tar(url):
                delivered += 1
                yield item
            return
        except (OSError, tarfile.TarError, EOFError, subprocess.SubprocessError) as err:
            reason = f"{type(err).__name__}: {err}"
            if delivered or attempt == retries:
                where = f" after {delivered} samples" if delivered else ""
                yield Failure(name=url, reason=f"shard unreadable{where} ({reason})")
                return
            log.warning("shard %s: %s; retrying (%d/%d)", url, reason, attempt + 1, retries)
            time.sleep(retry_wait * (attempt + 1))


def _read_tar(url: str) -> Iterator[Union[Record, Failure]]:
    stream, proc = open_shard(url)
    try:
        try:
            yield from _tar_samples(url, stream)
        except (OSError, tarfile.TarError, EOFError):
            _check_command(proc, stream)  # a failed command explains a broken stream better
            raise
        _check_command(proc, stream)
    finally:
        stream.close()
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stderr.close()


def _tar_samples(url: str, stream) -> Iterator[Union[Record, Failure]]:
    """Consecutive tar members with the same key (path up to the first dot of the file name) are one sample."""
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        key, files = None, {}
        for member in tar:
            directory, _, base = member.name.rpartition("/")
            if not member.isfile() or base.startswith("."):
                continue
            stem, _, ext = base.partition(".")
            sample_key = f"{directory}/{stem}" if directory else stem
            if sample_key != key:
                if key is not None:
                    yield _sample(url, key, files)
                key, files = sample_key, {}
            files[ext.lower()] = tar.extractfile(member).read()
        if key is not None:
            yield _sample(url, key, files)


def _check_command(proc: Optional[subprocess.Popen], stream) -> None:
    """Raise if a ``pipe:`` command failed (exit status > 0; a broken pipe after we stopped reading is ours)."""
    if proc is None:
        return
    stream.close()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        return
    if proc.returncode not in (0, -13, 141):  # 141 / -13: SIGPIPE, the reader stopped first
        err = proc.stderr.read().decode(errors="replace").strip().splitlines()
        raise OSError(f"command exited with {proc.returncode}: {err[-1] if err else 'no message'}")


def _sample(url: str, key: str, files: dict[str, bytes]) -> Union[Record, Failure]:
    name = f"{url}#{key}"
    video_ext = next((ext for ext in files if ext in VIDEO_EXTENSIONS), None)
    if video_ext is None:
        return Failure(name=name, reason=f"no video file in the sample (files: {', '.join(sorted(files)) or 'none'})")
    meta = {}
    if "json" in files:
        try:
            meta = json.loads(files["json"])
        except ValueError as err:
            return Failure(name=name, reason=f"unreadable metadata JSON: {err}")
    return Record(key=key, name=name, source=files[video_ext], meta=meta)
