"""What a finished training run prints last: where it is, what it reached, and the next two commands.

[`run_ending`][] builds that text from plain values (no training needed to test it); [`vidtok.training.train`][]
prints it on the main process. The commands are printed so that they paste as they are from the folder the run
started in: paths inside that folder relative to it, others absolute, quoted for the shell (and for Hydra).
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from ..data.config import DataConfig
    from ..data.dataset import VideoClipDataset
    from .config import RunConfig

#: the file of a training checkpoint that ``vidtok reconstruct --ckpt`` and ``evaluate ckpt=`` load
TOKENIZER_FILE = "tokenizer.safetensors"
_HYDRA_PLAIN = re.compile(r"[\w./+@%:-]+")  # a Hydra override value that needs no quotes


def run_ending(
    run: RunConfig,
    *,
    run_dir: str | os.PathLike,
    step: int,
    validation: Mapping[str, float],
    checkpoint: Optional[Path],
    video: Optional[str],
    cwd: Optional[str | os.PathLike] = None,
) -> str:
    """The closing lines of a run that reached ``step``: its folder, the ``val/...`` (and ``val_ema/...``) metrics
    of its last ``validation`` ({} if none ran), its last ``checkpoint`` (None if none was saved) and the commands
    that reconstruct ``video`` (a file of the run's data, None if it has none) and evaluate the checkpoint on the
    run's validation data, with paths as they paste from ``cwd`` (default: the current folder)."""
    cwd = Path(os.path.abspath(cwd or os.getcwd()))
    lines = [
        f"Training finished at step {step}.",
        f"  run folder:      {shown_path(run_dir, cwd)}",
        f"  validation:      {_validation_summary(run, validation)}",
    ]
    if checkpoint is None:
        lines.append("  last checkpoint: none was saved, so there is nothing to reconstruct or evaluate yet")
        return "\n".join(lines)
    weights = Path(checkpoint) / TOKENIZER_FILE
    lines.append(f"  last checkpoint: {shown_path(checkpoint, cwd)}")
    lines += _reconstruct_lines(run, weights, video, cwd)
    lines += _evaluate_lines(run, weights, cwd)
    return "\n".join(lines)


def example_video(*datasets: Optional[VideoClipDataset]) -> Optional[str]:
    """The first video file listed by the first of ``datasets`` read from files (None for shards or no data)."""
    for dataset in datasets:
        for record in (dataset.videos or []) if dataset is not None else []:
            if isinstance(record.source, str):
                return record.source
    return None


def shown_path(path: str | os.PathLike, cwd: Path) -> str:
    """``path`` relative to ``cwd`` when it lies inside it, else absolute (symbolic links kept as written)."""
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(cwd).as_posix() or "."
    except ValueError:
        return absolute.as_posix()


def _validation_summary(run: RunConfig, validation: Mapping[str, float]) -> str:
    if run.val_data is None:
        return "none (no val_data.path)"
    if not validation:
        return "did not run in this session"
    summary = _metrics_text(validation, "val")
    if "val_ema/psnr" in validation:
        summary += f"; EMA weights: {_metrics_text(validation, 'val_ema')}"
    return summary


def _metrics_text(validation: Mapping[str, float], prefix: str) -> str:
    text = f"PSNR {validation[f'{prefix}/psnr']:.2f} dB, SSIM {validation[f'{prefix}/ssim']:.4f}"
    if f"{prefix}/lpips" in validation:
        text += f", LPIPS {validation[f'{prefix}/lpips']:.4f}"
    return text


def _frame_size(run: RunConfig, data: DataConfig) -> tuple[int, int]:
    """The frame size ``data`` (the run's validation or training data) was read at."""
    return (data.height or run.resolution[0], data.width or run.resolution[1])


def _reconstruct_lines(run: RunConfig, weights: Path, video: Optional[str], cwd: Path) -> list[str]:
    ckpt = shlex.quote(shown_path(weights, cwd))
    if video is None:
        return [
            "Next: the run's data are shards, with no single video file to suggest; reconstruct one of yours with",
            f"  vidtok reconstruct --ckpt {ckpt} <video> out.mp4 --side-by-side",
        ]
    data = run.val_data or run.data
    height, width = _frame_size(run, data)
    words = ["vidtok", "reconstruct", "--ckpt", ckpt, shlex.quote(shown_path(video, cwd)), "out.mp4", "--side-by-side"]
    words += ["--height", str(height), "--width", str(width)]
    if data.sample_fps is not None:
        words += ["--fps", f"{data.sample_fps:g}"]
    return ["Next, reconstruct a clip with it (out.mp4: input | reconstruction):", "  " + " ".join(words)]


def _evaluate_lines(run: RunConfig, weights: Path, cwd: Path) -> list[str]:
    if run.val_data is None:
        return ["No validation data to evaluate it on: give python -m vidtok.evaluate data.dir=<videos> to do so."]
    data = run.val_data
    height, width = _frame_size(run, data)
    values = {"ckpt": shown_path(weights, cwd), **_eval_data(data, cwd)}
    values.update(height=str(height), width=str(width))
    values["sample_fps"] = "null" if data.sample_fps is None else f"{data.sample_fps:g}"
    values["clip_frames"] = str(data.num_frames)
    if not run.validation.lpips:
        values["metrics.lpips"] = "false"  # as the run validated: without LPIPS, whose VGG16 weights may be absent
    elif run.loss.vgg_path:
        values["metrics.vgg_path"] = shown_path(run.loss.vgg_path, cwd)
    overrides = " ".join(shlex.quote(f"{key}={_hydra_value(value)}") for key, value in values.items())
    return [
        "and evaluate it on the validation data, read as the run read it:",
        f"  python -m vidtok.evaluate {overrides}",
    ]


def _eval_data(data: DataConfig, cwd: Path) -> dict[str, str]:
    """``evaluate``'s ``data.*`` overrides for the videos the run's ``data`` config reads."""
    local = not str(data.path).startswith("pipe:") and "::" not in str(data.path)  # else a command or a url list
    path = shown_path(data.path, cwd) if local else str(data.path)
    values = {"data.dir": path}
    if data.source == "csv" and data.data_dir:  # paths in the CSV relative to data_dir: evaluate's meta layout
        values = {"data.dir": shown_path(data.data_dir, cwd), "data.meta": path}
    if data.source != "folder":
        values["data.source"] = data.source
    if data.source == "csv" and data.column != "videos":
        values["data.column"] = data.column
    return values


def _hydra_value(value: str) -> str:
    """``value`` as a Hydra override value: as it is when plain, else single-quoted."""
    if _HYDRA_PLAIN.fullmatch(value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
