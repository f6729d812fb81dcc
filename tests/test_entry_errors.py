"""Every entry point turns a user error into one line and exit status 2, never a traceback.

The entry points are the ``vidtok`` command and the three jobs (train / evaluate / encode, whose Hydra apps call
``train_from_hydra`` / ``evaluate_from_hydra`` / ``encode_from_hydra``). Two layers of proof: every error type of
``vidtok.errors`` raised inside each entry point comes out as one line (so a new error type cannot slip past one
entry point, as WeightsError once did past the ``vidtok`` command), and real bad inputs of each kind fed to each
entry point are refused that way, naming what was expected and what was found.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig
from videos import write_indexed_video

import vidtok
from vidtok import errors
from vidtok.cli import main as cli_main
from vidtok.composition import compose_conf
from vidtok.decoding.entry import decode_from_hydra
from vidtok.encoding.entry import encode_from_hydra
from vidtok.evaluation.entry import evaluate_from_hydra
from vidtok.io.weight_files import save_tokenizer_safetensors
from vidtok.training.run import compose_train_config, train_from_hydra

from conftest import REPO

NAME = "vidtok_kl_causal_488_4chn"


def _all_error_types() -> list[type[errors.VidtokError]]:
    found, pending = [], [errors.VidtokError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return sorted(set(found), key=lambda c: c.__name__)


ERROR_TYPES = _all_error_types()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Small inputs, good and bad: videos, an empty folder, a non-checkpoint, a tiny checkpoint, a non-video."""
    base = tmp_path_factory.mktemp("entry_errors")
    for i in range(2):
        write_indexed_video(base / "videos" / f"v{i}.mp4", frames=12, fps=24, height=32, width=32)
    (base / "empty").mkdir()
    (base / "not_a_checkpoint.ckpt").write_text("not a checkpoint")
    (base / "not_a_video.mp4").write_bytes(b"\x00" * 64)
    (base / "not_tokens.safetensors").write_text("{}")
    torch.manual_seed(0)
    tok = vidtok.load_tokenizer(NAME, overrides=["model.ch=4"], pretrained=False)
    save_tokenizer_safetensors(tok.state_dict(), tok.config, base / "tiny.safetensors")
    return {p.name.split(".")[0]: p for p in base.iterdir()} | {"base": base}


def _one_error_line(err: str, prog: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith(f"{prog}: error: ")]
    assert len(lines) == 1, f"expected one '{prog}: error:' line, got:\n{err}"
    return lines[0]


# ---- every error type, raised inside every entry point ---------------------------------------------------------


def _train_cfg(base: Path) -> DictConfig:
    return compose_train_config(["experiment=debug", f"data.path={base / 'videos'}", f"run_dir={base / 'run'}"])


def _encode_cfg() -> DictConfig:
    return compose_conf("encode", ["data.dir=v", "output.dir=o"], "the encode config")


@pytest.mark.parametrize("error", ERROR_TYPES, ids=[e.__name__ for e in ERROR_TYPES])
def test_every_error_type_is_one_line_and_status_2_at_every_entry_point(
    error: type[errors.VidtokError], files: dict[str, Path], monkeypatch, capsys
) -> None:
    message = f"{error.__name__} for the test: expected this,\nfound that"

    def fail(*args, **kwargs):
        raise error(message)

    monkeypatch.setattr("vidtok.cli.cmd_config", fail)
    assert cli_main(["config", NAME]) == 2
    assert _one_error_line(capsys.readouterr().err, "vidtok config").endswith("expected this, found that")

    jobs = [
        ("train", "vidtok.training.run.train", train_from_hydra, _train_cfg(files["base"])),
        ("evaluate", "vidtok.evaluation.entry.evaluate", evaluate_from_hydra, compose_conf("eval", ["data.dir=v"], "")),
        ("encode", "vidtok.encoding.entry.encode_dataset", encode_from_hydra, _encode_cfg()),
        (
            "decode",
            "vidtok.decoding.entry.decode_dataset",
            decode_from_hydra,
            compose_conf("decode", ["data.dir=v", "output.dir=o"], "the decode config"),
        ),
    ]
    for prog, target, entry, cfg in jobs:
        monkeypatch.setattr(target, fail)
        with pytest.raises(SystemExit) as stop:
            entry(cfg)
        assert stop.value.code == 2, prog
        assert _one_error_line(capsys.readouterr().err, prog).endswith("expected this, found that")


def test_a_bug_keeps_its_traceback(monkeypatch) -> None:
    """Only user errors are turned into a line: anything else is a bug and propagates."""

    def bug(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr("vidtok.cli.cmd_config", bug)
    with pytest.raises(KeyError):
        cli_main(["config", NAME])


# ---- real bad inputs, one of each kind, at each entry point ----------------------------------------------------


def _cli_cases(f: dict[str, Path]) -> list[tuple[list[str], str, str]]:
    out = str(f["base"] / "out.mp4")
    tiny = ["--ckpt", str(f["tiny"])]
    video = str(f["videos"] / "v0.mp4")
    return [
        (["config", "not_a_tokenizer"], "ConfigError", "unknown tokenizer 'not_a_tokenizer'"),
        (["convert", str(f["not_a_checkpoint"]), out, "--tokenizer", NAME], "CheckpointError", "not a checkpoint"),
        (["download", "vidtok_kl_causal_444_4chn", "-q"], "HubError", "checkpoints/vidtok_kl_causal_444_4chn.ckpt"),
        (["reconstruct", video, out, *tiny, "--tile", "12"], "InputError", "tile must be a positive multiple of 8"),
        (["reconstruct", str(f["not_a_video"]), out, *tiny], "VideoError", "cannot read video"),
        (["decode", str(f["not_tokens"]), out], "TokenFileError", "not_tokens.safetensors"),
        (["shards", str(f["empty"]), str(f["base"] / "s" / "t-%06d.tar")], "DataSourceError", "empty"),
        (["shards", str(f["videos"]), str(f["base"] / "s" / "no-field.tar")], "ShardWriterError", "%"),
        (
            ["export-diffusers", "--tokenizer", NAME, "--random-weights", "-o", "model.ch=4", str(f["base"] / "d")],
            "ExportError",
            "--force",
        ),
    ]


def test_the_vidtok_command_refuses_each_kind_of_bad_input_in_one_line(files: dict[str, Path], capsys) -> None:
    seen = set()
    for argv, kind, fragment in _cli_cases(files):
        assert cli_main(argv) == 2, argv
        line = _one_error_line(capsys.readouterr().err, f"vidtok {argv[0]}")
        assert fragment in line, (argv, line)
        seen.add(kind)
    assert not (files["base"] / "out.mp4").exists()
    assert len(seen) == 9


def _job_exit(entry, cfg, prog: str, capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        entry(cfg)
    assert stop.value.code == 2, prog
    return _one_error_line(capsys.readouterr().err, prog)


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["data.path=null"], "data.path"),  # ConfigError
        (["data.path={empty}"], "{empty}"),  # DataSourceError
        (["init_from={not_a_checkpoint}"], "not a checkpoint"),  # CheckpointError
        (["train.mixed_precision=fp16"], "fp16 needs a CUDA"),  # TrainingError
        (["loss.perceptual_weight=1.0"], "vgg16"),  # WeightsError: LPIPS' VGG16 is not on this machine
    ],
    ids=["config", "data", "checkpoint", "training", "weights"],
)
def test_train_refuses_each_kind_of_bad_input_in_one_line(
    overrides: list[str], fragment: str, files: dict[str, Path], tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no VGG16 weights here
    named = {k: str(v) for k, v in files.items()}
    overrides = [o.format(**named) for o in overrides]
    cfg = compose_train_config(
        ["experiment=debug", f"data.path={files['videos']}", f"run_dir={tmp_path / 'run'}", *overrides]
    )
    line = _job_exit(train_from_hydra, cfg, "train", capsys)
    assert fragment.format(**named).lower() in line.lower(), line


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["data.dir={videos}"], "ckpt must name the checkpoint"),  # ConfigError
        (["ckpt={not_a_checkpoint}", "tokenizer=" + NAME, "data.dir={videos}"], "not a checkpoint"),
        (["ckpt={tiny}", "data.dir={empty}"], "{empty}"),  # DataSourceError
        (["ckpt={tiny}", "data.dir={videos}", "tile=12"], "tile must be a positive multiple of 8"),
    ],
    ids=["config", "checkpoint", "data", "input"],
)
@pytest.mark.parametrize("job", ["evaluate", "encode"])
def test_evaluate_and_encode_refuse_each_kind_of_bad_input_in_one_line(
    job: str, overrides: list[str], fragment: str, files: dict[str, Path], tmp_path: Path, capsys
) -> None:
    named = {k: str(v) for k, v in files.items()}
    overrides = [o.format(**named) for o in overrides] + ["height=32", "width=32"]
    if job == "evaluate":
        cfg = compose_conf("eval", [*overrides, f"output.dir={tmp_path / 'out'}", "metrics.lpips=false"], "eval")
        line = _job_exit(evaluate_from_hydra, cfg, "evaluate", capsys)
    else:
        cfg = compose_conf("encode", [*overrides, f"output.dir={tmp_path / 'out'}"], "encode")
        line = _job_exit(encode_from_hydra, cfg, "encode", capsys)
    assert fragment.format(**named) in line, line


@pytest.mark.slow
@pytest.mark.parametrize(
    "command, prog",
    [
        (["-m", "vidtok.train", "experiment=debug"], "train"),
        (["encode.py", "data.dir=videos/", "output.dir=out/"], "encode"),
        (["-m", "vidtok.decode", "output.dir=out/"], "decode"),  # data.dir missing
    ],
)
def test_the_real_commands_exit_with_status_2(command: list[str], prog: str, tmp_path: Path) -> None:
    """As the shell sees them (the Hydra app lets the exit through): status 2, one line, no traceback."""
    args = [str(REPO / command[0]) if command[0].endswith(".py") else command[0], *command[1:]]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr[-3000:]
    _one_error_line(run.stderr, prog)
