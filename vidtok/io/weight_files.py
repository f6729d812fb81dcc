"""Checkpoint I/O: official Lightning ``.ckpt`` files and safetensors, strict key checks, conversion.

Loading never executes pickled code: ``.ckpt`` files are read with ``torch.load(weights_only=True)``
and anything that would need a Python object rebuilt is refused with the offending global named.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor, nn

from ..config import TokenizerConfig
from ..errors import CheckpointError
from .files import existing_file, replaced_atomically

META_SOURCE = "vidtok.source"  # safetensors metadata: where the weights came from (shown in model cards)

#: Prefixes of training-only entries in official/Lightning checkpoints (LPIPS, discriminator, logvar).
IGNORED_PREFIXES = ("loss.",)
#: Metadata keys written into safetensors files.
META_FORMAT = "vidtok.format"
META_NAME = "vidtok.name"
META_CONFIG = "vidtok.config"
FORMAT_TOKENIZER = "tokenizer-v1"


@dataclass
class LoadedCheckpoint:
    """Tensors from a checkpoint file plus what its metadata says (safetensors only)."""

    path: Path
    state_dict: dict[str, Tensor]
    config: Optional[TokenizerConfig] = None
    name: Optional[str] = None
    metadata: dict[str, str] = field(default_factory=dict)


def _sniff(path: Path) -> str:
    """'zip' (torch.save), 'pickle' (legacy torch.save), 'safetensors', or 'unknown'."""
    with path.open("rb") as fh:
        head = fh.read(16)
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head[:1] == b"\x80" and len(head) > 1 and head[1] in range(2, 6):
        return "pickle"
    if len(head) >= 9:
        header_len = int.from_bytes(head[:8], "little")
        if 2 <= header_len <= 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    return "unknown"


def read_checkpoint(path: str | os.PathLike) -> LoadedCheckpoint:
    """Read a ``.ckpt``/``.pt`` (``{"state_dict": ...}`` or a bare state dict) or ``.safetensors`` file."""
    path = existing_file(path, "checkpoint", CheckpointError)
    kind = _sniff(path)
    if kind == "safetensors":
        return _read_safetensors(path)
    if kind in ("zip", "pickle"):
        return LoadedCheckpoint(path, _read_torch(path, kind))
    raise CheckpointError(
        f"{path} is not a checkpoint: expected a PyTorch file written by torch.save (a zip archive) or a "
        f"safetensors file, found bytes {path.read_bytes()[:8]!r} at its start"
    )


def _read_torch(path: Path, kind: str) -> dict[str, Tensor]:
    if kind == "zip" and not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} looks like a PyTorch checkpoint but is truncated or corrupt (bad zip archive)")
    try:
        # No mmap: parameters are assigned from these tensors, and a file-backed parameter would fault if
        # the file were overwritten in place later (e.g. a run saving over the checkpoint it started from).
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        message = str(err)
        if "Unsupported global" in message or "not an allowed global" in message or "GLOBAL" in message:
            culprit = next((line.strip() for line in message.splitlines() if "GLOBAL" in line), message[:200])
            raise CheckpointError(
                f"refusing to load {path}: rebuilding it would execute pickled code ({culprit}). VidTok "
                "checkpoints hold only tensors; re-save the state dict from a trusted environment "
                "(torch.save({'state_dict': sd}, ...)) or convert it to safetensors there."
            ) from None
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {message.splitlines()[0]}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is truncated or corrupt: {str(err).splitlines()[0]}") from None
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(
            f"{path} holds no state dict: expected a dict of tensors or a dict with a 'state_dict' entry, "
            f"found {type(obj).__name__}"
        )
    not_tensors = [k for k, v in obj.items() if not isinstance(v, Tensor)]
    if not_tensors:
        raise CheckpointError(f"{path}: state dict entries that are not tensors: {_listing(not_tensors)}")
    return dict(obj)


def _read_safetensors(path: Path) -> LoadedCheckpoint:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            metadata = dict(fh.metadata() or {})
            state_dict = {key: fh.get_tensor(key) for key in fh.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file (truncated or corrupt?): {err}") from None
    config = None
    if META_CONFIG in metadata:
        try:
            config = TokenizerConfig.from_any(metadata[META_CONFIG])
        except ValueError as err:
            raise CheckpointError(f"{path}: its tokenizer config metadata is invalid: {err}") from None
    return LoadedCheckpoint(path, state_dict, config, metadata.get(META_NAME) or None, metadata)


def _listing(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def tokenizer_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop training-only entries (``loss.*``) from an official or Lightning state dict."""
    return {k: v for k, v in state_dict.items() if not k.startswith(IGNORED_PREFIXES)}


def key_mismatches(expected: Mapping[str, Tensor], found: Mapping[str, Tensor], prefix: str = "") -> list[str]:
    """Why ``found`` does not load where ``expected`` is: one entry each for the missing, the unexpected and the
    mis-shaped keys (named with ``prefix`` in front), and none when every key is there with its shape."""
    want = {k: tuple(v.shape) for k, v in expected.items()}
    have = {k: tuple(v.shape) for k, v in found.items()}
    missing = [prefix + k for k in sorted(set(want) - set(have))]
    unexpected = [prefix + k for k in sorted(set(have) - set(want))]
    misshaped = [
        f"{prefix}{k} (expected {list(want[k])}, found {list(have[k])})"
        for k in sorted(set(want) & set(have))
        if want[k] != have[k]
    ]
    entries = []
    if missing:
        entries.append(f"{len(missing)} missing keys: {_listing(missing)}")
    if unexpected:
        entries.append(f"{len(unexpected)} unexpected keys: {_listing(unexpected)}")
    if misshaped:
        entries.append(f"{len(misshaped)} keys with a shape mismatch: {_listing(misshaped, 6)}")
    return entries


def check_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor], source: str = "checkpoint") -> None:
    """Raise [`CheckpointError`][] listing missing, unexpected and mis-shaped keys, if any."""
    expected = model.state_dict()
    found = tokenizer_state_dict(state_dict)
    mismatches = key_mismatches(expected, found)
    if not mismatches:
        return
    lines = [f"{source} does not fit {getattr(getattr(model, 'config', None), 'name', None) or 'the model'}:"]
    lines += [f"  {entry}" for entry in mismatches]
    hint = _width_hint(expected, found)
    if hint:
        lines.append(f"  hint: {hint}")
    raise CheckpointError("\n".join(lines))


def _width_hint(expected: Mapping[str, Tensor], found: Mapping[str, Tensor]) -> str:
    for key in ("encoder.conv_in.conv.weight", "encoder.conv_in.weight"):
        if key in expected and key in found and expected[key].shape[0] != found[key].shape[0]:
            return (
                f"the checkpoint's base width looks like model.ch={found[key].shape[0]} "
                f"(the config has {expected[key].shape[0]})"
            )
    return ""


def save_tokenizer_safetensors(
    state_dict: Mapping[str, Tensor],
    config: Optional[TokenizerConfig],
    path: str | os.PathLike,
    metadata: Optional[Mapping[str, str]] = None,
) -> Path:
    """Write tokenizer weights plus the config (name and full JSON) and any other ``metadata`` as metadata,
    atomically. ``config=None`` stores the weights without a config (they then load by name)."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tokenizer_state_dict(state_dict).items()}
    metadata = {META_FORMAT: FORMAT_TOKENIZER, **(metadata or {})}
    if config is not None:
        metadata.update({META_CONFIG: config.to_json(), META_NAME: config.name or ""})
    with replaced_atomically(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path
