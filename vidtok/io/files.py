"""Files read and written safely: the check every reader makes first (the path is a non-empty file, an error of
the reader's type otherwise), and the one way every writer puts a file into place (hidden temporary file beside
it, fsynced, renamed), so a reader never sees half a file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional


def existing_file(path: str | os.PathLike, what: str, error: type[Exception], label: Optional[str] = None) -> Path:
    """``path`` as a Path when it is a file with content; else ``error("<what> <label> does not exist ...")``
    (``label``: how the message names the file, default its path)."""
    path = Path(path)
    label = label or str(path)
    if not path.is_file():
        raise error(f"{what} {label} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise error(f"{what} {label} is empty (0 bytes)")
    return path


@contextmanager
def replaced_atomically(path: str | os.PathLike) -> Iterator[Path]:
    """A hidden temporary path beside ``path`` (``.<name>.<random>.tmp``) to write to; when the block ends it is
    fsynced and renamed onto ``path``, when the block raises it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """``data`` into ``path`` through :func:`replaced_atomically`; returns the path."""
    with replaced_atomically(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def read_json(path: Path, error: type[Exception], what: str, remedy: str) -> Any:
    """The JSON in ``path``; a file that does not parse raises ``error("<what> <path> is unreadable (<why>);
    <remedy>")``."""
    try:
        return json.loads(Path(path).read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise error(f"{what} {path} is unreadable ({err}); {remedy}") from None
