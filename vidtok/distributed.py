"""Processes: where this one stands (:func:`process_part`, :func:`is_distributed`, used by data, losses and metrics)
and the Accelerate set-up shared by training and evaluation (one Accelerator per process, on CPU over gloo where
there is no CUDA)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Optional

import torch


def process_part() -> tuple[int, int]:
    """(rank, world size): from ``torch.distributed`` when it is initialised, else from the ``RANK`` /
    ``WORLD_SIZE`` that launchers set (DataLoader workers and not-yet-initialised processes see those)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def is_distributed() -> bool:
    """True when torch.distributed runs with more than one process (collectives are needed)."""
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class LaunchError(RuntimeError):
    """The processes were launched in a way Accelerate did not set up as asked."""


def reset_accelerate_state() -> None:
    """Forget Accelerate's process-wide state, so that the next Accelerator is set up afresh."""
    from accelerate.state import AcceleratorState, PartialState

    AcceleratorState._reset_state(True)
    PartialState._reset_state()


def make_accelerator(**kwargs: Any):
    """An Accelerator; on a machine without CUDA, several launched processes run on CPU over gloo."""
    from accelerate import Accelerator
    from accelerate.state import PartialState

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if PartialState._shared_state and PartialState().num_processes != world:
        # state left by an earlier run in this (or a forked parent) process, set up for another world size
        reset_accelerate_state()
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), **kwargs)
    if world > 1 and accelerator.num_processes != world:
        raise LaunchError(
            f"launched with WORLD_SIZE={world} but Accelerate set up {accelerator.num_processes} process(es); "
            "on CPU launch with ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes N"
        )
    return accelerator


def hydra_output_dir() -> Optional[Path]:
    """The output directory of the running Hydra app (None outside one)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except Exception:  # not running under a Hydra app
        return None


def drop_stray_hydra_dir(hydra_dir: Optional[Path], used_dir: Path) -> None:
    """Remove the directory Hydra made on a non-zero rank whose timestamp differs from rank 0's (the one all
    ranks used), when it holds nothing but Hydra's own files."""
    if int(os.environ.get("RANK", "0")) == 0 or hydra_dir is None or not hydra_dir.exists():
        return
    if hydra_dir.resolve() == used_dir.resolve():
        return
    if all(p.name == ".hydra" or p.suffix == ".log" for p in hydra_dir.iterdir()):
        shutil.rmtree(hydra_dir, ignore_errors=True)
