"""What the jobs share: which tokenizer and weights and how the model runs ([`TokenizerJobConfig`][]: ``evaluate.py``,
``encode.py``, ``decode.py``), and for the jobs over a set of videos (``evaluate.py``, ``encode.py``,
[`VideoJobConfig`][]) which videos and how their frames are read and cut (clips or one causal stream per video).

Each class holds its keys once, with their checks; the jobs' configs add their own keys to them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Optional

import torch

from ..composition import official_names
from ..config import TokenizerConfig
from ..config_loader import build_config
from ..data.videos import Cutting, VideoListConfig
from ..defaults import CHUNK_FRAMES, protocol_clip_frames
from ..errors import ConfigError, InputError
from ..io.files import read_json, write_atomic
from ..models.options import InferenceOptions

MODES = ("clips", "whole")
PRECISIONS = ("full", "bf16", "fp16")
LAST_CLIP = ("repeat", "drop")
#: Keys that Hydra composes from ``tokenizer=NAME`` (or ``model=`` / ``compression=`` / ``regularizer=``).
TOKENIZER_KEYS = ("name", "model", "compression", "regularizer")


@dataclass
class TokenizerJobConfig:
    """The keys every job that runs a tokenizer shares (``evaluate.py``, ``encode.py``, ``decode.py``).

    The tokenizer: ``tokenizer`` (an official name or a config file) or ``tokenizer_config`` (composed by Hydra),
    ``overrides`` (``model.ch=...``), ``ckpt`` (what ``vidtok.load_tokenizer`` takes: a weights file, a
    ``save_pretrained`` or training checkpoint folder, an official name, a Hub repository id; default for official
    names: the published weights). How it runs: ``precision`` (full / bf16 / fp16 autocast), ``device``, ``tile`` /
    ``tile_overlap`` (see [`InferenceOptions`][vidtok.InferenceOptions]), ``threads`` (torch CPU threads per
    process).
    """

    ckpt: Optional[str] = None
    tokenizer: Optional[str] = None
    overrides: list[str] = field(default_factory=list)
    tokenizer_config: Optional[dict] = None
    precision: str = "full"
    device: Optional[str] = None
    tile: Optional[int] = None
    tile_overlap: Optional[int] = None
    threads: Optional[int] = None

    def validate(self):
        """Checks that need no model (ConfigError naming the key)."""
        if self.tokenizer is not None and self.tokenizer_config is not None:
            raise ConfigError("give tokenizer (a name or config file) or tokenizer_config, not both")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1 or null (torch's default), got {self.threads}")
        return self

    def processes(self, accelerator: Any = None) -> tuple[Any, torch.device]:
        """The job's process set-up: torch's CPU threads as ``threads`` says, the accelerator (``accelerator``, else
        one made for this process) and the device this process runs on ([`device_for`][])."""
        from ..accelerator import make_accelerator

        if self.threads:
            torch.set_num_threads(self.threads)
        acc = accelerator or make_accelerator()
        return acc, self.device_for(acc.device)

    def device_for(self, default: torch.device) -> torch.device:
        """``device`` when set, else ``default`` (the process's accelerator device); fp16 refused off CUDA."""
        device = torch.device(self.device) if self.device else default
        if self.precision == "fp16" and device.type != "cuda":
            raise ConfigError(f"precision=fp16 needs a CUDA device; found {device} (use bf16 or full)")
        return device

    def autocast(self, device: torch.device):
        """The autocast context of ``precision`` (a no-op context for ``full``)."""
        from contextlib import nullcontext

        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()

    def composed_tokenizer(self) -> Optional[TokenizerConfig]:
        """The tokenizer config Hydra composed (``tokenizer_config``), if any."""
        return TokenizerConfig.from_any(self.tokenizer_config) if self.tokenizer_config else None

    def check_weights(self, what: str = "run") -> None:
        """Refuse a job that names no weights: no ``ckpt`` and no official name whose published weights to take."""
        composed = self.composed_tokenizer()
        official = composed.name if composed is not None else self.tokenizer
        if not self.ckpt and official not in official_names():
            raise ConfigError(
                f"ckpt must name the checkpoint to {what}, or tokenizer=<official name> its published weights"
            )

    def load_tokenizer(self, device: torch.device, what: str = "run") -> Any:
        """The tokenizer the keys name, on ``device`` in eval mode: ``ckpt`` as ``vidtok.load_tokenizer`` takes it
        (a file, a folder, an official name, a Hub repository id), else the official name's published weights.
        ``ckpt`` is then set to the file the weights were read from (so it is identified like any other)."""
        from ..models.loading import load_tokenizer

        self.check_weights(what)
        composed = self.composed_tokenizer()
        tok = load_tokenizer(self.tokenizer, self.ckpt or None, self.overrides, device=device, config=composed)
        self.ckpt = str(tok.weights_file)
        return tok

    @classmethod
    def from_any(cls, cfg: Any):
        """From an instance, a dict or an OmegaConf node (``hydra`` and ``defaults`` keys ignored); unknown keys
        are refused by name."""
        if isinstance(cfg, cls):
            return cfg.validate()
        if not isinstance(cfg, dict):
            from omegaconf import OmegaConf

            cfg = OmegaConf.to_container(cfg, resolve=True)
        if not isinstance(cfg, dict):
            raise ConfigError(f"a {cls.__name__} must be a mapping, got {cfg!r}")
        values = {k: v for k, v in cfg.items() if k not in ("hydra", "defaults")}
        # Hydra composes tokenizer=NAME (or model=/compression=/regularizer=) into top-level tokenizer keys
        composed = {k: values.pop(k) for k in TOKENIZER_KEYS if k in values and values[k] is not None}
        if composed:
            if values.get("tokenizer_config") is not None:
                raise ConfigError(f"tokenizer_config given twice: as a mapping and as composed keys {sorted(composed)}")
            values["tokenizer_config"] = composed
        if values.get("overrides") is not None:
            values["overrides"] = list(values["overrides"])
        return build_config(cls, values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VideoJobConfig(TokenizerJobConfig):
    """The keys a job over many videos shares: [`TokenizerJobConfig`][]'s and the videos: ``data``
    ([`VideoListConfig`][vidtok.data.VideoListConfig]), read at ``sample_fps`` (null: every frame) and resized to
    cover ``height`` x ``width``, centre-cropped. ``mode``: ``clips`` cuts each video into consecutive clips of
    ``clip_frames`` frames (default 17 causal / 16 non-causal), the last completed with copies of its final frame
    (``last_clip: repeat``) or dropped; ``whole`` runs each complete video as one causal stream of
    ``chunk_frames``-frame chunks. ``batch_size`` clips per model call.
    """

    data: VideoListConfig = field(default_factory=VideoListConfig)
    height: int = 256
    width: int = 256
    sample_fps: Optional[float] = 30.0
    mode: str = "clips"
    chunk_frames: int = CHUNK_FRAMES
    clip_frames: Optional[int] = None
    last_clip: str = "repeat"
    batch_size: int = 4

    def validate(self):
        """Checks that need no model (ConfigError naming the key); [`check_for`][] adds those that do."""
        super().validate()
        self.data.check()
        if self.mode not in MODES:
            raise ConfigError(f"mode must be 'clips' or 'whole', got {self.mode!r}")
        if self.last_clip not in LAST_CLIP:
            raise ConfigError(f"last_clip must be 'repeat' or 'drop', got {self.last_clip!r}")
        for name in ("height", "width", "chunk_frames", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.clip_frames is not None and self.clip_frames < 1:
            raise ConfigError(f"clip_frames must be >= 1 or null (the protocol's default), got {self.clip_frames}")
        if self.sample_fps is not None and self.sample_fps <= 0:
            raise ConfigError(f"sample_fps must be positive or null (every frame), got {self.sample_fps}")
        return self

    def clip_length(self, causal: bool) -> int:
        """Frames per clip in ``clips`` mode: ``clip_frames``, else the protocol's 17 (causal) / 16 (non-causal)."""
        return self.clip_frames if self.clip_frames is not None else protocol_clip_frames(causal)

    def cutting(self, causal: bool) -> Cutting:
        """How each video is cut ([`video_pieces`][vidtok.data.videos.video_pieces]): ``mode``, clips of
        [`clip_length`][] frames, ``batch_size`` per piece, ``chunk_frames``-frame chunks, frames resized on [0, 1]
        floats. The jobs' configs adjust it."""
        return Cutting(
            size=(self.height, self.width),
            sample_fps=self.sample_fps,
            mode=self.mode,
            clip_frames=self.clip_length(causal),
            last=self.last_clip,
            group=self.batch_size,
            chunk_frames=self.chunk_frames,
        )

    def inference_options(self, config: TokenizerConfig) -> InferenceOptions:
        """The options of the tokenizer passes, checked against ``config`` (a ConfigError otherwise): the tiles,
        and in ``whole`` mode the stream's chunks (``chunk_frames`` frames, ``chunk_frames / f`` latents)."""
        options = InferenceOptions(tile=self.tile, tile_overlap=self.tile_overlap)
        if self.mode == "whole" and config.causal:
            options = options.replace(
                chunk_frames=self.chunk_frames, chunk_latents=max(1, self.chunk_frames // config.temporal_factor)
            )
        try:
            return options.checked(config)
        except InputError as err:  # refused before the first video, with the config's words
            raise ConfigError(str(err)) from None

    def check_for(self, config: TokenizerConfig) -> None:
        """Checks against the model the job runs (ConfigError naming the model): its clip rule
        (``config.frame_rule``) and frame sizes (``config.size_rules``), and for ``whole`` mode a causal stream."""
        causal, f, label = config.causal, config.temporal_factor, config.label
        if self.mode == "whole" and not (causal and getattr(config, "streams", True)):
            what = "is non-causal" if not causal else "has no causal stream (a diffusers model)"
            raise ConfigError(
                f"mode=whole streams a whole video through a causal model; {label} {what}: use mode=clips "
                f"(clips of {self.clip_length(False)} frames, as the paper evaluates non-causal models)"
            )
        if self.mode == "whole" and self.chunk_frames % f:
            raise ConfigError(f"chunk_frames must be a multiple of {f} for {label}, got {self.chunk_frames}")
        rule = config.frame_rule
        clip = self.clip_length(rule.first == 1)
        if self.mode == "clips" and not rule.accepts(clip):
            near = " or ".join(str(n) for n in rule.near(clip))
            raise ConfigError(
                f"clip_frames must be {rule.describe()} for {'causal ' if causal else ''}{label}, got {clip}"
                + (f" (clip_frames={near} would do)" if near else "")
            )
        for name, size_rule in zip(("height", "width"), config.size_rules, strict=True):
            if not size_rule.accepts(getattr(self, name)):
                raise ConfigError(f"{name} must be {size_rule.describe()} for {label}, got {getattr(self, name)}")


class JobStart(NamedTuple):
    """What a job over many videos has once it has started: the accelerator, the device, this process's share of
    the videos (a list, or a stream for shards), the tokenizer, its checked options, and whether it came from the
    config's checkpoint (False: passed in from Python)."""

    accelerator: Any
    device: torch.device
    listing: Any
    tokenizer: Any
    options: InferenceOptions
    from_file: bool


def start_job(cfg: VideoJobConfig, what: str, accelerator: Any = None, tokenizer: Any = None) -> JobStart:
    """The common start of ``evaluate`` / ``encode_dataset``: threads, the accelerator and device, the weights named
    (else a ConfigError), the listing (a wrong path fails before the model loads), the tokenizer (loaded, or the
    one given), the model checks and the inference options. Nothing of a video is read."""
    from ..data.videos import list_videos

    acc, device = cfg.processes(accelerator)
    if tokenizer is None:
        cfg.check_weights(what)
    listing = list_videos(cfg.data, acc.process_index, acc.num_processes)
    if cfg.data.resolved_source() != "shards":
        listing = list(listing)
    tok = tokenizer.to(device).eval() if tokenizer is not None else cfg.load_tokenizer(device, what)
    cfg.check_for(tok.config)
    return JobStart(acc, device, listing, tok, cfg.inference_options(tok.config), tokenizer is None)


def claim_output(out_dir: Path, identity: dict, keys: dict, what: str) -> None:
    """Start a job's output folder with its ``run.json`` (the tokenizer that ran: ``identity``, and what decides the
    outputs: its name, config and weights' SHA-256 and the job's ``keys``, compared when a run resumes), or check
    that the folder holds this job's ``what``: a ConfigError names the parts that differ."""
    weights = {k: identity.get(k) for k in ("ckpt_sha256", "weights_sha256") if identity.get(k)}
    record = {"tokenizer": identity["name"], "config": identity["config"], "weights": weights, "keys": keys}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "run.json"
    if path.is_file():
        old = read_json(path, ConfigError, "job record", "use another output.dir or remove it")
        if old.get("job") != record:
            diff = sorted(k for k in record if old.get("job", {}).get(k) != record[k])
            raise ConfigError(
                f"output.dir {out_dir} holds {what} of another job (differs in: {', '.join(diff)}); use another "
                "output.dir, or remove it to start over"
            )
    else:
        write_atomic(path, json.dumps({"job": record, "identity": identity}, indent=1, default=str).encode())
