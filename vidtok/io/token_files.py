"""Token files: latents or FSQ indices of one video plus what is needed to decode it back.

A token file is a safetensors file with one tensor (``latents`` (1, C, t, h, w) or ``indices``
(1, t, h, w)) and metadata: the tokenizer (name and full config), the frame rate, the number of
frames the latents stand for, the processed and original frame sizes, the source path and, when the
video was cut into clips encoded one by one (non-causal models; ``encode.py``'s clips), the clip length.
Reading a file checks that its tensor holds the latent frames its frame count takes
([`TokenFile.check_frames`][]).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor

from ..config import TokenizerConfig
from ..errors import TokenFileError
from .files import existing_file, write_atomic

TOKEN_FORMAT = "vidtok-tokens-v1"


@dataclass
class TokenFile:
    """Tokens of one video. ``kind`` is ``"latents"`` or ``"indices"``; KL latents may come with the posterior's
    ``logvar`` (their shape: ``data`` is then the posterior mean)."""

    kind: str
    data: Tensor
    tokenizer: TokenizerConfig
    fps: float
    frames: int
    height: int
    width: int
    clip_frames: Optional[int] = None  # clips encoded independently (non-causal models; encode.py's clips mode)
    source: dict[str, Any] = field(default_factory=dict)
    logvar: Optional[Tensor] = None

    @property
    def latent_frames(self) -> int:
        """The latent frames the tensor holds: its time axis (dim 2 of latents, dim 1 of indices)."""
        return self.data.shape[1 if self.kind == "indices" else 2]

    def latent_frame_range(self) -> tuple[int, int]:
        """The fewest and the most latent frames a valid file of ``frames`` frames holds: what those frames take
        (the last group of f completed with copies) and, with ``clip_frames``, what they take completed to a whole
        clip (encode.py's ``last_clip=repeat``)."""
        need = self.tokenizer.latent_frames(self.frames)
        if not self.clip_frames:
            return need, need
        whole_clips = -(-self.frames // self.clip_frames) * self.clip_frames
        return need, self.tokenizer.latent_frames(whole_clips)

    def check_frames(self, path: str | os.PathLike = "token file") -> None:
        """Refuse a tensor whose latent frames disagree with the ``frames`` the metadata says (outside
        [`latent_frame_range`][]), so a decode writes exactly ``frames`` frames and decodes at most one clip
        more."""
        self._check_layout(path)
        (need, most), held = self.latent_frame_range(), self.latent_frames
        if self.frames >= 1 and need <= held <= most:
            return
        takes = f"{need} latent frames" + (f" ({most} with the last clip completed)" if most != need else "")
        raise TokenFileError(
            f"{path}: its metadata says {self.frames} frames, but its tensor holds {held} latent frames; "
            f"{self.frames} frames take {takes} and {held} latent frames decode to "
            f"{self.tokenizer.decoded_frames(held)} frames ({_frame_rule(self.tokenizer)}); vidtok writes no such file"
        )

    def _check_layout(self, path: str | os.PathLike) -> None:
        dims, layout = (4, "(1, t, h, w)") if self.kind == "indices" else (5, "(1, C, t, h, w)")
        if self.data.ndim != dims:
            raise TokenFileError(f"{path}: expected {self.kind} {layout}, found shape {tuple(self.data.shape)}")
        if self.logvar is not None and (self.kind != "latents" or self.logvar.shape != self.data.shape):
            raise TokenFileError(
                f"{path}: a logvar of shape {tuple(self.logvar.shape)} beside {self.kind} of shape "
                f"{tuple(self.data.shape)}: expected KL latents and a logvar of their shape"
            )

    def check_tokenizer(self, config: TokenizerConfig, path: str | os.PathLike = "token file") -> None:
        """Refuse to decode with a tokenizer whose config differs from the one that encoded."""
        diffs = self.tokenizer.differences(config)
        if diffs:
            raise TokenFileError(
                f"{path} was encoded with tokenizer {self.tokenizer.name!r}, not {config.name!r}: " + "; ".join(diffs)
            )


def _frame_rule(config: TokenizerConfig) -> str:
    f = config.temporal_factor
    if config.causal:
        return f"causal {config.label}: T frames take 1 + ceil((T - 1) / {f}) latent frames"
    return f"non-causal {config.label}: T frames take ceil(T / {f}) latent frames"


def _index_dtype(codebook_size: int) -> torch.dtype:
    return torch.int16 if codebook_size <= 2**15 else torch.int32


def token_bytes(tokens: TokenFile) -> bytes:
    """A token file's bytes (safetensors: the one tensor and the metadata); FSQ indices in the smallest integer type
    that holds the codebook. What [`save_tokens`][] writes and a shard member of ``encode.py`` holds."""
    from safetensors.torch import save

    if tokens.kind not in ("latents", "indices"):
        raise ValueError(f"kind must be 'latents' or 'indices', got {tokens.kind!r}")
    data = tokens.data.detach().cpu()
    if tokens.kind == "indices":
        data = data.to(_index_dtype(tokens.tokenizer.codebook_size))
    metadata = {
        "format": TOKEN_FORMAT,
        "kind": tokens.kind,
        "tokenizer": tokens.tokenizer.to_json(),
        "tokenizer_name": tokens.tokenizer.name or "",
        "fps": repr(float(tokens.fps)),
        "frames": str(int(tokens.frames)),
        "height": str(int(tokens.height)),
        "width": str(int(tokens.width)),
        "clip_frames": "" if tokens.clip_frames is None else str(int(tokens.clip_frames)),
        "source": json.dumps(tokens.source),
    }
    tensors = {tokens.kind: data.contiguous()}
    if tokens.logvar is not None:
        tokens._check_layout("token data")
        tensors["logvar"] = tokens.logvar.detach().cpu().contiguous()
    return save(tensors, metadata=metadata)


def save_tokens(path: str | os.PathLike, tokens: TokenFile) -> Path:
    """Write a token file atomically (temporary file, then rename)."""
    return write_atomic(path, token_bytes(tokens))


def load_tokens(path: str | os.PathLike) -> TokenFile:
    """Read a token file written by [`save_tokens`][] (clear errors for anything else)."""
    path = existing_file(path, "token file", TokenFileError)
    tokens = tokens_from_bytes(path.read_bytes(), str(path))
    tokens.check_frames(path)
    return tokens


def tokens_from_bytes(data: bytes, label: str = "token data") -> TokenFile:
    """A token file from its bytes (see [`token_bytes`][]); ``label`` names it in errors."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        header_len = int.from_bytes(data[:8], "little")
        if len(data) < 8 or header_len > len(data) - 8:
            raise ValueError(f"a safetensors header of {header_len} bytes in {len(data)} bytes")
        metadata = dict(json.loads(data[8 : 8 + header_len]).get("__metadata__") or {})
        tensors = load(data)
    except (SafetensorError, OSError, ValueError) as err:
        raise TokenFileError(f"{label} is not a readable safetensors token file: {err}") from None
    if metadata.get("format") != TOKEN_FORMAT:
        raise TokenFileError(
            f"{label} is not a vidtok token file (format {metadata.get('format')!r}, expected {TOKEN_FORMAT!r})"
        )
    try:
        kind = metadata["kind"]
        clip = metadata.get("clip_frames") or None
        return TokenFile(
            kind=kind,
            data=tensors[kind].long() if kind == "indices" else tensors[kind],
            tokenizer=TokenizerConfig.from_any(metadata["tokenizer"]),
            fps=float(metadata["fps"]),
            frames=int(metadata["frames"]),
            height=int(metadata["height"]),
            width=int(metadata["width"]),
            clip_frames=int(clip) if clip else None,
            source=json.loads(metadata.get("source") or "{}"),
            logvar=tensors.get("logvar"),
        )
    except (KeyError, ValueError) as err:
        raise TokenFileError(f"{label}: incomplete or invalid token file metadata ({err})") from None
