"""What vidtok's Hydra apps (``train.py``, ``evaluate.py``) and :func:`vidtok.config.compose_conf` share.

:func:`hydra_app` is the decorator of every entry point; :func:`allow_numeric_group_choices` lets config groups
whose options are numbers (``compression=488``) be chosen as users type them, on the command line, in ``-m``
sweeps, under ``accelerate launch`` and from Python.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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
    """The Hydra config directory: ``vidtok/conf`` in an installed wheel, ``conf/`` in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "tokenizer").is_dir():
            return candidate
    raise FileNotFoundError(f"vidtok's config directory was not found next to {here} (looked for conf/tokenizer/)")


def hydra_app(config_name: str) -> Callable[[Callable], Callable]:
    """``@hydra.main`` for a vidtok app: the config ``conf/<config_name>.yaml`` from vidtok's config directory (the
    checkout's ``conf/`` or the installed package's), Hydra 1.3 semantics, numeric group choices accepted, and shard
    brace patterns taken as typed (:func:`quote_brace_patterns` on the command line)."""
    import hydra

    allow_numeric_group_choices()
    main = hydra.main(config_path=str(conf_dir()), config_name=config_name, version_base="1.3")

    def decorate(task: Callable) -> Callable:
        app = main(task)

        @functools.wraps(task)
        def entry(*args: Any, **kwargs: Any) -> Any:
            sys.argv[1:] = quote_brace_patterns(sys.argv[1:])
            return app(*args, **kwargs)

        return entry

    return decorate
