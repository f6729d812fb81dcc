"""What a user installs is the wheel, not the checkout: it holds every module, config and asset of the tree, and an
installed copy imports, composes its configs and runs the three jobs with no checkout in reach.

``pip install -e`` (how the tests and CI install) serves any folder of the checkout through its finder, listed or
not, so only a built wheel, installed where the finder is not active, shows what users get.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import REPO, import_each_module


def _tracked_files() -> list[str]:
    """The files a clean clone would hold (tracked, plus new files git does not ignore)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("building the wheel from the tree needs git to list its files (run from a clone)")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [name for name in listed.split("\0") if name and (REPO / name).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel ``pip wheel .`` builds from a copy of the tree's files (a stale ``build/`` cannot leak into it)."""
    root = tmp_path_factory.mktemp("wheel")
    tree = root / "tree"
    for name in _tracked_files():
        target = tree / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(root), str(tree))
    (found,) = root.glob("vidtok-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel installed by pip; the test environment's packages (torch, ...)
    are on its path, but not the checkout and not the editable install's finder. Returns its python."""
    env = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=120)
    python = env / "bin" / "python"
    site = Path(_run(python, ["-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], env).stdout.strip())
    # A path line adds the folder only: the .pth files in it (the editable finder among them) are not run.
    (site / "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _pip("--python", str(python), "install", "--no-deps", str(wheel))
    return python


#: Where the installed package and its configs are, and how many presets it finds.
WHERE = (
    "import vidtok\nfrom vidtok.composition import conf_dir\n"
    "print(vidtok.__file__); print(conf_dir()); print(len(vidtok.official_names()))"
)


def _pip(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", *args, "--no-index", "-q"],
        env=_clean_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _clean_environment() -> dict[str, str]:
    """This environment without PYTHONPATH, which could put a checkout in reach of the installed package."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _run(python: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = _clean_environment()
    return subprocess.run([str(python), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_the_wheel_holds_every_module_config_and_asset(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    tree = _tracked_files()
    modules = {name for name in tree if name.startswith("vidtok/") and name.endswith(".py")}
    configs = {"vidtok/" + name for name in tree if name.startswith("conf/") and name.endswith(".yaml")}
    assets = {name for name in tree if name.startswith("vidtok/assets/") and name.endswith((".mp4", ".md", ".json"))}
    assert len(modules) > 50 and len(configs) > 40 and len(assets) == 20  # demo clips, credits, benchmark lists
    missing = sorted((modules | configs | assets) - names)
    assert not missing, f"the wheel lacks {len(missing)} file(s) of the tree: {missing[:20]}"
    stray = sorted(n for n in names if "__pycache__" in n or n.endswith(".pyc"))
    assert not stray, stray


def test_the_installed_wheel_imports_every_module_without_the_checkout(
    wheel: Path, installed: Path, tmp_path: Path
) -> None:
    where = _run(installed, ["-c", WHERE], tmp_path)
    assert where.returncode == 0, where.stderr[-3000:]
    package_file, conf, presets = where.stdout.splitlines()
    env = installed.parent.parent
    assert Path(package_file).is_relative_to(env) and Path(conf).is_relative_to(env), (package_file, conf)
    assert int(presets) == 23
    names = sorted(
        name.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        for name in zipfile.ZipFile(wheel).namelist()
        if name.startswith("vidtok/") and name.endswith(".py")
    )
    assert len(names) > 50
    run = import_each_module(names, python=installed, cwd=tmp_path, env=_clean_environment())
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["-m", "vidtok.train", "experiment=demo", "dry_run=true", "run_dir=runs/demo"], "dry run (nothing trained)"),
        (["-m", "vidtok.evaluate", "tokenizer=vidtok_kl_causal_488_4chn", "--cfg", "job"], "name: vidtok_kl_causal"),
        (["-m", "vidtok.encode", "data.dir=videos/", "output.dir=latents/", "--cfg", "job"], "dir: latents/"),
        (["-m", "vidtok.decode", "data.dir=latents/", "output.dir=decoded/", "--cfg", "job"], "dir: decoded/"),
        (["-m", "vidtok.cli", "config", "vidtok_fsq_causal_488_4096"], "levels:"),
    ],
)
def test_the_installed_jobs_compose_their_packaged_configs(
    installed: Path, tmp_path: Path, args: list[str], expected: str
) -> None:
    run = _run(installed, args, tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert expected in run.stdout, run.stdout[-2000:]
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("*.safetensors"))
