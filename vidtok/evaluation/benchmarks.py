"""Evaluation sets by name (``evaluate.py benchmark=mcl_jcv|davis|tokenbench``): the protocol comes from the Hydra
group ``conf/benchmark/``, and the local copy of the files is checked against the list kept with vidtok
(``vidtok/assets/benchmarks/<name>.json``: each file's name and, where known, its frame count, frame size, byte size
and SHA-256) before anything runs. Every missing or different file is named; nothing is downloaded.

A list entry is a ``video`` (a file of any video extension whose stem is the entry's last part, found anywhere
under ``data.dir``; with folders in the entry, at that place) or ``frames`` (a folder of numbered frames at that
path). ``groups`` count files by name prefix where the set's own tools do not fix the names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Optional

from ..data.sources import VIDEO_EXTENSIONS
from ..errors import ConfigError, DataSourceError, VideoError
from ..io.auxiliary_weights import sha256_of
from ..io.video import frame_folder, read_info


@dataclass
class Benchmark:
    """A named evaluation set's file list (see the module docstring)."""

    name: str
    title: str
    sources: list[str]
    layout: str
    files: list[dict[str, Any]]
    groups: list[dict[str, Any]] = field(default_factory=list)


def benchmark_names() -> list[str]:
    """The sets whose lists vidtok holds."""
    folder = resources.files("vidtok.assets") / "benchmarks"
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def load_benchmark(name: str) -> Benchmark:
    """The list of set ``name`` (ConfigError naming the known ones otherwise)."""
    if name not in benchmark_names():
        raise ConfigError(f"benchmark must be one of {', '.join(benchmark_names())}, got {name!r}")
    text = (resources.files("vidtok.assets") / "benchmarks" / f"{name}.json").read_text()
    return Benchmark(**json.loads(text))


def check_benchmark(bench: Benchmark, data_dir: Optional[str], *, max_named: int = 8) -> list[str]:
    """The set's files under ``data_dir``, as paths relative to it in the list's order (videos and frame folders),
    once every listed file is there and as listed; else DataSourceError naming what is missing or different."""
    name = bench.name
    if not data_dir or not Path(data_dir).is_dir():
        raise DataSourceError(f"benchmark={name}: data.dir must be the folder holding {bench.title} ({bench.layout})")
    root = Path(data_dir)
    videos = _videos_by_stem(root)
    found, problems = [], []
    for entry in bench.files:
        path, problem = _find(entry, root, videos)
        if problem is None:
            problem = _differs(entry, root / path)
        if problem is not None:
            problems.append(f"{entry['path']}: {problem}")
        else:
            found.append(path)
    for group in bench.groups:
        members = sorted(rel for stem, rels in videos.items() if stem.startswith(group["prefix"]) for rel in rels)
        if len(members) != group["count"]:
            problems.append(f"{group['prefix']}*: {len(members)} videos, expected {group['count']} ({group['subset']})")
        found.extend(members)
    if problems:
        shown = "; ".join(problems[:max_named]) + (
            f"; and {len(problems) - max_named} more" if len(problems) > max_named else ""
        )
        raise DataSourceError(
            f"benchmark={name}: {len(problems)} of {len(bench.files) + len(bench.groups)} listed files missing or "
            f"different under {root} ({bench.layout}): {shown}"
        )
    return found


def _videos_by_stem(root: Path) -> dict[str, list[str]]:
    suffixes = {"." + e for e in VIDEO_EXTENSIONS}
    out: dict[str, list[str]] = {}
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in suffixes and p.is_file():
            out.setdefault(p.stem, []).append(p.relative_to(root).as_posix())
    return out


def _find(entry: dict[str, Any], root: Path, videos: dict[str, list[str]]) -> tuple[Optional[str], Optional[str]]:
    """(the entry's path relative to ``root``, None) or (None, what is wrong)."""
    if entry["kind"] == "frames":
        return (entry["path"], None) if (root / entry["path"]).is_dir() else (None, "missing (a folder of frames)")
    want = Path(entry["path"])
    matches = [m for m in videos.get(want.name, []) if want.parent == Path(".") or Path(m).parent == want.parent]
    if not matches:
        return None, "missing"
    if len(matches) > 1:
        return None, f"found {len(matches)} times ({', '.join(matches[:3])}): keep one"
    return matches[0], None


def _differs(entry: dict[str, Any], path: Path) -> Optional[str]:
    """What differs from the list's facts about the file (None: nothing known differs)."""
    try:
        if entry["kind"] == "frames":
            _, _, frames = frame_folder(path)
            width = height = None
        else:
            if entry.get("size") is not None and path.stat().st_size != entry["size"]:
                return f"{path.stat().st_size} bytes, expected {entry['size']}"
            if entry.get("sha256") and sha256_of(path) != entry["sha256"]:
                return "SHA-256 differs from the list's"
            if entry.get("frames") is None and entry.get("width") is None:
                return None
            info = read_info(path, count=True)
            frames, width, height = info.frames, info.width, info.height
    except (VideoError, OSError) as err:
        return f"unreadable ({err})"
    if entry.get("frames") is not None and frames != entry["frames"]:
        return f"{frames} frames, expected {entry['frames']}"
    if entry.get("width") is not None and (width, height) != (entry["width"], entry["height"]):
        return f"{width}x{height}, expected {entry['width']}x{entry['height']}"
    return None
