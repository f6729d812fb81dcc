"""What vidtok's Hydra apps (``train.py``, ``evaluate.py``) and :func:`vidtok.config.compose_conf` share.

:func:`hydra_app` is the decorator of every entry point; :func:`allow_numeric_group_choices` lets config groups
whose options are numbers (``compression=488``) be chosen as users type them, on the command line, in ``-m``
sweeps, under ``accelerate launch`` and from Python.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
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


def hydra_app(config_name: str) -> Callable[[Callable], Callable]:
    """``@hydra.main`` for a vidtok app: the config ``conf/<config_name>.yaml`` from vidtok's config directory (the
    checkout's ``conf/`` or the installed package's), Hydra 1.3 semantics, numeric group choices accepted."""
    import hydra

    from .config import conf_dir

    allow_numeric_group_choices()
    return hydra.main(config_path=str(conf_dir()), config_name=config_name, version_base="1.3")
