"""What a user names -> the weights it means, and the config they load with.

[`locate_weights`][] is the one place that reads a name: an official name (not an existing path) means its
published weights, an existing file is itself, a ``save_pretrained`` folder or a vidtok training checkpoint folder
(``checkpoints/step_N/``) means the weights inside, anything else of the form ``owner/name`` is a Hub repository
holding a ``save_pretrained`` folder. [`read_weights`][] reads the file found and decides the tokenizer config
(the name or config asked for, the file's own metadata, overrides), checking them against each other.
``load_tokenizer``, ``Tokenizer.from_pretrained``, the jobs' ``ckpt`` and training's ``init_from`` all start here;
building the model is [`vidtok.Tokenizer.from_weights`][] (this module never imports it).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Optional, Union

from omegaconf import OmegaConf
from torch import Tensor

from ..composition import compose_tokenizer_config, official_names
from ..config import TokenizerConfig
from ..errors import CheckpointError, ConfigError, HubError, WeightsNotFoundError
from ..hub import META_HUB_FILE, REPO_ID, download_checkpoint, pretrained_file
from ..io.weight_files import META_SOURCE, LoadedCheckpoint, read_checkpoint, tokenizer_state_dict

#: a ``save_pretrained`` folder (or Hub repository): the weights, with the config in their metadata too
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
#: what a vidtok training checkpoint folder (``checkpoints/step_N/``) holds: tried in this order
TRAINING_FILES = ("tokenizer.safetensors", "tokenizer_ema.safetensors")
#: what every ``ckpt`` / ``--ckpt`` / ``init_from`` takes, in words (help texts and errors)
WHAT_CKPT_TAKES = (
    "an official name, a weights file (.safetensors / .ckpt), a save_pretrained folder, a training checkpoint "
    "folder (checkpoints/step_N/) or a Hugging Face Hub repository id (owner/name)"
)
RANDOM_SOURCE = "random initialisation (no weights were loaded)"

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


@dataclass(frozen=True)
class WeightsLocation:
    """Where the weights of a name are on this machine: the weights file, and the ``config.json`` beside it in a
    ``save_pretrained`` folder (or Hub repository), if any."""

    file: Path
    config_file: Optional[Path] = None


class Weights(NamedTuple):
    """What a tokenizer is built from: its config, its state dict (floating point as fp32), where the weights came
    from in words ([`weights_source`][]) and the file they were read from."""

    config: TokenizerConfig
    state_dict: dict[str, Tensor]
    source: str
    file: Path


# ---- the dispatch --------------------------------------------------------------------------------------------------


def published_weights(
    name: str, *, original_checkpoint: bool = False, revision: Optional[str] = None, local_files_only: bool = False
) -> WeightsLocation:
    """The published weights of the official ``name``: vidtok's converted safetensors copy, or with
    ``original_checkpoint`` the Hub's ``.ckpt`` itself (which holds the training loss's discriminator too)."""
    if original_checkpoint:
        return WeightsLocation(download_checkpoint(name, revision, local_files_only))
    return WeightsLocation(pretrained_file(name, revision=revision, local_files_only=local_files_only))


def locate_weights(
    target: Union[str, os.PathLike],
    *,
    original_checkpoint: bool = False,
    revision: Optional[str] = None,
    local_files_only: bool = False,
    cache_dir: Optional[Union[str, Path]] = None,
    token: Optional[Union[str, bool]] = None,
    force_download: bool = False,
) -> WeightsLocation:
    """The weights ``target`` names: an official name (not an existing path) -> its published weights (see
    [`published_weights`][]; ``revision`` / ``local_files_only`` apply), an existing file -> itself, a
    ``save_pretrained`` folder -> its ``model.safetensors``, a training checkpoint folder -> its
    ``tokenizer.safetensors`` (else ``tokenizer_ema.safetensors``), ``owner/name`` -> that Hub repository's
    ``model.safetensors`` (``revision``, ``cache_dir``, ``token``, ``force_download``, ``local_files_only`` as in
    every Hub library). Anything else raises [`WeightsNotFoundError`][vidtok.errors.WeightsNotFoundError] (a Hub failure
    [`HubError`][vidtok.errors.HubError]) saying what was expected."""
    text, path = str(target), Path(target)
    if text in official_names() and not path.exists():
        return published_weights(
            text, original_checkpoint=original_checkpoint, revision=revision, local_files_only=local_files_only
        )
    if path.is_file():
        return WeightsLocation(path)
    if path.is_dir():
        return folder_weights(path)
    if _REPO_ID.match(text) and not text.endswith(_WEIGHT_SUFFIXES):
        hub = dict(
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            force_download=force_download,
            local_files_only=local_files_only,
        )
        return repository_weights(text, **hub)
    raise WeightsNotFoundError(f"checkpoint {text} does not exist or is not a file: expected {WHAT_CKPT_TAKES}")


def folder_weights(folder: Path) -> WeightsLocation:
    """The weights in a ``save_pretrained`` folder (``config.json`` + ``model.safetensors``) or a vidtok training
    checkpoint folder; a WeightsNotFoundError naming what was expected otherwise."""
    config_file = folder / CONFIG_NAME
    found = next((folder / name for name in (WEIGHTS_NAME, *TRAINING_FILES) if (folder / name).is_file()), None)
    if found is None:
        raise WeightsNotFoundError(
            f"{folder} holds no tokenizer: expected {CONFIG_NAME} + {WEIGHTS_NAME} (save_pretrained) or one of "
            f"{', '.join(TRAINING_FILES)} (a training checkpoint)"
        )
    use_config = found.name == WEIGHTS_NAME and config_file.is_file()
    return WeightsLocation(found, config_file if use_config else None)


def repository_weights(repo_id: str, **hub: Any) -> WeightsLocation:
    """``model.safetensors`` (and ``config.json``, when the repository has one) of the Hub repository ``repo_id``,
    through ``hf_hub_download`` and its cache; a HubError naming the repository and the reason otherwise."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

    def download(filename: str) -> Path:
        return Path(hf_hub_download(repo_id, filename, library_name="vidtok", **hub))

    try:
        weights = download(WEIGHTS_NAME)
    except (HfHubHTTPError, OSError, ValueError) as err:
        why = " ".join(str(err).split())
        raise HubError(
            f"{repo_id} is no file or folder on this machine, and the Hugging Face Hub repository {repo_id} gave no "
            f"{WEIGHTS_NAME} (revision {hub.get('revision') or 'main'}): {why}; expected {WHAT_CKPT_TAKES}"
        ) from None
    try:
        config_file: Optional[Path] = download(CONFIG_NAME)
    except EntryNotFoundError:  # the weights carry their config in their metadata too
        config_file = None
    return WeightsLocation(weights, config_file)


# ---- the config the weights load with ------------------------------------------------------------------------------


def read_weights(
    location: WeightsLocation,
    name: Optional[str] = None,
    overrides: Sequence[str] = (),
    config: Optional[TokenizerConfig] = None,
) -> Weights:
    """Read the weights at ``location`` and decide their config with [`resolve_config`][] (a ``config.json``
    beside them counts as the file's own config, checked against the one in their metadata)."""
    loaded = read_checkpoint(location.file)
    own_config = loaded.config
    if location.config_file is not None:
        folder_config = _read_config_file(location.config_file)
        own_config = _check_against(folder_config, loaded.config, location.file, folder_config.name)
    resolved = resolve_config(name, own_config, location.file, overrides, config)
    state_dict = {
        k: (v.float() if v.is_floating_point() else v) for k, v in tokenizer_state_dict(loaded.state_dict).items()
    }
    return Weights(resolved, state_dict, weights_source(loaded), location.file)


def _read_config_file(path: Path) -> TokenizerConfig:
    try:
        return TokenizerConfig.from_any(json.loads(path.read_text()))
    except ValueError as err:  # JSON that does not parse, or a config that does not validate
        raise CheckpointError(f"{path} is not a tokenizer config: {' '.join(str(err).split())}") from None


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
    meta = loaded.metadata or {}
    if meta.get(META_HUB_FILE):
        commit = meta.get("vidtok_hub_commit", "?")
        return (
            f"the published checkpoint {meta[META_HUB_FILE]} of the Hugging Face Hub repository {REPO_ID} "
            f"(commit {commit})"
        )
    if meta.get(META_SOURCE):
        return meta[META_SOURCE]
    return f"loaded from {loaded.path.name}"
