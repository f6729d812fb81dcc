"""Typed config of a video dataset (the ``data`` group in ``conf/data/``) and the objects it builds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from torch.utils.data import DataLoader

from ..config_loader import build_config
from ..errors import ConfigError
from .dataset import VideoClipDataset, collate_clips
from .sources import SOURCE_KINDS, video_records


@dataclass
class DataConfig:
    """Where the videos are and how clips are cut from them.

    ``source``: ``folder`` (``path`` searched recursively), ``csv`` (the original layout: ``path`` is
    the CSV, its ``column`` holds paths relative to ``data_dir``, default the CSV's folder) or
    ``shards`` (``path`` is a tar pattern such as ``data/train-{000000..000099}.tar`` or ``pipe:...``).
    ``height``/``width`` default to the training stage's resolution where one applies.
    """

    source: str = "folder"
    path: Optional[str] = None
    data_dir: Optional[str] = None
    column: str = "videos"
    num_frames: int = 17
    sample_fps: Optional[float] = 3.0
    height: Optional[int] = None
    width: Optional[int] = None
    clips: str = "first"
    short: str = "skip"
    flip: bool = False
    shuffle_buffer: int = 64
    resampled: bool = True
    batch_size: int = 2
    num_workers: int = 4
    seed: int = 0

    def validate(self) -> DataConfig:
        if self.source not in SOURCE_KINDS:
            raise ConfigError(f"data.source must be one of {', '.join(SOURCE_KINDS)}, got {self.source!r}")
        if not self.path:
            raise ConfigError(f"data.path must name the {self.source} to read (data.path=...)")
        for name in ("num_frames", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"data.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0, got {self.num_workers}")
        if self.sample_fps is not None and self.sample_fps <= 0:
            raise ConfigError(f"data.sample_fps must be positive or null (every frame), got {self.sample_fps}")
        for name in ("height", "width"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"data.{name} must be positive, got {value}")
        if self.clips not in ("first", "all"):
            raise ConfigError(f"data.clips must be 'first' or 'all', got {self.clips!r}")
        if self.short not in ("skip", "pad"):
            raise ConfigError(f"data.short must be 'skip' or 'pad', got {self.short!r}")
        return self

    @classmethod
    def from_any(cls, data: Any) -> DataConfig:
        """From a DataConfig, a dict or an OmegaConf node; unknown keys are refused by name."""
        return build_config(cls, data, "data")


def build_dataset(
    config: DataConfig,
    *,
    train: bool,
    size: Optional[tuple[int, int]] = None,
    rank: Optional[int] = None,
    world_size: Optional[int] = None,
) -> VideoClipDataset:
    """The dataset a config describes; ``size`` fills in height/width left unset in the config."""
    config = DataConfig.from_any(config)
    height = config.height or (size[0] if size else None)
    width = config.width or (size[1] if size else None)
    if not height or not width:
        raise ConfigError("data.height and data.width are unset and no stage resolution gives them")
    if config.source == "shards":
        sources: dict = {"shards": config.path}
    else:
        records = video_records(config.path, kind=config.source, data_dir=config.data_dir, column=config.column)
        sources = {"videos": records}
    return VideoClipDataset(
        **sources,
        num_frames=config.num_frames,
        size=(height, width),
        sample_fps=config.sample_fps,
        train=train,
        clips=config.clips,
        short=config.short,
        flip=config.flip and train,
        shuffle_buffer=config.shuffle_buffer,
        resampled=config.resampled,
        seed=config.seed,
        rank=rank,
        world_size=world_size,
    )


def build_loader(config: DataConfig, dataset: VideoClipDataset, **kwargs: Any) -> DataLoader:
    """A DataLoader over ``dataset`` with the config's batch size and workers, batches from [`collate_clips`][].

    Do not pass it through ``accelerator.prepare``: the dataset splits itself across ranks already.
    """
    config = DataConfig.from_any(config)
    options = dict(
        batch_size=config.batch_size,
        num_workers=config.num_workers,
        collate_fn=collate_clips,
        persistent_workers=config.num_workers > 0,
        prefetch_factor=2 if config.num_workers > 0 else None,
    )
    options.update(kwargs)
    return DataLoader(dataset, **options)
