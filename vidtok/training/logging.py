"""Metric sinks of a training run: TensorBoard, Weights & Biases (online, offline or disabled), or none.

Only the main process creates a sink. Videos are written as mp4 files under ``<run_dir>/samples``
and handed to wandb as files; TensorBoard gets a strip of frames as an image (its own video support
needs moviepy).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor

from .config import LoggerConfig

log = logging.getLogger("vidtok.train")


class RunLogger:
    """Scalars, images and videos to the configured sink; a no-op sink with ``kind: none``."""

    def __init__(self, config: LoggerConfig, run_dir: Path, run_config: Optional[dict] = None):
        self.config = config
        self.run_dir = run_dir
        self._tb = None
        self._wandb = None
        if config.kind == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(run_dir / "tb"))
        elif config.kind == "wandb":
            self._wandb = _start_wandb(config, run_dir, run_config)

    def scalars(self, values: dict[str, float], step: int) -> None:
        finite = {k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}
        if self._tb is not None:
            for key, value in finite.items():
                self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(finite, step=step)

    def video(self, tag: str, path: Path, frames: Tensor, step: int, fps: float) -> None:
        """Log a video written at ``path``; ``frames`` (n, H, W, 3) uint8 are its frames."""
        if self._tb is not None:
            picks = frames[torch.linspace(0, len(frames) - 1, min(8, len(frames))).round().long()]
            strip = torch.cat(list(picks), dim=1)  # frames side by side: (H, n*W, 3)
            self._tb.add_image(tag, strip.numpy(), step, dataformats="HWC")
        if self._wandb is not None:
            import wandb

            self._wandb.log({tag: wandb.Video(str(path), format="mp4")}, step=step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def _start_wandb(config: LoggerConfig, run_dir: Path, run_config: Optional[dict]) -> Any:
    try:
        import wandb
    except ImportError as err:
        raise RuntimeError("logger.kind=wandb needs the wandb package: pip install 'vidtok[wandb]'") from err
    os.environ.setdefault("WANDB_SILENT", "true")
    return wandb.init(
        project=config.wandb_project,
        entity=config.wandb_entity,
        name=config.run_name or run_dir.name,
        dir=str(run_dir),
        mode=config.wandb_mode,
        config=run_config,
        resume="allow",
        id=_wandb_id(run_dir),
    )


def _wandb_id(run_dir: Path) -> str:
    """One wandb run id per run directory, so a resumed run continues the same wandb run."""
    path = run_dir / "wandb_id.txt"
    if path.is_file():
        return path.read_text().strip()
    import uuid

    run_id = uuid.uuid4().hex[:12]
    path.write_text(run_id + "\n")
    return run_id
