"""Training checkpoints in a run directory: written whole or not at all, newest K kept.

Each checkpoint is a folder ``checkpoints/step_<N>``. It is written under a hidden temporary name,
a ``COMPLETE`` marker goes in last, and only then is the folder renamed into place, so a run killed
while saving leaves at worst a temporary folder that the next start removes; resuming always picks
the newest folder that has its marker.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Optional

from ..io.files import give_umask_mode

MARKER = "COMPLETE"
_NAME = re.compile(r"^step_(\d+)$")


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


class CheckpointDir:
    """The ``checkpoints`` folder of a run."""

    def __init__(self, root: str | os.PathLike, keep: int = 3):
        self.root = Path(root)
        self.keep = keep

    def complete(self) -> list[tuple[int, Path]]:
        """(step, folder) of every complete checkpoint, oldest first."""
        found = []
        if self.root.is_dir():
            for entry in self.root.iterdir():
                match = _NAME.match(entry.name)
                if match and entry.is_dir() and (entry / MARKER).is_file():
                    found.append((int(match.group(1)), entry))
        return sorted(found)

    def latest(self) -> Optional[Path]:
        """The newest complete checkpoint, or None."""
        done = self.complete()
        return done[-1][1] if done else None

    def clean_partial(self) -> list[Path]:
        """Remove leftovers of interrupted saves (temporary folders, step folders without marker)."""
        removed = []
        if self.root.is_dir():
            for entry in self.root.iterdir():
                partial = entry.name.startswith(".tmp-") or (_NAME.match(entry.name) and not (entry / MARKER).exists())
                if partial and entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(entry)
        return removed

    def path(self, step: int) -> Path:
        """Where the checkpoint of ``step`` lives once committed."""
        return self.root / step_dir_name(step)

    def tmp_path(self, step: int) -> Path:
        """Where the checkpoint of ``step`` is written before [`commit`][]."""
        return self.root / f".tmp-{step_dir_name(step)}"

    def begin(self, step: int) -> Path:
        """A fresh temporary folder for the checkpoint of ``step`` (call [`commit`][] when written)."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.tmp_path(step)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        return tmp

    def commit(self, step: int, tmp: Path) -> Path:
        """Mark the written folder complete, move it into place and prune old checkpoints."""
        final = self.path(step)
        _finish_tree(tmp)
        (tmp / MARKER).write_text(f"{step}\n")
        if final.exists():  # a re-save of the same step (e.g. a stop right after a periodic save)
            shutil.rmtree(final)
        os.replace(tmp, final)
        self.prune()
        return final

    def save(self, step: int, write: Callable[[Path], None]) -> Path:
        """Call ``write(folder)`` on a temporary folder, then commit it (single process)."""
        tmp = self.begin(step)
        write(tmp)
        return self.commit(step, tmp)

    def prune(self) -> None:
        """Delete all but the newest ``keep`` complete checkpoints."""
        done = self.complete()
        for _, folder in done[: max(0, len(done) - self.keep)]:
            shutil.rmtree(folder, ignore_errors=True)


def _finish_tree(folder: Path) -> None:
    """Flush the files of ``folder`` to disk before the rename that publishes them, each with the mode a plain
    ``open()`` gives (Accelerate's ``model.safetensors`` comes out of safetensors' own temporary file as 0o600)."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
            give_umask_mode(path)
