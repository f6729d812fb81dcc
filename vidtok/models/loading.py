"""``load_tokenizer``: build a tokenizer from a preset name or config file, optionally with weights."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import torch
from omegaconf import OmegaConf

from ..composition import compose_tokenizer_config, official_names
from ..config import TokenizerConfig
from ..errors import CheckpointError, ConfigError
from ..io.weight_files import META_SOURCE, LoadedCheckpoint, check_state_dict, read_checkpoint, tokenizer_state_dict
from .tokenizer import Tokenizer


def build_tokenizer(config: TokenizerConfig) -> Tokenizer:
    """A randomly initialised tokenizer for ``config`` (training mode, gradients on)."""
    return Tokenizer(config)


def apply_overrides(config: TokenizerConfig, overrides: Sequence[str]) -> TokenizerConfig:
    """``key=value`` overrides applied to an existing config (leading ``+`` is accepted and ignored)."""
    if not overrides:
        return config
    dotlist = [o.lstrip("+") for o in overrides]
    bad = [o for o in dotlist if "=" not in o]
    if bad:
        raise ConfigError(f"overrides must look like key=value, got {bad}")
    merged = OmegaConf.merge(OmegaConf.structured(config), OmegaConf.from_dotlist(dotlist))
    return TokenizerConfig.from_any(merged)


def resolve_config(
    name: Optional[str],
    ckpt_config: Optional[TokenizerConfig],
    ckpt_path: Optional[Path],
    overrides: Sequence[str],
    config: Optional[TokenizerConfig] = None,
) -> TokenizerConfig:
    """Decide the tokenizer config from the name (or a given ``config``), the checkpoint's own metadata and the
    overrides. An official checkpoint file name that names another official tokenizer is refused: the v1.0 and
    v1.1 versions of a model have the same keys and shapes, so nothing else would catch the mix-up."""
    if config is not None:
        if name is not None:
            raise ConfigError(f"give a tokenizer name or a config, not both (name={name!r}, config {config.name!r})")
        config = apply_overrides(config, overrides)
        name = config.name
    if ckpt_path is not None and name in official_names():
        stem = ckpt_path.name.split(".")[0]
        if stem in official_names() and stem != name:
            raise CheckpointError(
                f"{ckpt_path} is the official checkpoint of {stem!r}, not of the requested tokenizer {name!r}; "
                f"pass tokenizer={stem} (or rename the file if it really holds {name!r} weights)"
            )
    if config is not None:
        return _check_against(config, ckpt_config, ckpt_path, name)
    if name is None and ckpt_config is not None:
        return apply_overrides(ckpt_config, overrides)
    if name is None and ckpt_path is not None:
        stem = ckpt_path.name.split(".")[0]
        if stem in official_names():
            name = stem
        else:
            raise ConfigError(
                f"cannot tell which tokenizer {ckpt_path} holds: its file name is not an official name and it "
                "carries no config metadata; pass the name, e.g. "
                f"load_tokenizer('vidtok_kl_causal_488_4chn', ckpt='{ckpt_path}')"
            )
    return _check_against(compose_tokenizer_config(name, overrides), ckpt_config, ckpt_path, name)


def _check_against(
    config: TokenizerConfig, ckpt_config: Optional[TokenizerConfig], ckpt_path: Optional[Path], name: Optional[str]
) -> TokenizerConfig:
    if ckpt_config is not None:
        diffs = config.differences(ckpt_config)
        if diffs:
            raise CheckpointError(
                f"{ckpt_path} was written for tokenizer {ckpt_config.name!r} whose config differs from the "
                f"requested {config.name or name!r}: " + "; ".join(diffs)
            )
    return config


def weights_source(loaded: LoadedCheckpoint) -> str:
    """Where weights came from, in words: the Hub file of a converted official checkpoint, what a vidtok file says
    of itself (a training run, a conversion), or the file."""
    from ..hub import META_HUB_FILE as HUB_FILE
    from ..hub import REPO_ID

    meta = loaded.metadata or {}
    if meta.get(HUB_FILE):
        commit = meta.get("vidtok_hub_commit", "?")
        return (
            f"the published checkpoint {meta[HUB_FILE]} of the Hugging Face Hub repository {REPO_ID} (commit {commit})"
        )
    if meta.get(META_SOURCE):
        return meta[META_SOURCE]
    return f"loaded from {loaded.path.name}"


def load_tokenizer(
    name: Optional[str] = None,
    ckpt: Optional[str | os.PathLike] = None,
    overrides: Sequence[str] = (),
    *,
    pretrained: bool = True,
    revision: Optional[str] = None,
    local_files_only: bool = False,
    device: str | torch.device = "cpu",
    config: Optional[TokenizerConfig] = None,
) -> Tokenizer:
    """Build a tokenizer and load its weights.

    Args:
        name: an official checkpoint name (``vidtok_fsq_causal_488_262144``), a path to a tokenizer
            config file, or ``None`` to take the config from ``ckpt`` (safetensors written by
            ``vidtok convert`` carry it; official ``.ckpt`` files are recognised by their file name).
        ckpt: an official Lightning ``.ckpt`` (a dict with ``state_dict``; ``loss.*`` entries are
            ignored), a bare state dict, or a ``.safetensors`` file. ``None`` with an official name: the
            published weights from the Hugging Face Hub (``microsoft/VidTok``), downloaded once and cached
            (see :mod:`vidtok.hub`).
        overrides: Hydra-style overrides such as ``["model.ch=16"]``.
        pretrained: ``False`` (without ``ckpt``) gives random weights; nothing else does.
        revision: the Hub revision (branch, tag or commit) of the published weights.
        local_files_only: use the Hub cache only, never the network.
        device: where to put the model.
        config: a full tokenizer config to use instead of ``name`` (e.g. one Hydra composed from the groups).

    Returns the tokenizer in eval mode with gradients switched off for its parameters (call
    ``.train().requires_grad_(True)`` to fine-tune). Keys are checked strictly: missing, unexpected
    and mis-shaped entries are all reported at once.
    """
    if ckpt is None and pretrained:
        official = config.name if config is not None else name
        if official not in official_names():
            if config is None and name is not None:
                resolve_config(name, None, None, overrides)  # an unknown name or a bad config file is named first
            what = repr(name) if config is None else f"the config of {config.name or 'a tokenizer'}"
            raise ConfigError(
                f"no weights for {what}: published weights exist for the 23 official names only; "
                "pass ckpt= (a checkpoint file) or pretrained=False (random weights)"
            )
        from ..hub import pretrained_file

        ckpt = pretrained_file(official, revision=revision, local_files_only=local_files_only)
    loaded = read_checkpoint(ckpt) if ckpt is not None else None
    config = resolve_config(
        name, loaded.config if loaded else None, Path(ckpt) if ckpt is not None else None, overrides, config
    )
    if loaded is None:
        tokenizer = Tokenizer(config)
        tokenizer.weights_source = "random initialisation (no weights were loaded)"
    else:
        state_dict = {
            k: (v.float() if v.is_floating_point() else v) for k, v in tokenizer_state_dict(loaded.state_dict).items()
        }
        with torch.device("meta"):
            tokenizer = Tokenizer(config)
        check_state_dict(tokenizer, state_dict, source=str(loaded.path))
        tokenizer.load_state_dict(state_dict, strict=True, assign=True)
        tokenizer.reset_buffers()
        tokenizer.weights_source = weights_source(loaded)
    return tokenizer.to(device).eval().requires_grad_(False)
