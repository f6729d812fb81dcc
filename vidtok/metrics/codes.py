"""Statistics of discrete tokens (FSQ code indices): how often each code occurs, the share of the codebook used, the
perplexity, per-channel level usage and the share of tokens that change from one latent frame to the next.

One home for what ``encode.py`` writes into ``stats.json`` and what ``evaluate.py`` reports per discrete tokenizer.
Counts are integers, so parts (shards, processes, videos) merge exactly in any order.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors.torch import load_file, save
from torch import Tensor


class CodeCounts:
    """One shard's FSQ statistics: the count of every code and the token changes between latent frames."""

    def __init__(self, codebook_size: int):
        self.counts = torch.zeros(codebook_size, dtype=torch.int64)
        self.changes = 0
        self.pairs = 0  # (token, token at the same place one latent frame earlier) pairs compared

    def add(self, indices: Tensor) -> None:
        """Indices (B, t, h, w): B samples, changes counted within each."""
        flat = indices.reshape(-1).long().cpu()
        self.counts += torch.bincount(flat, minlength=self.counts.numel())
        if indices.shape[1] > 1:
            self.changes += int((indices[:, 1:] != indices[:, :-1]).sum())
            self.pairs += indices[:, 1:].numel()

    def to_bytes(self) -> bytes:
        """The used codes and their counts (sparse: a shard uses few of 262,144 codes), the codebook size, the
        token changes and pairs, as safetensors."""
        used = self.counts.nonzero().flatten()
        scalars = torch.tensor([self.counts.numel(), self.changes, self.pairs], dtype=torch.int64)
        return save({"codes": used, "counts": self.counts[used], "size_changes_pairs": scalars})

    @classmethod
    def from_file(cls, path: Path) -> CodeCounts:
        tensors = load_file(path)
        size, changes, pairs = (int(v) for v in tensors["size_changes_pairs"])
        counts = cls(size)
        counts.counts[tensors["codes"]] = tensors["counts"]
        counts.changes, counts.pairs = changes, pairs
        return counts


def code_stats(parts: list[CodeCounts], levels: Optional[list[int]] = None) -> dict:
    """The statistics of all ``parts``' tokens: count, codes used and their share of the codebook, entropy (bits),
    perplexity, the token change rate between consecutive latent frames, and with FSQ ``levels`` (mixed radix, the
    first channel the fastest, as FSQ indexes) how often each level of each channel occurs."""
    size = math.prod(levels) if levels else parts[0].counts.numel()
    counts = torch.zeros(size, dtype=torch.int64)
    changes = pairs = 0
    for part in parts:
        counts += part.counts
        changes, pairs = changes + part.changes, pairs + part.pairs
    tokens = int(counts.sum())
    out: dict[str, Any] = {"kind": "indices", "codebook_size": size, "levels": levels, "tokens": tokens}
    if not tokens:
        return out
    p = counts[counts > 0].double() / tokens
    entropy = float(-(p * p.log()).sum())
    used = int((counts > 0).sum())
    out.update(
        codes_used=used,
        usage=used / size,
        entropy_bits=entropy / math.log(2),
        perplexity=math.exp(entropy),
    )
    if levels:
        codes = torch.arange(size)
        level_usage, basis = [], 1
        for level in levels:
            digits = (codes // basis) % level
            per_level = torch.zeros(level, dtype=torch.int64).index_add_(0, digits, counts)
            level_usage.append((per_level.double() / tokens).tolist())
            basis *= level
        out["level_usage"] = level_usage
    out["change_rate"] = changes / pairs if pairs else None
    return out
