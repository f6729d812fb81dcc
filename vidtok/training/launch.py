"""Multi-node launches: the ``accelerate launch`` command each node of a SLURM job runs.

With ``launch.accelerate=true`` (set by ``sweeps/slurm.yaml``), a Hydra job that the submitit
launcher starts on a SLURM allocation (one task per node) does not train itself: it starts
``accelerate launch`` on its node with that node's rank, the job's node count and GPUs, and the
first node as rendezvous, passing on the job's own overrides. Every node does the same, so the
processes of all nodes form one run in the job's output directory.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional

#: What each node launches: the training app of the installed package (``python -m vidtok.train``), the same app
#: as the checkout's ``train.py``, so that nodes need no copy of the repository.
TRAIN_MODULE = "vidtok.train"


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: ``gpu[003-005,9],cpu1`` -> ``gpu003``."""
    match = re.match(r"([^,\[]+)(\[([^\]]+)\])?", nodelist.strip())
    if not match:
        raise ValueError(f"cannot read the SLURM node list {nodelist!r}")
    prefix, ranges = match.group(1), match.group(3)
    if not ranges:
        return prefix
    return prefix + ranges.split(",")[0].split("-")[0]


def gpus_on_node(env: Mapping[str, str]) -> int:
    """GPUs SLURM gave this node (``SLURM_GPUS_ON_NODE``, ``SLURM_GPUS_PER_NODE`` such as ``a100:4``)."""
    for key in ("SLURM_GPUS_ON_NODE", "SLURM_GPUS_PER_NODE"):
        value = env.get(key)
        if value:
            return int(value.split(":")[-1].split("(")[0])
    raise ValueError("SLURM_GPUS_ON_NODE / SLURM_GPUS_PER_NODE is not set: request GPUs (--gpus-per-node)")


def accelerate_command(
    overrides: Sequence[str],
    *,
    num_machines: int,
    machine_rank: int,
    processes_per_machine: int,
    main_ip: str,
    main_port: int = 29500,
    config_dir: Optional[str] = None,
    config_name: Optional[str] = None,
    python: str = sys.executable,
) -> list[str]:
    """The ``accelerate launch`` command line of one node of a multi-node run."""
    cmd = [python, "-m", "accelerate.commands.launch", "--multi_gpu"]
    cmd += ["--num_machines", str(num_machines), "--machine_rank", str(machine_rank)]
    cmd += ["--num_processes", str(num_machines * processes_per_machine)]
    cmd += ["--main_process_ip", main_ip, "--main_process_port", str(main_port), "-m", TRAIN_MODULE]
    if config_dir:
        cmd += ["--config-dir", str(config_dir)]
    if config_name:
        cmd += ["--config-name", config_name]
    return cmd + list(overrides)


def slurm_accelerate_command(
    overrides: Sequence[str],
    run_dir: str | os.PathLike,
    env: Mapping[str, str] = os.environ,
    **kwargs,
) -> list[str]:
    """[`accelerate_command`][] for this node of the current SLURM job; the job's overrides plus
    ``launch.accelerate=false`` (the started processes train) and its run directory."""
    nodes = int(env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES") or 1)
    port = 20000 + int(env.get("SLURM_JOB_ID", "0")) % 20000  # the same on every node of the job
    passed = [o for o in overrides if not o.startswith(("launch.accelerate=", "run_dir=", "hydra."))]
    passed += ["launch.accelerate=false", f"run_dir={Path(run_dir)}", f"hydra.run.dir={Path(run_dir)}"]
    return accelerate_command(
        passed,
        num_machines=nodes,
        machine_rank=int(env.get("SLURM_NODEID", "0")),
        processes_per_machine=gpus_on_node(env),
        main_ip=first_host(env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or "localhost"),
        main_port=port,
        **kwargs,
    )
