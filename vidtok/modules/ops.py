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


def eager_inference() -> bool:
    """Inference outside ``torch.compile``: the hand-written paths that write with ``out=`` into views of a larger
    result may run. Dynamo cannot trace such a write and would split the graph there; under the compiler the plain
    form runs (results copied into place) and the compiler plans the memory."""
    return inference() and not torch.compiler.is_compiling()


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
    """Write ``blend(fixed, learned, alpha)`` into the view ``out`` (in one pass during eager inference, else as a
    copy: see [`eager_inference`][vidtok.modules.ops.eager_inference])."""
    if eager_inference() and out.dtype == learned.dtype == fixed.dtype:
        torch.lerp(learned, fixed, alpha.to(learned.dtype), out=out)
    else:
        out.copy_(blend(fixed, learned, alpha))
