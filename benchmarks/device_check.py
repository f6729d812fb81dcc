"""Prove the GPU paths in one command: parity, inference, training, resume, multi-GPU sync and torch.compile.

    python benchmarks/device_check.py --device cuda --out device_check/      # about 8 minutes on one modern GPU
    python benchmarks/device_check.py --device cpu --tiny --out /tmp/dc      # the same sections, tiny (CI)

Each section records pass / fail / skipped per check with its figures (and the error of a failed check) and the
script goes on; ``--budget-s`` stops starting checks once that many seconds have passed, the rest are recorded as
skipped. ``DIR/device_check.json`` is rewritten after every section (a run cut short keeps what it finished) and
``DIR/device_check.md`` holds the tables. Nothing is downloaded: random weights at the official width, the
reference fixtures of ``../shared/fixtures`` (or tiny stand-ins), LPIPS only where its VGG16 weights already are.
Exit status 1 when a check failed.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common, encode, inference: the sibling scripts

from common import cpu_name  # noqa: E402
from device_sections import SECTIONS, SHARED, Context, backend_name  # noqa: E402

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
             f"`{report['command']}`; {report['seconds']:.0f} s; {'tiny sizes' if report['tiny'] else 'full width'}",
             ""]  # fmt: skip
    for note in report["notes"]:
        lines.append(f"- {note}")
    for name, section in report["sections"].items():
        lines += ["", f"## {name}: {section['status']} ({section['seconds']:.1f} s)", ""]
        if "error" in section:
            lines.append(f"error: `{_cell(section['error'])}`")
            continue
        lines += ["| check | status | figures |", "|---|---|---|"]
        for row in section["rows"]:
            figures = ", ".join(f"{k} {_cell(v)}" for k, v in row.items() if k not in SKIP_KEYS)
            lines.append(f"| {row['check']} | {row['status']} | {figures} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, required=True, help="folder for device_check.json and .md")
    parser.add_argument("--tiny", action="store_true", help="tiny widths and sizes (CPU, CI)")
    parser.add_argument("--budget-s", type=float, default=480.0, help="start no check after this many seconds")
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
    report = {"machine": machine, "command": command, "tiny": args.tiny, "budget_s": args.budget_s, "notes": [],
              "sections": {}, "seconds": 0.0}  # fmt: skip
    print(f"# {machine['name']} ({machine['backend']}), torch {machine['torch']}, {machine['gpus_visible']} GPU(s)")
    with tempfile.TemporaryDirectory(prefix="vidtok-device-check-") as work:
        ctx = Context(device=device, tiny=args.tiny, work=Path(work), deadline=start + args.budget_s,
                      fixtures=args.fixtures if args.fixtures.is_dir() else None, media=args.media,
                      peak_tflops=args.peak_tflops, device_name=machine["name"])  # fmt: skip
        if device.type == "cpu":
            ctx.notes.append("peak_mb on a CPU: the process's peak resident memory so far (it only grows)")
        for name in args.sections:
            began = time.monotonic()
            try:
                rows = SECTIONS[name](ctx)
                section = {"status": section_status(rows), "rows": rows}
            except Exception as err:  # a section that could not even set up its checks
                section = {"status": "fail", "error": f"{type(err).__name__}: {err}"[:800], "rows": []}
            section["seconds"] = time.monotonic() - began
            report["sections"][name] = section
            report["notes"] = ctx.notes
            report["seconds"] = time.monotonic() - start
            (args.out / "device_check.json").write_text(json.dumps(report, indent=1, default=str))
            print(f"{name}: {section['status']} ({section['seconds']:.1f} s)", flush=True)
    text = markdown(report)
    (args.out / "device_check.md").write_text(text)
    print(text)
    return 1 if any(s["status"] == "fail" for s in report["sections"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
