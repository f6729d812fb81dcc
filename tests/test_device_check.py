"""benchmarks/device_check.py and the command a lent GPU machine runs (benchmarks/device_run.sh), kept working by
running them at tiny sizes on the CPU: the latter in an environment that holds only the GPU image's packages and
the carried folder, as the lent machine does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest

from conftest import fixture_dirs

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ["parity", "inference", "training", "resume", "multi-gpu", "compile"]
sys.path.insert(0, str(REPO / "benchmarks"))

import device_carry  # noqa: E402


def _report(folder: Path) -> dict:
    return json.loads((folder / "device_check.json").read_text())


def _tiny(out: Path, *extra: str, returncode: int = 0) -> dict:
    """``device_check.py --device cpu --tiny --out OUT EXTRA`` in the checkout; its report."""
    command = [sys.executable, "benchmarks/device_check.py", "--device", "cpu", "--tiny", "--out", str(out), *extra]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == returncode, done.stdout[-2000:] + done.stderr[-2000:]
    return _report(out)


@pytest.fixture(scope="module")
def image_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh interpreter (this machine's Python) that sees only the GPU image's packages, as installed here."""
    root = tmp_path_factory.mktemp("image")
    names = device_carry.link_image_packages(root / "site")
    assert "torch" in names and "hydra-core" not in names and "av" not in names
    venv.create(root / "env", with_pip=False, symlinks=True)
    (site,) = (root / "env").glob("lib/python*/site-packages")
    (site / "image.pth").write_text(str(root / "site") + "\n")
    return root / "env" / "bin" / "python3"


def _environment(image_python: Path, **extra: str) -> dict[str, str]:
    keep = ("HOME", "LANG", "TMPDIR", "HF_HUB_OFFLINE", "HF_HUB_CACHE", "HF_HOME", "VIDTOK_CACHE")
    env = {k: v for k, v in os.environ.items() if k in keep}
    return {**env, "PATH": f"{image_python.parent}:/usr/bin:/bin", "OMP_NUM_THREADS": "2", **extra}


def test_the_image_stand_in_lacks_what_the_carried_folder_brings(image_python: Path) -> None:
    """The environment below is as bare as the lent machine: without the carried wheels, vidtok cannot start."""
    done = subprocess.run([str(image_python), "-c", "import vidtok"], cwd=REPO, env=_environment(image_python),
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode != 0 and "No module named" in done.stderr, done.stderr[-1000:]
    found = subprocess.run([str(image_python), "-c", "import torch, accelerate, einops; print('ok')"],
                           env=_environment(image_python), capture_output=True, text=True)  # fmt: skip
    assert found.stdout.strip() == "ok", found.stderr[-1000:]


def test_the_carried_set_is_what_vidtok_needs_beyond_the_image() -> None:
    missing = device_carry.missing_packages(device_carry.image_packages())
    assert {"hydra-core", "omegaconf", "antlr4-python3-runtime", "av", "webdataset", "braceexpand", "lpips"} == set(
        missing
    )
    assert "torch" not in missing and "numpy" not in missing  # the image's own, and required by a missing one


@pytest.mark.slow
def test_the_device_command_passes_every_section_with_only_the_image_and_the_carried_folder(
    image_python: Path, tmp_path: Path
) -> None:
    """``bash benchmarks/device_run.sh`` as the device tool runs it (plus ``--device cpu --tiny``), after
    ``device_carry.py`` filled the carried folder for this machine's Python and platform: every section passes, so
    no package is missing from the carried set and the check finds the fixtures and the clip that travel with it."""
    carry = tmp_path / "carry"
    filled = subprocess.run([sys.executable, "benchmarks/device_carry.py", "--local", "--dest", str(carry)], cwd=REPO,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert filled.returncode == 0, filled.stdout[-2000:] + filled.stderr[-2000:]
    assert "MiB (wheels" in filled.stdout
    out = tmp_path / "out"
    env = _environment(image_python, OUT=str(out), VIDTOK_CARRY=str(carry), VIDTOK_SITE=str(tmp_path / "site"))
    done = subprocess.run(["bash", "benchmarks/device_run.sh", "--device", "cpu", "--tiny"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = _report(out)
    assert list(report["sections"]) == SECTIONS and report["state"] == "finished"
    for name, section in report["sections"].items():
        assert section["status"] == "pass", (name, section)
    rows = {r["check"]: r for s in report["sections"].values() for r in s["rows"]}
    assert rows["4 steps fp16"]["status"] == "skipped" and "needs a GPU" in rows["4 steps fp16"]["reason"]
    assert rows["save at the half, resume"]["max_rel_diff"] == 0
    assert rows["2-process gradient sync"]["rng_states_of_both_ranks"] is True
    timed = [r for r in rows.values() if "tflops" in r]
    assert len(timed) == 6 and all(r["tflops"] > 0 and r["frames_per_s"] > 0 for r in timed)
    assert all(r["status"] == "skipped" and "needs a GPU" in r["reason"] for n, r in rows.items() if " fp16 17x" in n)
    compiled = [r for r in timed if r.get("compile_backend")]
    assert len(compiled) == 2 and all(r["graphs"] == 2 and r["graph_breaks"] == 0 for r in compiled), compiled
    # fp32 runs the fused inference forms, autocast the general ones: more work for the same pass
    v11 = {r["check"].split()[1]: r["gflop"] for r in timed if "v1_1" in r["check"]}
    assert v11["bf16"] > v11["fp32"] and v11["compile+bf16"] == v11["bf16"]
    assert report["machine"]["backend"] == "CPU" and "## multi-gpu: pass" in (out / "device_check.md").read_text()
    references = {r["reference"] for r in report["sections"]["parity"]["rows"]}
    if fixture_dirs():  # the carried copies, not ../shared
        assert all(r.startswith(f"fixture {carry / 'fixtures'}") for r in references), references
    else:
        assert all(r.startswith("stand-in") for r in references), references


def test_a_broken_fixture_fails_its_section_and_the_next_one_runs(tmp_path: Path) -> None:
    fixtures = tmp_path / "fixtures" / "vidtok_kl_causal_488_4chn"
    fixtures.mkdir(parents=True)
    meta = {"name": "vidtok_kl_causal_488_4chn", "overrides": ["model.ch=4"]}
    (fixtures / "meta.json").write_text(json.dumps(meta))
    (fixtures / "model.ckpt").write_bytes(b"not a checkpoint")
    report = _tiny(tmp_path / "out", "--fixtures", str(tmp_path / "fixtures"), "--sections", "parity", "training",
                   returncode=1)  # fmt: skip
    assert report["sections"]["parity"]["status"] == "fail"
    assert "model.ckpt" in report["sections"]["parity"]["error"]
    assert report["sections"]["training"]["status"] == "pass"
    assert "## parity: fail" in (tmp_path / "out" / "device_check.md").read_text()


def test_stand_ins_without_fixtures_and_checks_that_would_overrun_the_budget(tmp_path: Path) -> None:
    report = _tiny(tmp_path / "a", "--sections", "parity", "--fixtures", str(tmp_path / "none"))
    rows = report["sections"]["parity"]["rows"]
    assert len(rows) == 12 and all(r["status"] == "pass" for r in rows)
    assert all("stand-in" in r["reference"] for r in rows) and any("stand-ins" in n for n in report["notes"])
    # 15 s leave room for a training row (6 s, tiny) but not for a resume check (20 s)
    report = _tiny(tmp_path / "b", "--budget-s", "15", "--sections", "resume", "training")
    sections = report["sections"]
    (row,) = sections["resume"]["rows"]
    assert row["status"] == "skipped" and row["reason"].startswith("time budget: ") and row["reason"].endswith(" s")
    assert sections["training"]["rows"][0]["status"] == "pass"


def test_a_run_stopped_by_sigterm_keeps_every_finished_check_in_both_reports(tmp_path: Path) -> None:
    """The report is on disk after every check; SIGTERM (the device tool's time limit) ends the check in progress,
    marks it cut off and writes both files once more."""
    out = tmp_path / "out"
    command = [sys.executable, "benchmarks/device_check.py", "--device", "cpu", "--tiny", "--out", str(out),
               "--sections", "parity", "resume", "--fixtures", str(tmp_path / "none")]  # fmt: skip
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if len(_report(out)["sections"]["parity"]["rows"]) >= 2:
                break
        except (FileNotFoundError, KeyError, json.JSONDecodeError):
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM
    report = _report(out)
    assert report["state"].startswith("stopped by SIGTERM"), report["state"]
    parity = report["sections"]["parity"]
    assert len([r for r in parity["rows"] if r["status"] == "pass"]) >= 2
    assert parity["status"] == "cut off"  # and its last row too, if the signal came during a check
    assert "resume" not in report["sections"]
    table = (out / "device_check.md").read_text()
    assert "stopped by SIGTERM" in table and "## parity: cut off" in table


def test_the_device_command_fits_the_device_tool(tmp_path: Path) -> None:
    """What the docs tell a session to paste: the command, its carry list and limits fit the tool's (2,000
    characters, 64 MiB with the working tree, a 600 s command limit above the script's own hard limit)."""
    page = (REPO / "docs" / "speed.md").read_text()
    assert 'command `bash benchmarks/device_run.sh`, carry `[".carry"]`, timeout_s `540`' in page
    script = (REPO / "benchmarks" / "device_run.sh").read_text()
    assert '"${VIDTOK_LIMIT_S:-480}"' in script and 480 + 20 < 540 <= 600
    assert ".carry/" in (REPO / ".gitignore").read_text().split()
    env = {"PATH": os.environ["PATH"], "OUT": str(tmp_path), "VIDTOK_CARRY": str(tmp_path / "empty")}
    done = subprocess.run(["bash", "benchmarks/device_run.sh"], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "run python benchmarks/device_carry.py first" in done.stderr
