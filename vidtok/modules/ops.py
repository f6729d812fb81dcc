"""Small tensor helpers shared by the layers: memory layout and in-place work during inference.

The network runs in the channels-last layout (``torch.channels_last_3d``): convolutions are faster
and LayerNorm over channels reads contiguous memory. Without autograd (inference) activations,
residual additions and blends are done in place, which saves one full-size tensor per op.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

CHANNELS_LAST = torch.channels_last_3d


def inference() -> bool:
    """True when no graph is being recorded, so tensors may be overwritten in place."""
    return not torch.is_grad_enabled()


def autocast_enabled(device_type: str) -> bool:
    """Whether autocast is on for this device type (False for types without autocast, like meta)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:
        return False


def channels_last(x: Tensor) -> Tensor:
    """``x`` (B, C, T, H, W) in the channels-last layout (a no-op when it already is)."""
    return x.contiguous(memory_format=CHANNELS_LAST)


def empty_like_layout(x: Tensor, shape: tuple[int, ...], dtype: torch.dtype | None = None) -> Tensor:
    """An uninitialised 5-D tensor of ``shape`` in ``x``'s layout (channels-last or not)."""
    fmt = CHANNELS_LAST if x.dim() == 5 and x.is_contiguous(memory_format=CHANNELS_LAST) else torch.contiguous_format
    return torch.empty(shape, dtype=dtype or x.dtype, device=x.device, memory_format=fmt)


def silu(x: Tensor) -> Tensor:
    """SiLU, in place during inference."""
    return F.silu(x, inplace=inference())


def _in_place(out: Tensor, other: Tensor) -> bool:
    # Under autocast a bf16 conv output meets a float32 residual: promote like the original does.
    return inference() and out.dtype == other.dtype


def add(x: Tensor, residual: Tensor) -> Tensor:
    """``x + residual``, written into ``x`` during inference (``x`` must be a fresh result)."""
    return x.add_(residual) if _in_place(x, residual) else x + residual


def blend(fixed: Tensor, learned: Tensor, alpha: Tensor) -> Tensor:
    """``alpha * fixed + (1 - alpha) * learned`` (AlphaBlender), written into ``learned`` during inference."""
    if _in_place(learned, fixed):
        return learned.lerp_(fixed, alpha.to(learned.dtype))
    return alpha * fixed + (1 - alpha) * learned


def blend_into(out: Tensor, fixed: Tensor, learned: Tensor, alpha: Tensor) -> None:
    """Write ``blend(fixed, learned, alpha)`` into the view ``out`` (in one pass during inference; under
    torch.compile as a copy, since dynamo cannot trace an ``out=`` into a strided view and would break the graph)."""
    if _in_place(learned, fixed) and out.dtype == learned.dtype and not torch.compiler.is_compiling():
        torch.lerp(learned, fixed, alpha.to(learned.dtype), out=out)
    else:
        out.copy_(blend(fixed, learned, alpha))
