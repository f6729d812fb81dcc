"""The Accelerate set-up every job shares: one Accelerator per process (on CPU over gloo where there is no CUDA),
checked against what the launcher asked for, and its end ([`end_processes`][]) so that the next job of a ``-m``
sweep in the same process sets up afresh."""

from __future__ import annotations

import os
import socket
from typing import Any

import torch

from .errors import LaunchError


def free_port() -> int:
    """A TCP port free on this machine now, for a launcher's main process (``--main_process_port``)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reset_accelerate_state() -> None:
    """Forget Accelerate's process-wide state, so that the next Accelerator is set up afresh."""
    from accelerate.state import AcceleratorState, PartialState

    AcceleratorState._reset_state(True)
    PartialState._reset_state()


def end_processes() -> None:
    """End a job's share of the launch: close the process group (a group left open at interpreter exit can abort
    a rank with SIGABRT while gloo tears down) and forget Accelerate's state, so that the next job of a ``-m``
    sweep in this process sets up afresh."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    reset_accelerate_state()


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
