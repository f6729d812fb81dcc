"""Export a tokenizer to a folder that ``diffusers.AutoencoderVidTok.from_pretrained`` loads.

diffusers (0.42 and later) ships ``AutoencoderVidTok``, whose module tree and state-dict keys are the official
checkpoints' (and so ours): the export is its config plus our weights, saved by diffusers itself. Its maths is the
original's for v1.1 causal and for non-causal models; for v1.0 causal models it applies v1.1's (first-frame padding,
linear temporal upsampling), so their decoded output differs from the original's (by about 1 on [-1, 1] video): those
are exported only when asked (``force=True``), with a warning.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from .errors import ExportError
from .models.pretrained import STATS_NAME

log = logging.getLogger("vidtok.export")


def diffusers_config(config: Any) -> dict[str, Any]:
    """``AutoencoderVidTok``'s constructor arguments for a [`TokenizerConfig`][vidtok.TokenizerConfig]."""
    comp, model = config.compression, config.model
    args: dict[str, Any] = dict(
        in_channels=model.in_channels,
        out_channels=model.in_channels,
        ch=model.ch,
        ch_mult=list(comp.ch_mult),
        z_channels=config.latent_channels,
        num_res_blocks=model.num_res_blocks,
        spatial_ds=list(comp.spatial_down),
        spatial_us=list(comp.spatial_up),
        tempo_ds=list(comp.temporal_down),
        tempo_us=list(comp.temporal_up),
        dropout=float(model.dropout),
        is_causal=bool(config.causal),
    )
    if config.is_discrete:
        levels = list(config.regularizer.levels)
        if set(levels) != {8}:
            raise ExportError(f"diffusers' FSQ has 8 levels per channel; this tokenizer's levels are {levels}")
        args.update(regularizer="fsq", double_z=False, codebook_size=int(math.prod(levels)))
    else:
        args.update(regularizer="kl", double_z=True)
    return args


def export_diffusers(tok: Any, out_dir: str | os.PathLike, force: bool = False) -> Path:
    """Write ``tok`` as a diffusers ``AutoencoderVidTok`` folder (``config.json`` + safetensors weights).

    v1.0 causal tokenizers are refused unless ``force`` (diffusers computes them with v1.1's maths, see the module
    docstring). Returns the folder."""
    c = tok.config
    label = c.name or "this tokenizer"
    if c.causal and c.version == "v1.0":
        message = (
            f"{label} is a v1.0 causal model: diffusers' AutoencoderVidTok computes it with v1.1 maths (first-frame "
            "padding, linear temporal upsampling), so its reconstructions differ from the original's (by about 1)"
        )
        if not force:
            raise ExportError(message + "; pass force=True (--force) to export it anyway")
        log.warning("%s; exported because forced", message)
    try:
        from diffusers import AutoencoderVidTok
    except ImportError as err:
        raise ExportError(f"exporting to diffusers needs diffusers >= 0.42 (pip install diffusers): {err}") from None

    args = diffusers_config(c)
    model = AutoencoderVidTok(**args)  # not on the meta device: its FSQ reads its own buffers while building
    state = {k: v.detach().clone().contiguous() for k, v in tok.state_dict().items()}
    expected = set(model.state_dict())
    if expected != set(state):
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise ExportError(f"AutoencoderVidTok's keys differ from {label}'s: missing {missing[:5]}, extra {extra[:5]}")
    model.load_state_dict(state, strict=True)
    out = Path(out_dir)
    model.save_pretrained(out, safe_serialization=True)
    if tok.latent_stats is not None:
        (out / STATS_NAME).write_text(json.dumps(tok.latent_stats, indent=1))
        log.info("AutoencoderVidTok's config has no field for latent statistics: they are in %s", out / STATS_NAME)
    return out
