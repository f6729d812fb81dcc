"""What ``decode.py`` reads: latents or FSQ indices from an ``encode.py`` output, tar shards, or a folder of tensor
files a generative model wrote (``.safetensors``, ``.pt`` / ``.pth``, ``.npy``), each turned into
[`TokenFile`][vidtok.io.token_files.TokenFile]s that name their frames, size and rate.

Listing is cheap (names only) and split over processes; each entry is read when its turn comes, so an unreadable
or ill-shaped one becomes a failure with its reason ([`InputFailure`][]) instead of stopping the run.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import Tensor

from ..config import TokenizerConfig
from ..data.sources import expand_urls
from ..data.videos import SHARD_STRIDE, ListingFailure
from ..errors import DataSourceError, TokenFileError
from ..io.token_files import TOKEN_FORMAT, TokenFile, tokens_from_bytes

#: The tensor files a folder input holds.
TENSOR_SUFFIXES = (".safetensors", ".pt", ".pth", ".npy")
#: The names a file's tensor is found under when ``data.key`` is not given (else: the file's only tensor).
TENSOR_KEYS = ("latents", "indices", "z", "samples")
KINDS = ("auto", "latents", "indices")


@dataclass
class LatentInput:
    """One entry of the listing: ``order`` in the whole listing, ``key`` (the output's name, without ``.mp4``),
    ``name`` (where it comes from, for messages) and ``read`` (its tokens, one per sample of a batched tensor)."""

    order: int
    key: str
    name: str
    read: Callable[[], list[tuple[str, TokenFile]]]


#: An entry that gives no video, and why (an unreadable shard): the listing failure of the video jobs.
InputFailure = ListingFailure


@dataclass(frozen=True)
class RawTensors:
    """How a raw tensor (no token file metadata) is read: ``kind`` (``auto``: integer tensors are FSQ indices,
    floating ones latents), ``key`` (the tensor's name in a file of several), ``fps`` of the output, ``clip_frames``
    of a non-causal model's independent clips (None: the whole tensor is one clip)."""

    kind: str = "auto"
    key: Optional[str] = None
    fps: float = 24.0
    clip_frames: Optional[int] = None


def is_shard_source(source: str) -> bool:
    """Whether ``source`` names tar shards (an ``encode.py`` output folder, a ``.tar`` file or pattern, ``pipe:``)."""
    path = Path(source)
    if path.is_dir():
        return any(path.glob("part-*.tar"))
    return source.startswith("pipe:") or ".tar" in source


def list_inputs(source: str, raw: RawTensors, rank: int = 0, world: int = 1, limit: Optional[int] = None) -> Iterator:
    """This process's share of the entries of ``source`` ([`LatentInput`][] or [`InputFailure`][]), in order.

    Shards are dealt out whole (every ``world``-th shard; entries are their ``.safetensors`` members, streamed: one
    in memory at a time), files one by one. ``limit``: the first N entries of the listing (every process then reads
    the shards in order up to it and keeps every ``world``-th entry).
    """
    if is_shard_source(source):
        urls = _shard_urls(source)
        if limit is None:
            for index in range(rank, len(urls), world):
                yield from _shard_entries(urls[index], index * SHARD_STRIDE)
            return
        entries: Iterator = (e for i, url in enumerate(urls) for e in _shard_entries(url, i * SHARD_STRIDE))
    else:
        entries = (_file_entry(order, path, Path(source), raw) for order, path in enumerate(_tensor_files(source)))
    for count, entry in enumerate(entries):
        if limit is not None and count >= limit:
            return
        if count % world == rank:
            yield entry


def check_inputs(source: str) -> None:
    """Refuse, before anything is claimed or loaded, a ``source`` that holds nothing to decode (DataSourceError
    naming it); entries that cannot be read are found later, one by one."""
    if is_shard_source(source):
        urls = _shard_urls(source)
        local = [u for u in urls if "://" not in u and not u.startswith("pipe:")]
        if not urls or (len(local) == len(urls) and not any(Path(u).is_file() for u in local)):
            first = f" (the first: {urls[0]})" if urls else ""
            raise DataSourceError(f"data.dir {source}: none of its {len(urls)} tar shards exists{first}")
        return
    _tensor_files(source)


def _shard_urls(source: str) -> list[str]:
    path = Path(source)
    if path.is_dir():
        return sorted(str(p) for p in path.glob("part-*.tar"))
    return expand_urls(source)


def _shard_entries(url: str, first_order: int) -> Iterator[Union[LatentInput, InputFailure]]:
    """The ``.safetensors`` members of one shard, streamed; a shard that cannot be read (or read on) is a failure
    from where it broke."""
    from webdataset.gopen import gopen

    position = 0
    try:
        with gopen(url, "rb") as stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                if not (member.isfile() and member.name.endswith(".safetensors")):
                    continue
                key, name = member.name[: -len(".safetensors")], f"{url}:{member.name}"
                data = tar.extractfile(member).read()
                yield LatentInput(first_order + position, key, name, _shard_reader(key, data, name))
                position += 1
    except (OSError, tarfile.TarError, ValueError) as err:
        yield InputFailure(first_order + position, f"{Path(url).name}#{position}", url, f"cannot read the shard: {err}")


def _shard_reader(key: str, data: bytes, name: str) -> Callable[[], list[tuple[str, TokenFile]]]:
    return lambda: [(key, tokens_from_bytes(data, name))]


def _tensor_files(source: str) -> list[Path]:
    path = Path(source)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataSourceError(
            f"data.dir {source} is neither a folder, a tensor file, nor tar shards (an encode.py output, *.tar)"
        )
    files = sorted(p for p in path.rglob("*") if p.suffix in TENSOR_SUFFIXES and p.is_file())
    if not files:
        raise DataSourceError(f"{source} holds no latents: no part-*.tar shards and no {', '.join(TENSOR_SUFFIXES)}")
    return files


def _file_entry(order: int, path: Path, root: Path, raw: RawTensors) -> LatentInput:
    relative = path.relative_to(root) if root.is_dir() else Path(path.name)
    key = str(relative.with_suffix("")).replace("\\", "/")
    return LatentInput(order, key, str(path), lambda: _file_tokens(path, key, raw))


def _file_tokens(path: Path, key: str, raw: RawTensors) -> list[tuple[str, Any]]:
    """A file's tokens: a token file as it is, or a raw tensor (read by [`raw_tokens`][] once the tokenizer is
    known: returned as the tensor)."""
    if path.suffix == ".safetensors":
        data = path.read_bytes()
        if _safetensors_format(data, path) == TOKEN_FORMAT:
            return [(key, tokens_from_bytes(data, str(path)))]
        from safetensors.torch import load

        return [(key, _pick(load(data), raw.key, path))]
    if path.suffix == ".npy":
        import numpy as np

        try:
            return [(key, torch.from_numpy(np.load(path, allow_pickle=False)))]
        except ValueError as err:
            raise TokenFileError(f"{path} is not a plain .npy array: {err}") from None
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many types (pickle, zip, weights_only refusals)
        raise TokenFileError(f"{path} cannot be read as tensors (torch.load, weights_only): {err}") from None
    return [(key, loaded if isinstance(loaded, Tensor) else _pick(loaded, raw.key, path))]


def _safetensors_format(data: bytes, path: Path) -> Optional[str]:
    try:
        size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + size])
    except ValueError as err:
        raise TokenFileError(f"{path} is not a readable safetensors file: {err}") from None
    return (header.get("__metadata__") or {}).get("format")


def _pick(tensors: Any, key: Optional[str], path: Path) -> Tensor:
    """The tensor of a file of several: ``key``, else one of [`TENSOR_KEYS`][], else the only one."""
    if not isinstance(tensors, dict) or not all(isinstance(v, Tensor) for v in tensors.values()):
        raise TokenFileError(f"{path} holds {type(tensors).__name__}, expected a tensor or a mapping of tensors")
    if key is not None:
        if key not in tensors:
            raise TokenFileError(f"{path} has no tensor {key!r} (data.key); it has {sorted(tensors)}")
        return tensors[key]
    for name in TENSOR_KEYS:
        if name in tensors:
            return tensors[name]
    if len(tensors) == 1:
        return next(iter(tensors.values()))
    raise TokenFileError(f"{path} holds tensors {sorted(tensors)}: name the one to decode with data.key=...")


def raw_tokens(
    tensor: Tensor, key: str, name: str, config: TokenizerConfig, raw: RawTensors
) -> list[tuple[str, TokenFile]]:
    """A raw tensor a generator wrote -> token files for ``config``: latents ``(C, t, h, w)`` or ``(B, C, t, h, w)``,
    indices ``(t, h, w)`` or ``(B, t, h, w)``; a batch of B > 1 gives keys ``key/000``, ``key/001``, ..."""
    kind = raw.kind
    if kind == "auto":
        kind = "latents" if tensor.is_floating_point() else "indices"
    if kind == "latents" and not tensor.is_floating_point():
        raise TokenFileError(f"{name}: latents must be floating point, found {tensor.dtype}")
    if kind == "indices" and (tensor.is_floating_point() or tensor.is_complex()):
        raise TokenFileError(f"{name}: FSQ indices must be integers, found {tensor.dtype}")
    if kind == "latents" and config.is_discrete:
        raise TokenFileError(f"{name}: float latents, but {config.label} is an FSQ model (it decodes integer indices)")
    if kind == "indices" and not config.is_discrete:
        raise TokenFileError(f"{name}: integer indices, but {config.label} is a KL model (it decodes float latents)")
    dims = 5 if kind == "latents" else 4
    layout = "(C, t, h, w) or (B, C, t, h, w)" if kind == "latents" else "(t, h, w) or (B, t, h, w)"
    if tensor.ndim == dims - 1:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != dims or min(tensor.shape) < 1:
        raise TokenFileError(f"{name}: expected {kind} {layout}, found shape {tuple(tensor.shape)}")
    if kind == "latents" and tensor.shape[1] != config.latent_channels:
        raise TokenFileError(
            f"{name}: latents of {tensor.shape[1]} channels (shape {tuple(tensor.shape)}); {config.label} has "
            f"{config.latent_channels}"
        )
    if kind == "indices":
        low, high = int(tensor.min()), int(tensor.max())
        if low < 0 or high >= config.codebook_size:
            raise TokenFileError(
                f"{name}: indices from {low} to {high}; {config.label} has codes 0..{config.codebook_size - 1}"
            )
        tensor = tensor.long()
    t, (h, w), fs = tensor.shape[dims - 3], tensor.shape[-2:], config.spatial_factor
    clip = None if config.causal else raw.clip_frames
    if clip is not None and (clip % config.temporal_factor or t * config.temporal_factor % clip):
        clip = None  # a tensor shorter than, or not made of, whole clips: one clip
    frames = config.decoded_frames(t)
    out = []
    for i, sample in enumerate(tensor.split(1)):
        sample_key = key if tensor.shape[0] == 1 else f"{key}/{i:03d}"
        tokens = TokenFile(kind, sample.float() if kind == "latents" else sample, config, raw.fps, frames, h * fs,
                           w * fs, clip, {"path": name})  # fmt: skip
        out.append((sample_key, tokens))
    return out
