"""An offline Hugging Face Hub cache holding checkpoints under their official file names, laid out as
``hf_hub_download`` finds them: ``models--microsoft--VidTok/refs/<revision>`` (a commit) and
``snapshots/<commit>/checkpoints/[vidtok_v1_1/]<name>.ckpt`` (links into ``blobs/``, as the Hub client writes)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from vidtok.hub import hub_filename

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def add_to_hub_cache(root: Path, files: dict[str, Path], commit: str = COMMIT, revision: str = "main") -> Path:
    """Put ``{official name: checkpoint file}`` into the cache at ``root`` under ``commit``; returns ``root``."""
    return add_repo_to_hub_cache(
        root, "microsoft/VidTok", {hub_filename(name): src for name, src in files.items()}, commit, revision
    )


def add_repo_to_hub_cache(
    root: Path, repo_id: str, files: dict[str, Path], commit: str = COMMIT, revision: str = "main"
) -> Path:
    """Put ``{path in the repository: file}`` of model repository ``repo_id`` into the cache at ``root``."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    for name, source in files.items():
        blob = repo / "blobs" / hashlib.sha256(f"{commit}/{name}".encode()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            try:
                os.link(source, blob)  # large stand-ins are not copied
            except OSError:
                shutil.copyfile(source, blob)
        link = repo / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return root


def hub_environment(root: Path, vidtok_cache: Path) -> dict[str, str]:
    """Environment variables of a process that must find weights in ``root`` only (no network)."""
    return {"HF_HUB_CACHE": str(root), "HF_HUB_OFFLINE": "1", "VIDTOK_CACHE": str(vidtok_cache)}


def use_hub_cache(monkeypatch: pytest.MonkeyPatch, root: Path, vidtok_cache: Path, offline: bool = True) -> None:
    """The same for this process: huggingface_hub reads its environment once, at import, so its constants too."""
    from huggingface_hub import constants

    for key, value in hub_environment(root, vidtok_cache).items():
        monkeypatch.setenv(key, value)
    if not offline:
        monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
