"""``load_tokenizer``: build a tokenizer from a preset name or config file, optionally with weights."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Optional

import torch

from ..composition import official_names
from ..config import TokenizerConfig
from ..errors import ConfigError
from .tokenizer import Tokenizer
from .weights import RANDOM_SOURCE, locate_weights, published_weights, read_weights, resolve_config


def build_tokenizer(config: TokenizerConfig) -> Tokenizer:
    """A randomly initialised tokenizer for ``config`` (training mode, gradients on)."""
    return Tokenizer(config)


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
        ckpt: the weights, as [`locate_weights`][vidtok.models.weights.locate_weights] takes them: an official Lightning
            ``.ckpt`` (a dict with ``state_dict``; ``loss.*`` entries are ignored), a bare state dict or a
            ``.safetensors`` file; a ``save_pretrained`` folder or a training checkpoint folder
            (``checkpoints/step_N/``); an official name; a Hub repository id. ``None`` with an official name: the
            published weights from the Hugging Face Hub (``microsoft/VidTok``), downloaded once and cached
            (see [`vidtok.hub`][]).
        overrides: Hydra-style overrides such as ``["model.ch=16"]``.
        pretrained: ``False`` (without ``ckpt``) gives random weights; nothing else does.
        revision: the Hub revision (branch, tag or commit) of the published weights (or of ``ckpt``'s repository).
        local_files_only: use the Hub cache only, never the network.
        device: where to put the model.
        config: a full tokenizer config to use instead of ``name`` (e.g. one Hydra composed from the groups).

    Returns the tokenizer in eval mode with gradients switched off for its parameters (call
    ``.train().requires_grad_(True)`` to fine-tune). Keys are checked strictly: missing, unexpected
    and mis-shaped entries are all reported at once.
    """
    if ckpt is None and not pretrained:
        tokenizer = Tokenizer(resolve_config(name, None, None, overrides, config))
        tokenizer.weights_source = RANDOM_SOURCE
        return tokenizer.to(device).eval().requires_grad_(False)
    if ckpt is None:
        location = published_weights(
            _official_name(name, overrides, config), revision=revision, local_files_only=local_files_only
        )
    else:
        location = locate_weights(ckpt, revision=revision, local_files_only=local_files_only)
    return Tokenizer.from_weights(read_weights(location, name, overrides, config), device)


def _official_name(name: Optional[str], overrides: Sequence[str], config: Optional[TokenizerConfig]) -> str:
    """The official name whose published weights ``name`` / ``config`` ask for; a ConfigError when it is none."""
    official = config.name if config is not None else name
    if official in official_names():
        return official
    if config is None and name is not None:
        resolve_config(name, None, None, overrides)  # an unknown name or a bad config file is named first
    what = repr(name) if config is None else f"the config of {config.name or 'a tokenizer'}"
    raise ConfigError(
        f"no weights for {what}: published weights exist for the 23 official names only; "
        "pass ckpt= (a checkpoint file) or pretrained=False (random weights)"
    )
