"""Files read and written safely: the check every reader makes first (the path is a non-empty file, an error of
the reader's type otherwise), and the one way every writer puts a file into place (hidden temporary file beside
it, fsynced, given the mode a plain ``open()`` would have given it, renamed), so a reader never sees half a file
and teammates can read the whole one as the user's umask allows."""

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


def proc_field(path: str, key: str) -> Optional[str]:
    """The value of the first ``key: value`` line of a Linux ``/proc`` file (``/proc/self/status``,
    ``/proc/cpuinfo``), or None where there is no such file or line."""
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except (OSError, IndexError):
        pass
    return None


def _umask() -> int:
    """The process's umask, read from /proc where Linux shows it; elsewhere by setting it and restoring it at once
    (to 0o077 meanwhile, so a file another thread creates in that instant is only less readable, never more)."""
    shown = proc_field("/proc/self/status", "Umask:")
    if shown is not None:
        return int(shown, 8)
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def give_umask_mode(path: str | os.PathLike) -> None:
    """Give a finished temporary file the mode a plain ``open()`` would have: 0o666 minus the umask. Temporary
    files are made 0o600 (``tempfile.mkstemp``, and safetensors' ``save_file``, which writes its own), and a rename
    keeps the mode, so without this every file written through a temporary name would be private to its owner."""
    os.chmod(path, 0o666 & ~_umask())


@contextmanager
def replaced_atomically(path: str | os.PathLike) -> Iterator[Path]:
    """A hidden temporary path beside ``path`` (``.<name>.<random>.tmp``) to write to; when the block ends it is
    fsynced, given the umask's mode and renamed onto ``path``, when the block raises it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        give_umask_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """``data`` into ``path`` through [`replaced_atomically`][]; returns the path."""
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
