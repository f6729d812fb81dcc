"""Fill the folder that travels with the working tree to a lent GPU machine, which has no network and no vidtok.

    python benchmarks/device_carry.py                 # .carry/: wheels for the machine (cp312, manylinux x86_64)
    python benchmarks/device_carry.py --local         # wheels for this machine's Python and platform (the tests)

What the machine's image lacks is worked out, not listed: the requirement closure of vidtok's dependencies
(``pyproject.toml``, walked through the distributions installed here) minus the image's packages
(``benchmarks/device_image.txt``) and everything they require. Each missing package travels as a wheel of the
version installed here (a pure-Python one is built from its source where the index has no wheel, as for
antlr4-python3-runtime 4.9.3), with the reference fixtures (``../shared/fixtures``) and a real clip
(``../shared/media/example.mp4``). The total is printed and refused above ``--limit-mib``: the device tool carries at
most 64 MiB in all, working tree included. ``benchmarks/device_run.sh`` installs the wheels there and runs the check.
Needs the package index (pip download).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from device_sections import FIXTURE_FILES
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
IMAGE_LIST = Path(__file__).with_name("device_image.txt")
# The lent machines: CPython 3.12 on x86_64 Linux (glibc 2.28 or later manylinux wheels install there).
TARGET_PYTHON = "3.12"
TARGET_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                    "manylinux2014_x86_64", "manylinux1_x86_64")  # fmt: skip
PURE_TAG = re.compile(r"-py\d(\.py\d)*-none-any\.whl$")  # py3-none-any, py2.py3-none-any


def image_packages(path: Path = IMAGE_LIST) -> set[str]:
    """The image's package names (normalised), from ``device_image.txt``."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return {canonicalize_name(line) for line in lines if line}


def project_requirements(pyproject: Path = REPO / "pyproject.toml") -> list[str]:
    """vidtok's run-time requirements, as ``pyproject.toml`` states them (on Python 3.10, which has no tomllib:
    as the installed vidtok's metadata states them)."""
    try:
        import tomllib
    except ImportError:
        from importlib.metadata import requires

        return [r for r in requires("vidtok") or [] if "extra ==" not in r]
    return tomllib.loads(pyproject.read_text())["project"]["dependencies"]


def requirement_closure(roots: list[str], stop: frozenset[str] = frozenset()) -> dict[str, str]:
    """Every distribution ``roots`` need, through the requirements of those installed here: normalised name ->
    installed version. A name in ``stop`` is provided with all it needs (its requirements are not followed)."""
    found: dict[str, str] = {}
    todo = list(roots)
    while todo:
        req = Requirement(todo.pop())
        name = canonicalize_name(req.name)
        if name in found or name in stop or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            raise SystemExit(f"device_carry: {req.name} (needed by vidtok) is not installed here; install vidtok "
                             "first (pip install -e .), whose versions are the ones carried") from None  # fmt: skip
        found[name] = dist.version
        todo += dist.requires or []
    return found


def missing_packages(image: set[str]) -> dict[str, str]:
    """What vidtok needs that the image does not hold: name -> the version installed here."""
    return requirement_closure(project_requirements(), stop=frozenset(image))


def _pip(*args: str, show_failure: bool = True) -> None:
    """pip, quiet unless it fails: then CalledProcessError (and pip's output on stderr, with ``show_failure``)."""
    done = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)
    if done.returncode and show_failure:
        print(done.stdout[-2000:] + done.stderr[-2000:], file=sys.stderr)
    done.check_returncode()


def fetch_wheel(name: str, version: str, dest: Path, local: bool) -> Path:
    """The wheel of ``name==version`` for the target (this machine with ``local``) in ``dest``; built from the
    source distribution when the index has no wheel and the package is pure Python."""
    before = set(dest.glob("*.whl"))
    target = [] if local else ["--python-version", TARGET_PYTHON, "--implementation", "cp"]
    for plat in () if local else TARGET_PLATFORMS:
        target += ["--platform", plat]
    built = False
    try:
        _pip("download", "--no-deps", "--only-binary=:all:", *target, "-d", str(dest), f"{name}=={version}",
             show_failure=False)  # fmt: skip
    except subprocess.CalledProcessError:  # no wheel on the index: build one from the source distribution
        _pip("wheel", "--no-deps", "--no-binary", name, "-w", str(dest), f"{name}=={version}")
        built = True
    new = sorted(set(dest.glob("*.whl")) - before)
    if len(new) != 1:
        raise SystemExit(f"device_carry: expected one wheel of {name}=={version}, got {[p.name for p in new]}")
    wheel = new[0]
    if built and not local and not PURE_TAG.search(wheel.name):
        raise SystemExit(
            f"device_carry: the index has no CPython {TARGET_PYTHON} manylinux wheel of {name}=={version}, and the "
            f"one built here ({wheel.name}) is for this machine only"
        )
    return wheel


def fill(dest: Path, local: bool, fixtures: Path, media: Path) -> dict[str, int]:
    """Wheels, fixtures and the clip into ``dest`` (emptied first); the bytes of each part."""
    shutil.rmtree(dest, ignore_errors=True)
    wheels = dest / "wheels"
    wheels.mkdir(parents=True)
    missing = missing_packages(image_packages())
    for name, version in sorted(missing.items()):
        wheel = fetch_wheel(name, version, wheels, local)
        print(f"  {wheel.name:<70} {wheel.stat().st_size / 2**20:7.2f} MiB")
    cases = sorted(d for d in fixtures.iterdir() if (d / "meta.json").is_file()) if fixtures.is_dir() else []
    if not cases:
        print(f"  no reference fixtures at {fixtures} (--fixtures): parity will use tiny stand-ins")
    for case in cases:
        (dest / "fixtures" / case.name).mkdir(parents=True)
        for name in FIXTURE_FILES:
            shutil.copy(case / name, dest / "fixtures" / case.name / name)
    (dest / "media").mkdir()
    if media.is_file():
        shutil.copy(media, dest / "media" / "example.mp4")
    else:
        print(f"  no clip at {media} (--media): the encoder check will run on generated clips")
    return {part: sum(f.stat().st_size for f in (dest / part).rglob("*") if f.is_file())
            for part in ("wheels", "fixtures", "media")}  # fmt: skip


def link_image_packages(folder: Path, image: set[str] | None = None) -> list[str]:
    """A stand-in for the image on this machine: links in ``folder`` to the files of the image's packages installed
    here and of everything they require (so torch brings its own CUDA libraries), and to nothing else. Put
    ``folder`` on a fresh interpreter's path to see what a check finds on the lent machine. Returns the names."""
    image = image_packages() if image is None else image
    present = []
    for name in sorted(image):
        try:
            distribution(name)
            present.append(name)
        except PackageNotFoundError:
            continue
    names = requirement_closure(present)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        dist = distribution(name)
        for top in {Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")}:
            link = folder / top
            if not link.exists() and not top.endswith(".pth"):
                link.symlink_to(Path(dist.locate_file(top)).resolve())
    return sorted(names)


def tree_bytes() -> int:
    """The bytes of the working tree that travel anyway: tracked and untracked files git does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.split(b"\0")  # fmt: skip
    return sum((REPO / os.fsdecode(f)).stat().st_size for f in listed if f and (REPO / os.fsdecode(f)).is_file())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", type=Path, default=REPO / ".carry", help="the folder to fill (emptied first)")
    parser.add_argument("--local", action="store_true", help="wheels for this machine's Python and platform")
    parser.add_argument("--fixtures", type=Path, default=SHARED / "fixtures")
    parser.add_argument("--media", type=Path, default=SHARED / "media" / "example.mp4")
    parser.add_argument("--limit-mib", type=float, default=48.0, help="refuse a folder larger than this")
    args = parser.parse_args(argv)
    target = f"{platform.python_implementation()} {platform.python_version()} {sysconfig.get_platform()}"
    print(f"wheels for {target if args.local else f'CPython {TARGET_PYTHON} manylinux x86_64'}:")
    sizes = fill(args.dest, args.local, args.fixtures, args.media)
    total = sum(sizes.values())
    parts = ", ".join(f"{part} {n / 2**20:.1f} MiB" for part, n in sizes.items())
    print(f"{args.dest}: {total / 2**20:.1f} MiB ({parts}); the working tree adds {tree_bytes() / 2**20:.1f} MiB")
    if total > args.limit_mib * 2**20:
        print(f"device_carry: {total / 2**20:.1f} MiB is over --limit-mib {args.limit_mib}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
