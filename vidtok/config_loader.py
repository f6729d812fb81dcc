"""The one config loader: a typed dataclass config from a mapping, an OmegaConf node or JSON text, unknown keys
refused by their dotted name ([`build_config`][]), and a Hydra-composed config as plain values
([`composed_values`][]). Every config of the package (tokenizer, data, training, evaluation, encoding) is built
through it, so a typo in any key fails the same way, before anything runs.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from .errors import ConfigError


def composed_values(cfg: Any, example: str) -> dict:
    """A Hydra-composed config as plain values, resolved; a missing ``???`` key or a bad interpolation is a
    ConfigError (``example``: the keys to show with a missing one, e.g. ``"data.dir=videos/"``)."""
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as err:
        raise ConfigError(f"{err.full_key} must be given (e.g. {example})") from None
    except OmegaConfBaseException as err:
        raise ConfigError(str(err).splitlines()[0]) from None


def build_config(cls: type, data: Any, name: str = "", *, typed: bool = False, validate: bool = True) -> Any:
    """The one config loader: a ``cls`` dataclass from an instance of it, a mapping, an OmegaConf node, JSON
    text or None (all defaults). Nested dataclass fields are built the same way; unknown keys are refused by
    their dotted name (``ConfigError``); ``typed`` also checks and converts value types against the field
    annotations (OmegaConf's structured merge); the result is validated when the class has ``validate()``."""
    what = name or cls.__name__
    if isinstance(data, cls):
        built = data
    else:
        if data is None:
            data = {}
        elif isinstance(data, str):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as err:
                raise ConfigError(f"{what}: cannot read the JSON text: {err}") from None
        elif isinstance(data, DictConfig):
            data = OmegaConf.to_container(data, resolve=True)
        _check_keys(cls, data, f"{name}." if name else "", f"{name} " if name else "")
        if typed:
            try:
                built = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), data))
            except Exception as err:  # omegaconf raises several types; all mean a bad value or key
                raise ConfigError(f"invalid {what} config: {err}") from err
        else:
            built = _construct(cls, data, f"{name}." if name else "")
    return built.validate() if validate and hasattr(built, "validate") else built


def _nested_class(f: dataclasses.Field) -> Optional[type]:
    if callable(f.default_factory):
        default = f.default_factory()
        if dataclasses.is_dataclass(default):
            return type(default)
    return None


def _check_keys(cls: type, data: Any, prefix: str, kind: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__} must be a mapping, got {data!r}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"unknown {kind}option(s) {[prefix + k for k in unknown]}; known: {sorted(known)}")
    for key, value in data.items():
        nested = _nested_class(known[key])
        if nested is not None and value is not None and not isinstance(value, nested):
            _check_keys(nested, value, f"{prefix}{key}.", kind)


def _construct(cls: type, data: dict, prefix: str) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        nested = _nested_class(known[key])
        if nested is not None and not isinstance(value, nested):
            value = _construct(nested, value or {}, f"{prefix}{key}.")
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"bad {prefix.rstrip('.') or cls.__name__} config: {err}") from None
