"""Decode many latents into videos: [`decode_dataset`][] is what ``decode.py`` runs, from Python or under
``accelerate launch`` (each process takes every n-th file, or every n-th shard).

Each sample becomes ``output.dir/<key>.mp4``, written under a temporary name and renamed, so a run killed at any
moment and started again decodes only what has no video yet: every video is written once. Entries are read in a
background thread one step ahead of the model; causal models decode in a stream of ``chunk_latents`` latent frames
(memory bounded whatever the length), non-causal ones clip by clip.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Optional, Union

from tqdm.auto import tqdm

from ..composition import official_names
from ..config import TokenizerConfig
from ..data.latent_stats import LatentStats
from ..data.videos import prefetch
from ..distributed import gather_objects
from ..errors import ConfigError, DataSourceError, InputError, TokenFileError
from ..inference.identity import tokenizer_identity
from ..inference.job import claim_output
from ..inference.pipeline import decode_video
from ..io.files import read_json, write_atomic
from ..io.token_files import TokenFile
from .config import DecodeConfig
from .inputs import InputFailure, LatentInput, RawTensors, check_inputs, list_inputs, raw_tokens

log = logging.getLogger("vidtok.decode")

#: What makes one entry a failure (listed with its reason) rather than the run's end.
ENTRY_ERRORS = (TokenFileError, InputError, DataSourceError, OSError, ValueError)


@dataclass
class DecodeResult:
    """What a run did (on every process: the totals over all processes): ``videos`` written by this run,
    ``skipped_done`` samples whose video an earlier run wrote, ``failed`` every entry that gave no video (with the
    reason), ``frames`` written, ``seconds`` of the decoding loop (the slowest process)."""

    output_dir: Path
    videos: int
    skipped_done: int
    failed: list[dict]
    frames: int
    seconds: float
    identity: dict = field(default_factory=dict)


@dataclass
class _Tally:
    videos: int = 0
    frames: int = 0
    skipped: int = 0
    failed: list[dict] = field(default_factory=list)

    def fail(self, order: int, key: str, name: str, reason: str) -> None:
        log.warning("skipping %s: %s", name, reason)
        self.failed.append({"order": order, "key": key, "name": name, "reason": reason})


def decode_dataset(config: Union[DecodeConfig, dict, Any], *, accelerator: Any = None, tokenizer: Any = None):
    """Decode every entry of ``config.data`` into an mp4 (``config``: a [`DecodeConfig`][vidtok.decoding.DecodeConfig],
    a dict or an OmegaConf node). ``tokenizer``: an already loaded tokenizer instead of loading one. Raises
    ConfigError / CheckpointError / DataSourceError before any entry is decoded; an entry that cannot be read or
    does not fit the tokenizer is skipped and listed in ``failed.jsonl``. Returns a [`DecodeResult`][]."""
    cfg = DecodeConfig.from_any(config)
    check_inputs(cfg.data.dir)
    acc, device = cfg.processes(accelerator)
    if tokenizer is None and not cfg.names_tokenizer():
        _name_tokenizer_from_inputs(cfg)
    tok = tokenizer.to(device).eval() if tokenizer is not None else cfg.load_tokenizer(device, "decode with")
    options, raw = cfg.inference_options(tok.config), cfg.raw_tensors(tok.config)
    stats = _stats(cfg, tok.config)
    identity = tokenizer_identity(tok, cfg.ckpt, from_file=tokenizer is None)
    out_dir = Path(cfg.output.dir)
    if acc.is_main_process:
        _claim(out_dir, cfg, identity)
    acc.wait_for_everyone()
    listing = list_inputs(cfg.data.dir, raw, acc.process_index, acc.num_processes, cfg.data.limit)
    start = time.perf_counter()
    tally = _decode_entries(listing, tok, cfg, options, stats, raw, out_dir, acc.process_index)
    seconds = time.perf_counter() - start
    return _summary(acc, out_dir, tally, seconds, identity)


def _name_tokenizer_from_inputs(cfg: DecodeConfig) -> None:
    """No ``ckpt`` / ``tokenizer`` given: take the checkpoint an ``encode.py`` output names (if the file is still
    there), else the official name the first token file carries (its published weights)."""
    run = Path(cfg.data.dir) / "run.json"
    if run.is_file():
        identity = read_json(run, DataSourceError, "encode.py job record", "give ckpt=... or tokenizer=...")
        ckpt = (identity.get("identity") or {}).get("ckpt")
        if ckpt and Path(ckpt).is_file():
            cfg.ckpt = ckpt
            return
    first = next((e for e in list_inputs(cfg.data.dir, RawTensors(), limit=1) if isinstance(e, LatentInput)), None)
    name = None
    if first is not None:
        try:
            tokens = first.read()[0][1]
        except ENTRY_ERRORS:
            tokens = None
        name = tokens.tokenizer.name if isinstance(tokens, TokenFile) else None
    if name in official_names():
        cfg.tokenizer = name
        return
    found = f"their tokenizer {name!r} is no official name" if name else "they name no tokenizer (raw tensors)"
    raise ConfigError(
        f"which weights decode {cfg.data.dir}? {found}: give ckpt=<weights> (and tokenizer=<name or config> for "
        "raw tensors)"
    )


def _stats(cfg: DecodeConfig, config: TokenizerConfig) -> Optional[LatentStats]:
    if cfg.stats is None:
        return None
    if config.is_discrete:
        raise ConfigError(f"stats undo the normalization of KL latents; {config.label} decodes FSQ indices")
    stats = LatentStats.load(cfg.stats)
    if len(stats.mean) != config.latent_channels:
        raise ConfigError(
            f"{cfg.stats} holds statistics of {len(stats.mean)} channels; {config.label} has {config.latent_channels}"
        )
    return stats


def _claim(out_dir: Path, cfg: DecodeConfig, identity: dict) -> None:
    """Main process: claim ``out_dir`` for this job; remove the temporary files a killed run left."""
    claim_output(out_dir, identity, cfg.job_keys(), "videos")
    for leftover in out_dir.rglob(".*.mp4"):  # VideoWriter's temporary names: a killed run's unfinished video
        leftover.unlink(missing_ok=True)
        log.info("removed %s (left unfinished by an interrupted run)", leftover)


def _read_entries(
    listing: Iterator, out_dir: Path, config: TokenizerConfig, raw: RawTensors
) -> Iterator[tuple[Any, Union[None, str, list]]]:
    """Each entry with what it gives: its samples ``[(key, TokenFile)]``, the reason it gives none, or None when
    its video exists already (then it is not read)."""
    for entry in listing:
        yield entry, _entry_samples(entry, out_dir, config, raw)


def _entry_samples(entry: Any, out_dir: Path, config: TokenizerConfig, raw: RawTensors) -> Union[None, str, list]:
    if isinstance(entry, InputFailure):
        return entry.reason
    try:
        if _video_path(out_dir, entry.key).is_file():
            return None
        samples = []
        for key, got in entry.read():
            samples += [(key, got)] if isinstance(got, TokenFile) else raw_tokens(got, key, entry.name, config, raw)
        return samples
    except ENTRY_ERRORS as err:
        return str(err)


def _video_path(out_dir: Path, key: str) -> Path:
    """``out_dir/<key>.mp4``; a key that would leave ``out_dir`` (absolute, ``..``) is refused."""
    parts = PurePosixPath(key).parts
    if not parts or PurePosixPath(key).is_absolute() or any(p in ("..", "") for p in parts):
        raise InputError(f"key {key!r} is not a relative path inside output.dir")
    return out_dir.joinpath(*parts).with_name(parts[-1] + ".mp4")


def _decode_entries(
    listing: Iterator,
    tok: Any,
    cfg: DecodeConfig,
    options: Any,
    stats: Optional[LatentStats],
    raw: RawTensors,
    out_dir: Path,
    rank: int,
) -> _Tally:
    tally = _Tally()
    autocast = cfg.autocast(tok.device)
    bar = tqdm(desc="decode", unit="video", disable=not cfg.output.progress, position=rank)
    reader = prefetch(_read_entries(listing, out_dir, tok.config, raw), depth=2)
    try:
        for entry, got in reader:
            bar.update(1)
            if got is None:
                tally.skipped += 1
            elif isinstance(got, str):
                tally.fail(entry.order, entry.key, entry.name, got)
            else:
                for key, tokens in got:
                    _decode_one(entry, key, tokens, tok, cfg, options, stats, out_dir, autocast, tally)
    finally:
        bar.close()
        reader.close()
    return tally


def _decode_one(entry, key, tokens, tok, cfg, options, stats, out_dir, autocast, tally: _Tally) -> None:
    """One sample into its video (or its failure); a video already there is left as it is."""
    try:
        path = _video_path(out_dir, key)
        if path.is_file():
            tally.skipped += 1
            return
        if cfg.fps is not None:
            tokens.fps = cfg.fps
        if stats is not None and tokens.kind == "latents":
            tokens.data = stats.denormalize(tokens.data.float(), per_channel=cfg.normalize == "channel")
        tokens.check_tokenizer(tok.config, entry.name)
        with autocast:
            frames = decode_video(tok, tokens, path, options=options)
    except ENTRY_ERRORS as err:
        tally.fail(entry.order, key, entry.name, str(err))
        return
    tally.videos += 1
    tally.frames += frames


def _summary(acc: Any, out_dir: Path, tally: _Tally, seconds: float, identity: dict) -> DecodeResult:
    """Every process: the totals over all processes, once the main process has written ``failed.jsonl``."""
    parts = gather_objects((tally.videos, tally.frames, tally.skipped, tally.failed, seconds))
    failed = sorted((f for p in parts for f in p[3]), key=lambda f: (f["order"], f["key"]))
    if acc.is_main_process:
        lines = "".join(json.dumps(f) + "\n" for f in failed)
        write_atomic(out_dir / "failed.jsonl", lines.encode())
    acc.wait_for_everyone()
    return DecodeResult(
        output_dir=out_dir,
        videos=sum(p[0] for p in parts),
        skipped_done=sum(p[2] for p in parts),
        failed=failed,
        frames=sum(p[1] for p in parts),
        seconds=max(p[4] for p in parts),
        identity=identity,
    )
