"""How far a tokenizer's latents move from a reference tokenizer's on the same input (a fine-tuned encoder against
the one it started from): relative L2 overall and per channel, and for discrete tokenizers the share of tokens that
changed. Sums in float64, so parts (batches, processes) merge exactly in any grouping up to float64 rounding."""

from __future__ import annotations

import math
from typing import Any, Optional

from torch import Tensor


class LatentDrift:
    """Accumulates ``||z - z_ref||^2`` and ``||z_ref||^2`` per channel over (B, C, ...) latents, and for code
    indices (B, ...) the tokens that differ."""

    def __init__(self) -> None:
        self.diff: Optional[Tensor] = None  # (C,) float64
        self.ref: Optional[Tensor] = None
        self.values = 0
        self.changed = 0
        self.tokens = 0

    def update(self, z: Tensor, reference: Tensor, indices: Optional[Tensor] = None,
               reference_indices: Optional[Tensor] = None) -> None:  # fmt: skip
        """Latents of the same input by the tokenizer (``z``) and the reference; optionally both's code indices."""
        if z.shape != reference.shape:
            raise ValueError(f"latents of shape {tuple(z.shape)} and reference {tuple(reference.shape)} differ")
        z, reference = z.detach().double().transpose(0, 1), reference.detach().double().transpose(0, 1)
        diff = (z - reference).pow(2).reshape(z.shape[0], -1).sum(dim=1).cpu()
        ref = reference.pow(2).reshape(z.shape[0], -1).sum(dim=1).cpu()
        self.diff = diff if self.diff is None else self.diff + diff
        self.ref = ref if self.ref is None else self.ref + ref
        self.values += z[0].numel()
        if indices is not None and reference_indices is not None:
            self.changed += int((indices != reference_indices).sum())
            self.tokens += indices.numel()

    def measure(self, tok: Any, reference: Any, x: Tensor, z: Tensor, indices: Optional[Tensor] = None,
                **encode_options: Any) -> None:  # fmt: skip
        """Add ``tok``'s latents ``z`` of video ``x`` against the ``reference`` tokenizer's latents of the same ``x``
        (encoded here with ``encode_options``); for a discrete ``tok`` its code indices too (``indices``: those of
        ``z`` when already at hand)."""
        z_ref = reference.encode(x, **encode_options)
        if not tok.config.is_discrete:
            self.update(z.float(), z_ref.float())
            return
        indices = tok.latents_to_indices(z) if indices is None else indices
        self.update(z.float(), z_ref.float(), indices, reference.latents_to_indices(z_ref))

    @classmethod
    def merged(cls, parts: list[Optional[LatentDrift]]) -> LatentDrift:
        """The sums of ``parts`` (processes' drifts; None parts skipped) in one."""
        total = cls()
        for part in parts:
            if part is not None:
                total.merge(part)
        return total

    def merge(self, other: LatentDrift) -> LatentDrift:
        """Add ``other``'s sums (another process's) to these."""
        if other.diff is not None:
            self.diff = other.diff.clone() if self.diff is None else self.diff + other.diff
            self.ref = other.ref.clone() if self.ref is None else self.ref + other.ref
        self.values += other.values
        self.changed += other.changed
        self.tokens += other.tokens
        return self

    def compute(self) -> dict[str, Any]:
        """``relative_l2`` (||z - z_ref|| / ||z_ref|| over everything), ``per_channel`` (the same per channel),
        ``rmse`` (root mean squared difference per latent value) and, for code indices, ``changed_tokens``."""
        if self.diff is None:
            return {}
        out: dict[str, Any] = {
            "relative_l2": _ratio(float(self.diff.sum()), float(self.ref.sum())),
            "per_channel": [_ratio(float(d), float(r)) for d, r in zip(self.diff, self.ref, strict=True)],
            "rmse": math.sqrt(float(self.diff.sum()) / (self.values * self.diff.numel())),
        }
        if self.tokens:
            out["changed_tokens"] = self.changed / self.tokens
        return out


def _ratio(diff: float, ref: float) -> float:
    return math.sqrt(diff / ref) if ref > 0 else (0.0 if diff == 0 else math.inf)
