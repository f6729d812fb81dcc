"""Where videos come from: a CSV of relative paths (the original layout), a folder, or WebDataset tar shards.

A source yields [`Record`][] s: a video's key, a name for messages, its path or bytes, and any
metadata stored with it. Shards are read as streams by the ``webdataset`` library, so a shard url is whatever it
opens: a local path, ``pipe:COMMAND``, ``http(s)://``, ``gs://``, and ``s3://`` (through the AWS CLI); samples are
the files sharing a key (``<key>.mp4`` + ``<key>.json``), as webdataset writes and reads them.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from webdataset.gopen import Pipe, gopen_schemes
from webdataset.shardlists import expand_urls as wds_expand_urls
from webdataset.tariterators import group_by_keys, tar_file_expander, url_opener

from ..errors import DamagedShardError, DataSourceError

log = logging.getLogger("vidtok.data")

VIDEO_EXTENSIONS = ("mp4", "avi", "mkv", "mov", "webm", "m4v", "mpg", "mpeg", "flv", "ts", "gif")


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


SOURCE_KINDS = ("folder", "csv", "shards")


def source_kind(path: str | os.PathLike, meta: str | os.PathLike | None = None, kind: str = "auto") -> str:
    """Which kind of source a data path is: ``kind`` when given; else ``csv`` with a CSV listing (``meta``), ``shards``
    for tar urls (``pipe:``, ``.tar``, brace patterns), ``csv`` for a file (a ``.csv`` or any existing file), else a
    folder. The one rule that training data, evaluation and ``vidtok shards`` follow."""
    if kind != "auto":
        if kind not in SOURCE_KINDS:
            raise DataSourceError(f"source must be one of {', '.join(SOURCE_KINDS)} or auto, got {kind!r}")
        return kind
    if meta:
        return "csv"
    text = str(path)
    if text.startswith("pipe:") or ".tar" in text or "{" in text or "://" in text:
        return "shards"
    return "csv" if text.lower().endswith(".csv") or Path(text).is_file() else "folder"


def video_records(
    path: str | os.PathLike,
    *,
    kind: str = "auto",
    meta: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    column: str = "videos",
) -> list[Record]:
    """The videos of a folder or CSV source (for shards, stream [`shard_records`][] instead).

    A CSV is ``path`` itself (paths relative to ``data_dir``, default the CSV's folder), or ``meta`` with paths
    relative to ``path`` (the original's ``--data_dir`` + ``--meta_path``; ``meta`` itself relative to ``path``
    when it is not a file as given)."""
    resolved = source_kind(path, meta, kind)
    if resolved == "shards":
        raise DataSourceError(f"{path} is a shard source: read it with shard_records / VideoClipDataset(shards=...)")
    if resolved == "folder":
        return folder_records(path)
    if meta:
        csv_path = Path(meta)
        if not csv_path.is_absolute() and not csv_path.is_file():
            csv_path = Path(path) / csv_path
        return csv_records(path, csv_path, column)
    return csv_records(data_dir or Path(path).parent, path, column)


def expand_urls(urls: Union[str, Sequence[str]]) -> list[str]:
    """Shard lists as webdataset spells them: brace ranges ``"a-{000..099}.tar"`` (padding kept), ``{x,y}`` choices,
    several patterns joined by ``::`` or given as a list, ``${WDS_VAR}`` environment variables. Order is kept."""
    items = str(urls).split("::") if isinstance(urls, (str, os.PathLike)) else [str(u) for u in urls]
    out = [url for item in items if item.strip() for url in wds_expand_urls(item.strip())]
    if not out:
        raise DataSourceError(f"no shards in {urls!r}")
    return out


def _gopen_s3(url: str, mode: str = "rb", bufsize: int = 8192):
    """``s3://bucket/key`` through the AWS CLI, as webdataset opens ``gs://`` through gsutil."""
    if mode[0] == "r":
        return Pipe(["aws", "s3", "cp", url, "-"], mode=mode, bufsize=bufsize, ignore_status=[141, 23])
    if mode[0] == "w":
        return Pipe(["aws", "s3", "cp", "-", url], mode=mode, bufsize=bufsize, ignore_status=[141, 26])
    raise ValueError(f"{mode}: unknown mode")


# webdataset opens local paths, file://, pipe:CMD, http(s):// (curl), gs:// (gsutil), hf://, ais://; it has no s3
# handler of its own (users write pipe:aws s3 cp ...), so s3:// gets the AWS CLI one, where none is registered.
gopen_schemes.setdefault("s3", _gopen_s3)


def shard_records(url: str, retries: int = 2, retry_wait: float = 1.0) -> Iterator[Union[Record, Failure]]:
    """The samples of one tar shard, in order, read with webdataset (any url it opens); problems come out as
    [`Failure`][] s, never raised.

    A shard that cannot be opened (or whose command fails before yielding anything) is retried ``retries`` times; a
    shard that breaks part way (truncated, corrupt, a duplicate member) yields the complete samples before the damage
    and one failure naming the shard, so no sample is ever delivered twice or with members missing.
    """
    for attempt in range(retries + 1):
        errors: list[BaseException] = []

        def stop(exn: BaseException, errors: list = errors) -> bool:
            errors.append(exn)
            return False  # end this shard: what follows a damaged member cannot be trusted

        delivered, held = 0, None
        # A sample is passed on once the next one starts or the shard ends cleanly: the one being read when the
        # shard broke may lack members (webdataset hands it on when its reader stops).
        streams = _checked_to_the_end(url_opener([{"url": url}], handler=stop), errors)
        for sample in group_by_keys(tar_file_expander(streams, handler=stop), handler=stop):
            if held is not None:
                delivered += 1
                yield _sample(url, held)
            held = sample
        if not errors:
            if held is not None:
                yield _sample(url, held)
            return
        reason = _reason(errors[0], url)
        if delivered or attempt == retries:
            where = f" after {delivered} samples" if delivered else ""
            yield Failure(name=url, reason=f"shard unreadable{where} ({reason})")
            return
        log.warning("shard %s: %s; retrying (%d/%d)", url, reason, attempt + 1, retries)
        time.sleep(retry_wait * (attempt + 1))


def _checked_to_the_end(sources: Iterator[dict], errors: list) -> Iterator[dict]:
    """Pass opened shard streams on; once one has been read, check that only tar padding (zeros) was left after it.

    Python's tarfile (and so webdataset) ends an archive quietly at an invalid header: without this check a damaged
    header would silently drop the rest of its shard. Reading to the end also lets a ``pipe:`` command finish, so its
    exit status is known."""
    for source in sources:
        yield source
        stream, left = source["stream"], 0
        try:
            while block := stream.read(1 << 16):
                if block.count(0) != len(block) or left:
                    left += len(block)
        except Exception as exn:  # the command or connection failed after the archive's end
            errors.append(exn)
            continue
        if left:
            errors.append(DamagedShardError(f"a damaged tar header ended the archive with {left}+ bytes after it"))


def _reason(err: BaseException, url: str) -> str:
    # webdataset appends the opened stream to the error's args: a failed command explains a broken stream better
    pipe = next((a for a in err.args if isinstance(a, Pipe)), None)
    if pipe is not None:
        try:
            status = pipe.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            status = None
        if status not in (None, *pipe.ignore_status):
            return f"command exited with {status} (its own message is on stderr)"
    if isinstance(err, OSError) and err.errno is not None:  # webdataset appends the url to args: rebuild the message
        return f"{type(err).__name__}: {err.strerror}: {err.filename or url}"
    message = str(err.args[0]) if err.args else str(err)
    status = re.search(r"\): exit (-?\d+) \(read\)", message)  # webdataset's Pipe: "(args, kw): exit N (read) ..."
    if status:
        return f"command exited with {status.group(1)} (its own message is on stderr)"
    return f"{type(err).__name__}: {message}"


def _sample(url: str, sample: dict) -> Union[Record, Failure]:
    key = sample["__key__"]
    name = f"{url}#{key}"
    files = {ext: data for ext, data in sample.items() if not ext.startswith("__")}
    # webdataset keys end at the first dot of the file name: "clip.mp4" has suffix "mp4", "clip.hq.mp4" "hq.mp4"
    video_ext = next((ext for ext in files if ext.rsplit(".", 1)[-1] in VIDEO_EXTENSIONS), None)
    if video_ext is None:
        return Failure(name=name, reason=f"no video file in the sample (files: {', '.join(sorted(files)) or 'none'})")
    meta = {}
    if "json" in files:
        try:
            meta = json.loads(files["json"])
        except ValueError as err:
            return Failure(name=name, reason=f"unreadable metadata JSON: {err}")
    return Record(key=key, name=name, source=files[video_ext], meta=meta)
