"""The check every reader makes first: the path is a non-empty file (an error of the reader's type otherwise)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional


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
