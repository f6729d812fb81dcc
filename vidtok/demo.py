"""The built-in demo dataset: a few short real video clips installed with vidtok.

``vidtok/assets/demo/train/`` holds 12 training clips and ``vidtok/assets/demo/val/`` 4 validation clips
(Big Buck Bunny, CC BY 3.0 Blender Foundation, and a CC0 city time-lapse; credits in
``vidtok/assets/demo/ATTRIBUTION.md``). They are H.264 at their source frame rate (24 or 25 fps),
short side 128 pixels. Training clips are 156 frames (6.5 s), enough for 17-frame clips at
``sample_fps`` 3 or more; validation clips are 100 frames (4 s), enough at ``sample_fps`` 4 or more.

Use a split's folder as a ``folder`` data source::

    from vidtok.data.config import DataConfig
    from vidtok.demo import demo_dir

    DataConfig(source="folder", path=str(demo_dir("train")), num_frames=17, sample_fps=3)
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["SPLITS", "demo_dir", "demo_root"]

SPLITS = ("train", "val")


def demo_root() -> Path:
    """The installed ``vidtok/assets/demo`` folder (clips in ``train/`` and ``val/``, credits in ATTRIBUTION.md)."""
    root = resources.files("vidtok") / "assets" / "demo"
    return root if isinstance(root, Path) else Path(str(root))


def demo_dir(split: str = "train") -> Path:
    """The folder of the demo's ``split`` clips (``"train"`` or ``"val"``), as installed with vidtok.

    Raises ValueError for another split and FileNotFoundError when the folder or its clips are missing
    (an install that left out the package data).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown demo split {split!r}; choose one of {', '.join(SPLITS)}")
    folder = demo_root() / split
    if not folder.is_dir() or not any(folder.glob("*.mp4")):
        raise FileNotFoundError(
            f"the demo clips ({folder}/*.mp4) are missing: this vidtok install lacks its package data; "
            "reinstall vidtok (pip install --force-reinstall vidtok, or pip install -e . in a checkout)"
        )
    return folder
