"""The Hydra apps take numeric group options as users type them: ``compression=488``, unquoted, everywhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def run(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "ACCELERATE_USE_CPU": "1", **(env or {})}
    proc = subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.parametrize(
    ("compression", "factors"), [("488", (4, 8)), ("41616", (4, 16)), ("444", (4, 4)), ("288", (2, 8)), ("888", (8, 8))]
)
def test_train_cfg_job_takes_unquoted_compression(tmp_path: Path, compression: str, factors: tuple) -> None:
    out = run(
        [sys.executable, str(REPO / "train.py"), "regularizer=fsq", f"compression={compression}", "--cfg", "job"],
        tmp_path,
    )
    cfg = yaml.safe_load(out.stdout)
    assert (cfg["compression"]["temporal"], cfg["compression"]["spatial"]) == factors
    assert cfg["regularizer"]["kind"] == "fsq"


def test_evaluate_cfg_job_takes_unquoted_compression(tmp_path: Path) -> None:
    args = ["ckpt=m.ckpt", "data.dir=videos", "model=noncausal", "compression=41616", "regularizer=kl", "--cfg", "job"]
    cfg = yaml.safe_load(run([sys.executable, str(REPO / "evaluate.py"), *args], tmp_path).stdout)
    assert cfg["compression"]["spatial"] == 16 and cfg["model"]["causal"] is False


def test_numbers_given_to_plain_keys_stay_numbers(tmp_path: Path) -> None:
    args = ["compression=444", "train.max_steps=7", "data.num_frames=9", "--cfg", "job"]
    cfg = yaml.safe_load(run([sys.executable, str(REPO / "train.py"), *args], tmp_path).stdout)
    assert cfg["train"]["max_steps"] == 7 and cfg["data"]["num_frames"] == 9


def test_multirun_lists_of_numeric_choices_run_every_job(tmp_path: Path) -> None:
    args = ["-m", "compression=488,444", "regularizer=kl,fsq", "data.path=videos", "dry_run=true"]
    out = run([sys.executable, str(REPO / "train.py"), *args], tmp_path).stdout
    described = [line for line in out.splitlines() if line.startswith("dry run")]
    assert len(described) == 4, out
    for factors, latent in (
        ("4x8x8", "KL 4 ch"),
        ("4x8x8", "FSQ 262144"),
        ("4x4x4", "KL 4 ch"),
        ("4x4x4", "FSQ 262144"),
    ):
        assert any(f"{factors} {latent}" in line for line in described), (factors, latent, described)


def test_sweep_config_lists_numeric_choices_unquoted(tmp_path: Path) -> None:
    args = ["-m", "--config-dir", str(REPO / "sweeps"), "--config-name", "regularizer_x_compression"]
    out = run([sys.executable, str(REPO / "train.py"), *args, "data.path=v", "dry_run=true"], tmp_path).stdout
    assert sum(line.startswith("dry run") for line in out.splitlines()) == 4, out


def test_accelerate_launch_passes_numeric_choices_through(tmp_path: Path) -> None:
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1"]
    out = run([*launch, str(REPO / "train.py"), "regularizer=fsq", "compression=488", "--cfg", "job"], tmp_path)
    cfg = yaml.safe_load(out.stdout[out.stdout.index("model:") :])
    assert cfg["compression"]["spatial"] == 8 and cfg["regularizer"]["kind"] == "fsq"


def test_python_composition_takes_unquoted_compression() -> None:
    from vidtok.composition import compose_tokenizer_config
    from vidtok.training.run import compose_train_config

    assert compose_tokenizer_config(overrides=["compression=41616", "regularizer=fsq"]).factors == (4, 16, 16)
    cfg = compose_train_config(["compression=288", "data.path=v", "run_dir=r"])
    assert cfg.compression.temporal == 2


def test_an_unknown_numeric_choice_names_the_group(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "compression=489", "--cfg", "job"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "compression/489" in proc.stderr and "Got int" not in proc.stderr


def test_shard_brace_patterns_are_taken_as_typed(tmp_path: Path) -> None:
    pattern = "shards/train-{000000..000099}.tar"
    out = run([sys.executable, str(REPO / "train.py"), "data=shards", f"data.path={pattern}", "--cfg", "job"], tmp_path)
    assert yaml.safe_load(out.stdout)["data"]["path"] == pattern
    args = ["-m", "data=shards", f"data.path={pattern}", "regularizer=kl,fsq", "dry_run=true"]
    out = run([sys.executable, str(REPO / "train.py"), *args], tmp_path).stdout
    assert out.count(f"on shards {pattern} ") == 2, out

    from vidtok.training.run import compose_train_config

    assert compose_train_config(["data=shards", f"data.path={pattern}", "run_dir=r"]).data.path == pattern


def test_brace_quoting_leaves_other_values_alone() -> None:
    from vidtok.composition import quote_brace_patterns

    given = [
        "data.path=a-{0..9}.tar",
        "+x=b-{x,y}.tar",
        "hydra.run.dir=runs/${now:%H}",
        "data.path='c-{0..1}.tar'",
        "model={ch: 8}",
        "regularizer=kl,fsq",
        "plain=1",
    ]
    assert quote_brace_patterns(given) == [
        "data.path='a-{0..9}.tar'",
        "+x='b-{x,y}.tar'",
        *given[2:],
    ]
