"""benchmarks/device_check.py: the GPU checks, kept working by running them at tiny sizes on the CPU."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import fixture_dirs

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ["parity", "inference", "training", "resume", "multi-gpu", "compile"]


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    words = shlex.split(command)
    assert words[0] == "python"
    return subprocess.run([sys.executable, *words[1:]], cwd=cwd, capture_output=True, text=True, timeout=900)


def _report(folder: Path) -> dict:
    return json.loads((folder / "device_check.json").read_text())


def _tiny(out: Path, extra: str, returncode: int = 0) -> dict:
    """``device_check.py --device cpu --tiny --out OUT EXTRA`` in the checkout; its report."""
    done = _run(f"python benchmarks/device_check.py --device cpu --tiny --out {out} {extra}", REPO)
    assert done.returncode == returncode, done.stdout[-2000:] + done.stderr[-2000:]
    return _report(out)


@pytest.mark.slow
def test_the_readme_cpu_command_passes_every_section(tmp_path: Path) -> None:
    """The command as the README shows it, typed in a folder where benchmarks/ is this checkout's."""
    command = "python benchmarks/device_check.py --device cpu --tiny --out device_check/"
    assert command in " ".join((REPO / "README.md").read_text().split())
    (tmp_path / "benchmarks").symlink_to(REPO / "benchmarks")
    done = _run(command, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "device_check"
    report = _report(out)
    assert list(report["sections"]) == SECTIONS
    for name, section in report["sections"].items():
        assert section["status"] == "pass", (name, section)
    rows = {r["check"]: r for s in report["sections"].values() for r in s["rows"]}
    assert rows["4 steps fp16"]["status"] == "skipped" and "needs a GPU" in rows["4 steps fp16"]["reason"]
    assert rows["save at the half, resume"]["max_rel_diff"] == 0
    timed = [r for r in rows.values() if "tflops" in r]
    assert len(timed) == 8 and all(r["tflops"] > 0 and r["frames_per_s"] > 0 for r in timed)
    assert sum(1 for r in timed if r.get("compile_backend")) == 2
    table = (out / "device_check.md").read_text()
    assert report["machine"]["backend"] == "CPU" and "## multi-gpu: pass" in table
    # typed in another folder, it still finds the reference fixtures beside the checkout (and says which it used)
    references = {r["reference"] for r in report["sections"]["parity"]["rows"]}
    if fixture_dirs():
        assert references == {f"fixture {d} (the original, CPU fp32)" for d in fixture_dirs()}, references
    else:
        assert all(r.startswith("stand-in") for r in references), references


def test_a_broken_fixture_fails_its_section_and_the_next_one_runs(tmp_path: Path) -> None:
    fixtures = tmp_path / "fixtures" / "vidtok_kl_causal_488_4chn"
    fixtures.mkdir(parents=True)
    meta = {"name": "vidtok_kl_causal_488_4chn", "overrides": ["model.ch=4"]}
    (fixtures / "meta.json").write_text(json.dumps(meta))
    (fixtures / "model.ckpt").write_bytes(b"not a checkpoint")
    report = _tiny(tmp_path / "out", f"--fixtures {tmp_path / 'fixtures'} --sections parity resume", returncode=1)
    assert report["sections"]["parity"]["status"] == "fail"
    assert "model.ckpt" in report["sections"]["parity"]["error"]
    assert report["sections"]["resume"]["status"] == "pass"
    assert "## parity: fail" in (tmp_path / "out" / "device_check.md").read_text()


def test_stand_ins_without_fixtures_and_a_spent_budget(tmp_path: Path) -> None:
    report = _tiny(tmp_path / "a", f"--sections parity --fixtures {tmp_path / 'none'}")
    rows = report["sections"]["parity"]["rows"]
    assert len(rows) == 12 and all(r["status"] == "pass" for r in rows)
    assert all("stand-in" in r["reference"] for r in rows) and any("stand-ins" in n for n in report["notes"])
    for section in _tiny(tmp_path / "b", "--budget-s 0 --sections training resume multi-gpu")["sections"].values():
        assert section["status"] == "skipped"
        assert all(r["reason"] == "time budget spent" for r in section["rows"])
