"""The official weights on the Hugging Face Hub: names mean published weights, fetched once and cached.

The 23 official checkpoints live in the Hub repository ``microsoft/VidTok``: ``checkpoints/<name>.ckpt`` for the v1.0
models and ``checkpoints/vidtok_v1_1/<name>.ckpt`` for the v1.1 ones. [`pretrained_file`][] downloads one with
``huggingface_hub.hf_hub_download`` (its cache, ``HF_HUB_CACHE`` / ``HF_HOME``, ``HF_HUB_OFFLINE=1``, revisions and
``local_files_only`` all behave as in every Hub library), reads it once through the strict, pickle-free checkpoint
reader and keeps the tokenizer weights as safetensors in vidtok's own cache (``$VIDTOK_CACHE``, default
``~/.cache/vidtok``), keyed by the Hub commit, so that later loads memory-map that file and never parse the pickle
again. A converted copy that cannot be read is converted again; a downloaded ``.ckpt`` that cannot be read is
downloaded again when the Hub can be reached, and reported with its path otherwise. Nothing here ever falls back to
random weights.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .errors import CheckpointError, HubError
from .io.weight_files import META_NAME, read_checkpoint, save_tokenizer_safetensors, tokenizer_state_dict

REPO_ID = "microsoft/VidTok"
META_HUB_FILE = "vidtok_hub_file"  # safetensors metadata of a converted copy: the Hub file it came from


def hub_filename(name: str) -> str:
    """Where the official checkpoint of ``name`` sits in ``microsoft/VidTok``."""
    return f"checkpoints/vidtok_v1_1/{name}.ckpt" if name.endswith("_v1_1") else f"checkpoints/{name}.ckpt"


def cache_dir() -> Path:
    """vidtok's cache of converted weights: ``$VIDTOK_CACHE``, else ``$XDG_CACHE_HOME/vidtok`` (``~/.cache/vidtok``)."""
    if os.environ.get("VIDTOK_CACHE"):
        return Path(os.environ["VIDTOK_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "vidtok"


@dataclass(frozen=True)
class CachedWeights:
    """What is on this machine for an official name (see [`cached`][])."""

    name: str
    checkpoint: Optional[Path]  # the downloaded .ckpt in the Hub cache
    converted: Optional[Path]  # vidtok's safetensors copy

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for p in (self.checkpoint, self.converted) if p is not None and p.is_file())


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _place_by_hand(name: str) -> str:
    filename = hub_filename(name)
    return (
        f"download it where the Hub can be reached (`hf download {REPO_ID} {filename}`, or "
        f"https://huggingface.co/{REPO_ID}/blob/main/{filename}) and pass its path as ckpt= / --ckpt, "
        "or copy that machine's Hub cache (HF_HUB_CACHE) here"
    )


def download_checkpoint(
    name: str,
    revision: Optional[str] = None,
    local_files_only: bool = False,
    force_download: bool = False,
    progress: bool = True,
) -> Path:
    """The official ``.ckpt`` of ``name`` in the Hub cache, downloaded when it is not there yet (HubError otherwise)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    from .composition import official_names

    if name not in official_names():
        raise HubError(f"{name!r} is not an official VidTok checkpoint; the official names are: {official_names()}")
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    filename = hub_filename(name)
    quiet = not progress and not are_progress_bars_disabled()
    if quiet:
        disable_progress_bars()
    try:
        path = hf_hub_download(
            REPO_ID,
            filename,
            revision=revision,
            local_files_only=local_files_only,
            force_download=force_download,
            library_name="vidtok",
        )
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as err:
        why = "offline (HF_HUB_OFFLINE=1)" if _offline() else "local_files_only" if local_files_only else str(err)
        raise HubError(
            f"the official weights of {name} are not on this machine: the file {filename} of the Hub repository "
            f"{REPO_ID} (revision {revision or 'main'}) is not in the Hub cache and cannot be downloaded ({why}); "
            + _place_by_hand(name)
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as err:
        raise HubError(
            f"cannot download the file {filename} of the Hub repository {REPO_ID} (revision {revision or 'main'}): "
            f"{err}; " + _place_by_hand(name)
        ) from None
    finally:
        if quiet:
            enable_progress_bars()
    return Path(path)


def _commit_of(path: Path) -> str:
    """The Hub commit a cached file belongs to (``.../snapshots/<commit>/checkpoints/...``)."""
    match = re.search(r"/snapshots/([^/]+)/", path.as_posix())
    return match.group(1) if match else "local"


def converted_path(name: str, commit: str) -> Path:
    return cache_dir() / "converted" / REPO_ID.replace("/", "--") / commit / f"{name}.safetensors"


def _readable(path: Path, name: str) -> bool:
    """A converted copy is used when safetensors can open it (header, sizes) and it says it holds ``name``."""
    if not path.is_file():
        return False
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            return (
                meta.get(META_NAME) == name and meta.get(META_HUB_FILE) == hub_filename(name) and bool(list(f.keys()))
            )
    except Exception:  # a truncated or overwritten file: convert again
        return False


def pretrained_file(
    name: str, revision: Optional[str] = None, local_files_only: bool = False, progress: bool = True
) -> Path:
    """A safetensors file with the official weights of ``name`` and its config, from vidtok's cache, else converted
    from the Hub's ``.ckpt`` (downloaded when needed). See the module docstring."""
    checkpoint = download_checkpoint(name, revision, local_files_only, progress=progress)
    commit = _commit_of(checkpoint)
    target = converted_path(name, commit)
    if _readable(target, name):
        return target
    try:
        loaded = read_checkpoint(checkpoint)
    except CheckpointError as err:
        if local_files_only or _offline():
            raise HubError(
                f"the cached official checkpoint {checkpoint} is damaged ({err}); delete it and download it again "
                "(the Hub cannot be reached from here: " + _place_by_hand(name) + ")"
            ) from None
        checkpoint = download_checkpoint(name, revision, force_download=True, progress=progress)
        commit = _commit_of(checkpoint)
        target = converted_path(name, commit)
        try:
            loaded = read_checkpoint(checkpoint)
        except CheckpointError as again:
            raise HubError(f"{checkpoint} is damaged even after a fresh download: {again}") from None
    # no config inside: the weights load by name (with any overrides), exactly as the .ckpt would
    meta = {META_NAME: name, META_HUB_FILE: hub_filename(name), "vidtok_hub_repo": REPO_ID, "vidtok_hub_commit": commit}
    save_tokenizer_safetensors(tokenizer_state_dict(loaded.state_dict), None, target, meta)
    return target


def cached(name: str) -> CachedWeights:
    """What of ``name``'s official weights this machine holds, without any network access."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(REPO_ID, hub_filename(name))
    checkpoint = Path(found) if isinstance(found, str) else None
    converted = None
    if checkpoint is not None:
        candidate = converted_path(name, _commit_of(checkpoint))
        converted = candidate if candidate.is_file() else None
    return CachedWeights(name, checkpoint, converted)
