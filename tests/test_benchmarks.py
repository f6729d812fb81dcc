"""The dataset-job benchmarks run as their docs show them, on a narrow model (the figures themselves come from the
full-width runs the docs quote; here: the scripts work and print their table)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO


def _run(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=REPO / "benchmarks", capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_encode_benchmark_prints_the_job_beside_the_model_and_the_statistics_share() -> None:
    out = _run("encode.py", "--width", "8", "--videos", "2", "--source", "40", "--size", "32", "--threads", "1")
    header, row = out.strip().splitlines()[-2:]
    assert header.split() == ["workers", "frames", "job", "s", "job", "f/s", "model", "f/s", "share", "stats"]
    assert row.split()[0] == "0" and row.split()[1] == "68" and row.endswith("%")


@pytest.mark.slow
def test_decode_benchmark_prints_the_job_beside_the_decoder() -> None:
    out = _run("decode.py", "--width", "8", "--samples", "2", "--size", "32", "--threads", "1")
    header, row = out.strip().splitlines()[-2:]
    assert header.split() == ["frames", "job", "s", "job", "f/s", "decoder", "f/s", "share"]
    assert row.split()[0] == "34" and row.endswith("%")
