"""Collectives between processes: where this one stands ([`process_part`][], [`is_distributed`][],
[`gather_objects`][], used by data, losses, metrics and the jobs) and keeping training's processes in step without
DistributedDataParallel ([`broadcast_parameters`][], [`sync_gradients`][] (bucketed all-reduce),
[`parameters_in_sync`][], [`any_process`][]). Setting processes up is [`vidtok.accelerator`][]."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

GRAD_BUCKET_ELEMENTS = 1 << 23  # 32 MB of float32 per all-reduce


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


def gather_objects(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` without torch.distributed)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


def broadcast_parameters(tensors: Iterable[Tensor], world: int) -> None:
    """Copy rank 0's values of ``tensors`` (parameters) to every process; nothing to do with one process."""
    if world > 1:
        for tensor in list(tensors):
            torch.distributed.broadcast(tensor.data, src=0)


def sync_gradients(params: Sequence[nn.Parameter], world: int) -> None:
    """Average the gradients of ``params`` across the ``world`` processes, all-reduced in buckets of at most
    about [`GRAD_BUCKET_ELEMENTS`][] elements. A parameter without a gradient gets zeros first: every process
    must send the same buckets, even for parameters it did not use."""
    if world == 1:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    bucket: list[Tensor] = []
    size = 0
    for grad in grads + [None]:
        if grad is not None:
            bucket.append(grad)
            size += grad.numel()
        if bucket and (grad is None or size >= GRAD_BUCKET_ELEMENTS):
            flat = torch.cat([g.reshape(-1) for g in bucket])
            torch.distributed.all_reduce(flat)
            flat /= world
            offset = 0
            for g in bucket:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()
            bucket, size = [], 0


def parameters_in_sync(params: Iterable[Tensor], world: int) -> bool:
    """True if every process holds the same values of ``params`` (compared through per-tensor float64 sums)."""
    if world == 1:
        return True
    with torch.no_grad():
        mine = torch.stack([p.detach().double().sum() for p in params])
    gathered = [torch.empty_like(mine) for _ in range(world)]
    torch.distributed.all_gather(gathered, mine)
    return all(torch.equal(g, gathered[0]) for g in gathered)


def any_process(flag: bool, world: int, device: torch.device) -> bool:
    """True if ``flag`` is true on any of the ``world`` processes (``device``: where the collective runs)."""
    if world == 1:
        return flag
    value = torch.tensor([float(flag)], device=device)
    torch.distributed.all_reduce(value)
    return bool(value.item() > 0)
