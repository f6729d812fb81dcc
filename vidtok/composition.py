"""Hydra composition of vidtok's configs: where they are ([`conf_dir`][]), the 23 official presets
([`official_names`][], [`compose_tokenizer_config`][]), composing any config outside a Hydra app
([`compose_conf`][]), and reading overrides as users type them ([`allow_numeric_group_choices`][],
[`quote_brace_patterns`][]), which the Hydra apps ([`vidtok.hydra_app`][]) install too.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from .config import TokenizerConfig
from .errors import ConfigError

_INSTALLED = False


def _numeric_choice(override: Any) -> bool:
    value = override._value
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def allow_numeric_group_choices() -> None:
    """Read a number given to a config group as the option it was typed as (``compression=488`` -> ``'488'``).

    Hydra's override grammar parses an unquoted ``488`` as an int, and its defaults list then refuses it as a group
    choice ("Config group override must be a string or a list. Got int"); only ``compression="'488'"`` worked.
    Hydra has no public hook between parsing and the defaults list, so this wraps the one constructor that every
    composition goes through (apps, multirun jobs, whose overrides the sweeper re-renders unquoted, ``compose``)
    and only changes what Hydra would otherwise refuse: a plain int or float given to an existing group. Idempotent.
    """
    global _INSTALLED
    if _INSTALLED:
        return
    from hydra._internal import defaults_list

    original = defaults_list.Overrides.__init__

    @functools.wraps(original)
    def __init__(self, repo, overrides_list):  # noqa: N807 - the wrapped constructor's own name
        for override in overrides_list:
            if (
                not override.is_sweep_override()
                and _numeric_choice(override)
                and repo.group_exists(override.key_or_group)
            ):
                override._value = override.get_value_string().strip()
        original(self, repo, overrides_list)

    defaults_list.Overrides.__init__ = __init__
    _INSTALLED = True


# a brace range or choice as webdataset and the shell write them: {000..099}, {a,b}
_BRACES = re.compile(r"\{[^{}]*(\.\.|,)[^{}]*\}")
_OVERRIDE = re.compile(r"^([+~]{0,2}[\w.@/-]+)=(.*)$", re.S)


def quote_brace_patterns(overrides: Sequence[str]) -> list[str]:
    """Quote override values that hold shard brace patterns (``data.path=s/train-{000..099}.tar``), which Hydra's
    grammar would otherwise read as a dict and refuse; quoted, or with interpolations (``${...}``), lists, dicts
    and values holding quotes are left as they are."""
    out = []
    for override in overrides:
        m = _OVERRIDE.match(override)
        if m:
            key, value = m.groups()
            plain = not value.startswith(("{", "[", "'", '"')) and "${" not in value and not set("'\"") & set(value)
            if plain and _BRACES.search(value):
                override = f"{key}='{value}'"
        out.append(override)
    return out


def conf_dir() -> Path:
    """The Hydra config directory: ``vidtok/conf`` in an installed package, ``conf/`` in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "tokenizer").is_dir():
            return candidate
    raise FileNotFoundError(f"vidtok's config directory was not found next to {here} (looked for conf/tokenizer/)")


def official_names() -> list[str]:
    """Names of the presets in ``conf/tokenizer/`` (the 23 official VidTok checkpoints)."""
    return sorted(p.stem for p in (conf_dir() / "tokenizer").glob("*.yaml"))


def _strip_plus(override: str) -> str:
    return override.lstrip("+")


def compose_tokenizer_config(name: Optional[str] = None, overrides: Sequence[str] = ()) -> TokenizerConfig:
    """Compose a [`TokenizerConfig`][] from a preset name (or a YAML/JSON file) and Hydra overrides.

    ``name`` is an official checkpoint name such as ``vidtok_kl_causal_488_4chn``, a path to a config
    file holding a full tokenizer config (as written by ``vidtok config`` or saved in a run), or
    ``None`` for the defaults of each group. ``overrides`` are Hydra override strings such as
    ``model.ch=16`` or ``regularizer=fsq``.
    """
    overrides = list(overrides)
    if name is not None and _looks_like_path(name):
        return _config_from_file(Path(name), overrides)
    if name is not None and name not in official_names():
        raise ConfigError(
            f"unknown tokenizer {name!r}: expected one of the official names ({', '.join(official_names())}) "
            "or the path of a config file"
        )
    preset = [f"tokenizer={name}"] if name is not None else []
    cfg = compose_conf("tokenizer_base", preset + overrides, f"tokenizer {name!r} with overrides {overrides}")
    return TokenizerConfig.from_any(cfg)


def compose_conf(config_name: str, overrides: Sequence[str], what: str) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with Hydra overrides outside a Hydra app (any global Hydra
    state of a running app is restored afterwards); ConfigError saying "cannot compose <what>" on failure."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    allow_numeric_group_choices()
    overrides = quote_brace_patterns(overrides)
    backup = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(conf_dir()), version_base="1.3"):
            return compose(config_name, overrides=list(overrides))
    except (HydraException, ValueError) as err:
        raise ConfigError(f"cannot compose {what}: {err}") from err
    finally:
        restore_gh_from_backup(backup)


def _looks_like_path(name: str) -> bool:
    return name.endswith((".yaml", ".yml", ".json")) or "/" in name or Path(name).is_file()


def _config_from_file(path: Path, overrides: list[str]) -> TokenizerConfig:
    if not path.is_file():
        raise ConfigError(f"tokenizer config file {path} does not exist")
    try:
        data = json.loads(path.read_text()) if path.suffix == ".json" else OmegaConf.load(path)
    except Exception as err:
        raise ConfigError(f"cannot read tokenizer config file {path}: {err}") from err
    base = OmegaConf.create(OmegaConf.to_container(data, resolve=True) if isinstance(data, DictConfig) else data)
    tokenizer_keys = {f.name for f in dataclasses.fields(TokenizerConfig)}
    if {"model", "compression", "regularizer"} <= set(base.keys()):
        # a saved run config holds the tokenizer groups beside data, optimiser and logging groups
        base = OmegaConf.masked_copy(base, [k for k in base.keys() if k in tokenizer_keys])
    try:
        merged = OmegaConf.merge(base, OmegaConf.from_dotlist([_strip_plus(o) for o in overrides]))
    except Exception as err:
        raise ConfigError(f"cannot apply overrides {overrides} to {path}: {err}") from err
    return TokenizerConfig.from_any(merged)
