"""Statistics of what a dataset encoding writes, for the generative model that trains on it.

KL latents: per channel the value count, mean, standard deviation, minimum and maximum, in float64; the same for the
first latent frame of each sample of a causal model on its own (it encodes a single frame); a global mean and
standard deviation over all channels, and the factors generative pipelines use them as (``scaling_factor`` =
1 / global std, ``shift_factor`` = global mean, per-channel ``latents_mean`` / ``latents_std``).

FSQ indices: how often each code occurs (all codes, also for 262,144), the share of codes used, the perplexity
(exp of the entropy of the code distribution), per channel how often each level occurs, and the share of tokens that
differ from the token at the same place in the previous latent frame.

Exact and resumable: each video's latent moments go into its index record (a video's samples always share one
shard) and the code counts of a shard into a file beside its index, written before it; ``stats.json`` merges them in
video order with correctly rounded sums (``math.fsum``) and integer counts, so a run killed at any moment and
started again writes the same file as an uninterrupted run, whatever the shards hold.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor

from ..config import TokenizerConfig
from ..data.latent_stats import STATS_FILE
from ..io.files import write_atomic
from ..metrics.codes import CodeCounts, code_stats


def channel_moments(data: list[Tensor]) -> dict:
    """Per-channel count, mean, sum of squared deviations (``m2``), min and max of (1, C, ...) tensors, float64."""
    values = torch.cat([d.double().transpose(0, 1).reshape(d.shape[1], -1) for d in data], dim=1)
    mean = values.mean(dim=1)
    return {
        "n": int(values.shape[1]),
        "mean": mean.tolist(),
        "m2": (values - mean[:, None]).pow(2).sum(dim=1).tolist(),
        "min": values.amin(dim=1).tolist(),
        "max": values.amax(dim=1).tolist(),
    }


def video_moments(samples: list[Tensor], causal: bool) -> dict:
    """What a video's index record holds of its KL latents (C, t, h, w per sample): all of them, and for causal
    models the first latent frame of each sample."""
    record = {"all": channel_moments(samples)}
    if causal:
        record["first_frame"] = channel_moments([s[:, :, :1] for s in samples])
    return record


def merge_moments(parts: list[dict]) -> Optional[dict]:
    """Per-channel count, mean, std (population), min and max of the union of ``parts`` (``channel_moments``
    records), correctly rounded and so independent of the parts' order and grouping. None without parts."""
    if not parts:
        return None
    n = sum(p["n"] for p in parts)
    channels = range(len(parts[0]["mean"]))
    mean = [math.fsum(p["n"] * p["mean"][c] for p in parts) / n for c in channels]
    m2 = [math.fsum(p["m2"][c] + p["n"] * (p["mean"][c] - mean[c]) ** 2 for p in parts) for c in channels]
    return {
        "count": n,
        "mean": mean,
        "std": [math.sqrt(v / n) for v in m2],
        "min": [min(p["min"][c] for p in parts) for c in channels],
        "max": [max(p["max"][c] for p in parts) for c in channels],
        "_m2": m2,
    }


def _global(merged: dict) -> dict:
    """Mean and std over all channels together: the channels' moments merged as parts of one channel."""
    columns = zip(merged["mean"], merged["_m2"], merged["min"], merged["max"], strict=True)
    parts = [{"n": merged["count"], "mean": [m], "m2": [v], "min": [lo], "max": [hi]} for m, v, lo, hi in columns]
    pooled = merge_moments(parts)
    return {"mean": pooled["mean"][0], "std": pooled["std"][0]}


def latent_stats(videos: list[dict]) -> dict:
    """``stats.json`` of KL latents from the videos' index records (each with its ``stats``; records written by a
    vidtok before statistics existed have none and are counted as ``videos_without_stats``)."""
    records = sorted((v for v in videos if "stats" in v), key=lambda v: v["order"])
    merged = merge_moments([v["stats"]["all"] for v in records])
    out: dict[str, Any] = {"kind": "latents", "videos_without_stats": len(videos) - len(records)}
    if merged is None:
        return out
    overall = _global(merged)
    out.update({k: v for k, v in merged.items() if not k.startswith("_")})
    out["global"] = overall
    out["factors"] = {
        "scaling_factor": 1.0 / overall["std"],
        "shift_factor": overall["mean"],
        "latents_mean": merged["mean"],
        "latents_std": merged["std"],
    }
    first = merge_moments([v["stats"]["first_frame"] for v in records if "first_frame" in v["stats"]])
    if first is not None:
        out["first_frame"] = {k: v for k, v in first.items() if not k.startswith("_")}
    return out


def write_stats(out_dir: Path, indexes: list[dict], config: TokenizerConfig, kind: str, code_files: list[Path]) -> dict:
    """``stats.json`` of an encoding's output, from its committed index records (and code-count files)."""
    videos = [v for index in indexes for v in index["videos"]]
    if kind == "indices":
        stats = code_stats([CodeCounts.from_file(p) for p in sorted(code_files)], config.levels)
    else:
        stats = latent_stats(videos)
    stats.update(videos=len(videos), samples=sum(len(v["samples"]) for v in videos), tokenizer=config.label)
    sizes = Counter(f"{s['height']}x{s['width']}" for v in videos for s in v["samples"] if "height" in s)
    stats["sizes"] = dict(sorted(sizes.items()))  # samples per frame size (resize=aspect / buckets: several)
    write_atomic(out_dir / STATS_FILE, json.dumps(stats, indent=1).encode())
    return stats
