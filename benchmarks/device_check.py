"""Prove the GPU paths in one command: parity, inference, training, resume, multi-GPU sync and torch.compile.

    bash benchmarks/device_run.sh                                            # a lent GPU machine (docs/speed.md)
    python benchmarks/device_check.py --device cuda --out device_check/      # a GPU machine with vidtok installed
    python benchmarks/device_check.py --device cpu --tiny --out /tmp/dc      # the same sections, tiny (CI)

Each section records pass / fail / skipped per check with its figures (and the error of a failed check) and the
script goes on. Before every check the time left is compared with what that kind of check costs (its estimate, or
what the same kind took here already): a check that would overrun ``--budget-s`` is recorded as skipped, with both
figures. ``DIR/device_check.json`` and ``DIR/device_check.md`` are rewritten after every check and once more on
any exit (the end, SIGINT, SIGTERM, an exception), so a run that is cut off keeps every check it finished.
Nothing is downloaded: random weights at the official width, the reference fixtures of ``../shared/fixtures``
(or ``--fixtures``; else tiny stand-ins), LPIPS only where its VGG16 weights already are.
Exit status 1 when a check failed, 128 + the signal's number when one stopped the run.
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common, encode, inference: the sibling scripts

from common import cpu_name  # noqa: E402
from device_sections import DEFAULT_BUDGET_S, SECTIONS, SHARED, Context, backend_name  # noqa: E402

SKIP_KEYS = {"check", "status"}


def device_description(device: torch.device) -> dict:
    """What ran: the device's name and backend, how many GPUs are visible, torch, the host CPU."""
    info = {
        "device": str(device),
        "backend": backend_name(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "gpus_visible": torch.cuda.device_count() if torch.cuda.is_available() else 0,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, memory_gib=round(props.total_memory / 2**30, 1))
    else:
        info["name"] = cpu_name()
    return info


def section_status(rows: list[dict]) -> str:
    statuses = {r["status"] for r in rows}
    if "fail" in statuses:
        return "fail"
    return "pass" if "pass" in statuses else "skipped"


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return "; ".join(_cell(v) if not isinstance(v, dict) else ", ".join(f"{k} {_cell(x)}" for k, x in v.items())
                         for v in value)  # fmt: skip
    return str(value).replace("|", "/").replace("\n", " ")


def markdown(report: dict) -> str:
    """The report as markdown: a header naming the machine and command, then one table per section."""
    d = report["machine"]
    lines = [f"# Device check: {d['name']} ({d['backend']}, torch {d['torch']})", "",
             f"`{report['command']}`; {report['seconds']:.0f} s; {'tiny sizes' if report['tiny'] else 'full width'}"
             f"; {report['state']}", ""]  # fmt: skip
    for note in report["notes"]:
        lines.append(f"- {note}")
    for name, section in report["sections"].items():
        lines += ["", f"## {name}: {section['status']} ({section['seconds']:.1f} s)", ""]
        if "error" in section:
            lines.append(f"error: `{_cell(section['error'])}`")
        if not section["rows"]:
            continue
        lines += ["| check | status | figures |", "|---|---|---|"]
        for row in section["rows"]:
            figures = ", ".join(f"{k} {_cell(v)}" for k, v in row.items() if k not in SKIP_KEYS)
            lines.append(f"| {row['check']} | {row['status']} | {figures} |")
    return "\n".join(lines) + "\n"


class Report:
    """The report being built, on disk as JSON and markdown after every check (a cut-off loses nothing finished)."""

    def __init__(self, out: Path, machine: dict, command: str, tiny: bool, budget_s: float, notes: list[str]):
        self.out, self.start = out, time.monotonic()
        self.data = {"machine": machine, "command": command, "tiny": tiny, "budget_s": budget_s, "notes": notes,
                     "state": "running", "sections": {}, "seconds": 0.0}  # fmt: skip
        self._section_start = self.start

    def begin(self, name: str) -> None:
        self._section_start = time.monotonic()
        self.data["sections"][name] = {"status": "running", "rows": [], "seconds": 0.0}
        self.save()

    def add_row(self, name: str, row: dict) -> None:
        self.data["sections"][name]["rows"].append(row)
        self.save()

    def end(self, name: str, error: str | None = None) -> None:
        section = self.data["sections"][name]
        if error is not None:
            section["error"] = error[:800]
        section["status"] = "fail" if error is not None else section_status(section["rows"])
        section["seconds"] = time.monotonic() - self._section_start
        self.save()

    def finish(self, state: str) -> None:
        """The last write: ``state`` says how the run ended; a section still running is marked cut off."""
        for section in self.data["sections"].values():
            if section["status"] == "running":
                section["status"] = "cut off"
                section["seconds"] = time.monotonic() - self._section_start
        self.data["state"] = state
        self.save()

    def save(self) -> None:
        self.data["seconds"] = time.monotonic() - self.start
        for name, text in (("device_check.json", json.dumps(self.data, indent=1, default=str)),
                           ("device_check.md", markdown(self.data))):  # fmt: skip
            tmp = self.out / f".{name}.tmp"
            tmp.write_text(text)
            tmp.replace(self.out / name)  # a reader never sees half a file


class Stopped(BaseException):
    """SIGTERM / SIGINT arrived: unwinds the check in progress so that the report is written."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop(signum: int, frame) -> None:
    raise Stopped(signum)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, required=True, help="folder for device_check.json and .md")
    parser.add_argument("--tiny", action="store_true", help="tiny widths and sizes (CPU, CI)")
    parser.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S,
                        help="start no check that would end after this many seconds (its estimated cost)")  # fmt: skip
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--fixtures", type=Path, default=SHARED / "fixtures", help="reference fixtures folder")
    parser.add_argument("--media", type=Path, default=SHARED / "media" / "example.mp4", help="a real clip")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16/fp16 peak")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA / ROCm device here (use --device cpu --tiny)")
    start = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    machine = device_description(device)
    command = " ".join(["python", "benchmarks/device_check.py", *(sys.argv[1:] if argv is None else argv)])
    notes: list[str] = []
    report = Report(args.out, machine, command, args.tiny, args.budget_s, notes)
    print(f"# {machine['name']} ({machine['backend']}), torch {machine['torch']}, {machine['gpus_visible']} GPU(s)")
    previous = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    state, stopped_by = "finished", 0
    try:
        with tempfile.TemporaryDirectory(prefix="vidtok-device-check-") as work:
            ctx = Context(device=device, tiny=args.tiny, work=Path(work), deadline=start + args.budget_s,
                          fixtures=args.fixtures if args.fixtures.is_dir() else None, media=args.media,
                          peak_tflops=args.peak_tflops, device_name=machine["name"], notes=notes)  # fmt: skip
            if device.type == "cpu":
                notes.append("peak_mb on a CPU: the process's peak resident memory so far (it only grows)")
            for name in args.sections:
                report.begin(name)
                ctx.on_row = lambda row, name=name: report.add_row(name, row)
                try:
                    SECTIONS[name](ctx)
                    report.end(name)
                except Exception as err:  # a section that could not even set up its checks
                    report.end(name, error=f"{type(err).__name__}: {err}")
                section = report.data["sections"][name]
                print(f"{name}: {section['status']} ({section['seconds']:.1f} s)", flush=True)
    except Stopped as why:
        state, stopped_by = f"stopped by {why} after {time.monotonic() - start:.0f} s", why.signum
    except BaseException as err:
        state = f"ended by {type(err).__name__}: {err}"[:300]
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        report.finish(state)
        print(markdown(report.data))
    if stopped_by:
        return 128 + stopped_by
    return 1 if any(s["status"] == "fail" for s in report.data["sections"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
