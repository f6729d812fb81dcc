"""What identifies a tokenizer that a job ran (evaluation reports, encoded datasets): its name, compression and
full config, and where its weights came from (the checkpoint file and its SHA-256, or a SHA-256 of the weights of a
tokenizer passed in from Python)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import torch

from ..io.auxiliary_weights import sha256_of
from ..version import __version__


def tokenizer_identity(tok: Any, ckpt: Optional[str], from_file: bool = True) -> dict[str, Any]:
    """What ran: the tokenizer's name and full config, the checkpoint file ``ckpt`` and its SHA-256 (for a
    tokenizer passed in from Python, ``from_file=False``: a SHA-256 of its weights instead)."""
    if getattr(tok.config, "family", None) is not None:
        return _diffusers_identity(tok)
    info: dict[str, Any] = {
        "name": tok.config.name,
        "causal": tok.config.causal,
        "compression": f"{tok.config.temporal_factor}x{tok.config.spatial_factor}x{tok.config.spatial_factor}",
        "regularizer": tok.config.regularizer.kind,
        "latent_channels": tok.config.latent_channels,
        "parameters": sum(p.numel() for p in tok.parameters()),
        "vidtok_version": __version__,
        "torch_version": torch.__version__,
    }
    if not from_file:
        info["ckpt"] = None
        info["weights_sha256"] = weights_sha256(tok)
    elif ckpt:
        path = Path(ckpt)
        info["ckpt"] = str(path.resolve())
        if path.is_file():
            info["ckpt_bytes"] = path.stat().st_size
            info["ckpt_sha256"] = sha256_of(path)
    info["config"] = asdict(tok.config)
    return info


def _diffusers_identity(tok: Any) -> dict[str, Any]:
    """What identifies a diffusers model: where it came from, its class and factors, and its config as saved."""
    import diffusers

    c = tok.config
    return {
        "name": c.name,
        "family": c.family,
        "source": c.source,
        "causal": c.causal,
        "compression": f"{c.temporal_factor}x{c.spatial_factor}x{c.spatial_factor}",
        "regularizer": "fsq" if c.is_discrete else "kl",
        "latent_channels": c.latent_channels,
        "codebook_size": c.codebook_size,
        "parameters": sum(p.numel() for p in tok.parameters()),
        "switches": c.switches,
        "weights_sha256": weights_sha256(tok.vae),
        "diffusers_version": diffusers.__version__,
        "vidtok_version": __version__,
        "torch_version": torch.__version__,
        "config": {k: v for k, v in dict(tok.vae.config).items() if not k.startswith("_")}
        | {"frame_rule": asdict(c.frame_rule)},
    }


def weights_sha256(module: torch.nn.Module) -> str:
    """SHA-256 of a module's state dict: every key, then its tensor's raw bytes, in sorted key order."""
    digest = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
