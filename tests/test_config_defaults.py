"""Defaults live in the config dataclasses; the YAML files Hydra composes must say the same (so a Python user
and a command-line user get one behaviour). Group files that exist to change a value (a data source, a preset)
list it in CHOICES."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from vidtok.data.config import DataConfig
from vidtok.decoding import DecodeConfig
from vidtok.encoding import EncodeConfig
from vidtok.evaluation.config import EvalConfig
from vidtok.losses import LossConfig
from vidtok.training.config import CheckpointConfig, LoopConfig, OptimConfig, ValidationConfig

from conftest import REPO

CONF = REPO / "conf"

# (file, section or None, class, the keys that file exists to choose)
FILES = [
    ("eval.yaml", None, EvalConfig, {"metrics.detector_sha256"}),  # 'default' names the class's I3D hash
    ("encode.yaml", None, EncodeConfig, set()),
    ("decode.yaml", None, DecodeConfig, set()),
    ("data/folder.yaml", None, DataConfig, set()),
    ("data/csv.yaml", None, DataConfig, {"source"}),
    ("data/shards.yaml", None, DataConfig, {"source"}),
    ("loss/vidtok.yaml", None, LossConfig, set()),
    ("optim/adam.yaml", None, OptimConfig, set()),
    ("train.yaml", "train", LoopConfig, set()),
    ("train.yaml", "checkpoint", CheckpointConfig, set()),
    ("train.yaml", "validation", ValidationConfig, set()),
]


def _differences(cls: type, values: dict, prefix: str = "") -> list[str]:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out = []
    for key, value in values.items():
        if key in ("defaults", "hydra"):
            continue
        if key not in fields:
            out.append(f"{prefix}{key}: in the YAML, not a field of {cls.__name__}")
            continue
        f = fields[key]
        default = f.default_factory() if callable(f.default_factory) else f.default
        if dataclasses.is_dataclass(default):
            out += _differences(type(default), value or {}, f"{prefix}{key}.")
        elif value != "???" and not (isinstance(value, str) and "${" in value) and value != default:
            out.append(f"{prefix}{key}: YAML {value!r}, {cls.__name__} {default!r}")
    return out


@pytest.mark.parametrize(("name", "section", "cls", "choices"), FILES, ids=[f"{f[0]}:{f[1]}" for f in FILES])
def test_yaml_defaults_match_the_dataclasses(name: str, section, cls: type, choices: set) -> None:
    values = OmegaConf.to_container(OmegaConf.load(CONF / name), resolve=False)
    values = values[section] if section else values
    found = [d for d in _differences(cls, values) if d.split(":")[0] not in choices]
    assert not found, f"conf/{name} and {cls.__name__} disagree: " + "; ".join(found)


def test_the_check_sees_a_difference(tmp_path: Path) -> None:
    assert _differences(LossConfig, {"disc_start": 5, "disc_weight": 0.2}) == ["disc_start: YAML 5, LossConfig 10001"]
    assert _differences(EvalConfig, {"metrics": {"lpips": False}}) == ["metrics.lpips: YAML False, MetricsConfig True"]
