"""The sections of ``device_check.py``: each takes a :class:`Context` and returns rows (a check, its status and
figures). A section that raises is recorded as failed by the caller, which goes on to the next one.

Sizes: the full run uses the official width (``model.ch=128``) at 17x256x256 for inference and 17x128x128 for
training; ``--tiny`` uses width 8 at 32x32, the same code paths, for CI on a CPU.

Every check has a kind, and a kind a cost (:data:`ROW_COST_S`): a check starts only when that many seconds are left
in the budget, or as many as the same kind already took here if that was more.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from common import peak_mb, sync, timed

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
V10, V11 = "vidtok_kl_causal_488_4chn", "vidtok_kl_causal_488_4chn_v1_1"
STAND_INS = (V10, V11, "vidtok_kl_noncausal_488_4chn", "vidtok_fsq_causal_488_262144")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# Parity under autocast, against the fp32 reference: latents by their largest error relative to the reference's
# largest value, reconstructions by their mean error relative to the reference's mean magnitude (a few pixels
# near zero crossings carry outliers of 20-50% in bf16, which says nothing about a kernel). bf16 keeps 8
# significant bits (unit roundoff 2^-8 = 3.9e-3), fp16 11 (4.9e-4); each of the ~40 convolution / norm layers
# rounds once and the errors add up, and the fixtures' tiny width (ch=4: LayerNorm over 4 channels) amplifies
# them. The CPU's own autocast on the four fixtures (2-core VM, torch 2.14.1) gives latents bf16 2.4-3.1e-2 /
# fp16 2.5-3.2e-3 and reconstructions bf16 4.5-7.3e-2 / fp16 5.7-9.1e-3; the tolerances are about 2x the worst
# of those. A wrong kernel or an overflowing layer gives errors of order 1.
AMP_TOLERANCE = {"bf16": {"latents": 7.5e-2, "reconstruction": 1.5e-1},
                 "fp16": {"latents": 1e-2, "reconstruction": 2e-2}}  # fmt: skip
# FSQ under autocast: a latent near a level boundary may round to the neighbouring level, so indices are compared
# as the share that match the fp32 reference (CPU autocast on the fixture: bf16 94%, fp16 99%).
AMP_INDEX_AGREEMENT = {"bf16": 0.85, "fp16": 0.95}
PARITY_LATENT_TOL, PARITY_REC_MAX_TOL, PARITY_REC_MEAN_TOL = 1e-4, 5e-4, 1e-5  # as tests/test_parity.py

# Dense (no sparsity) peak TFLOP/s from the vendors' data sheets; the first name contained in the device's wins.
# tf32: what fp32 convolutions run at when cuDNN may use TF32 (PyTorch's default for convolutions).
PEAK_COLUMNS = ("bf16", "fp16", "tf32", "fp32")
PEAK_TFLOPS = (  # name, then one value per PEAK_COLUMNS
    ("H100 PCIe", 756.0, 756.0, 378.0, 51.2),
    ("H200", 989.4, 989.4, 494.7, 66.9),
    ("H100", 989.4, 989.4, 494.7, 66.9),
    ("A100", 312.0, 312.0, 156.0, 19.5),
    ("L40S", 362.1, 362.1, 183.0, 91.6),
    ("A10", 125.0, 125.0, 62.5, 31.2),
    ("MI300X", 1307.4, 1307.4, 653.7, 163.4),
    ("MI250X", 383.0, 383.0, 47.9, 47.9),
    ("MI210", 181.0, 181.0, 22.6, 22.6),
)


# The seconds a check of each kind may need: (full width on one GPU, tiny on a CPU). Full-width figures are
# estimates for an H100 (CUDA set-up, cuDNN's first algorithm choices and inductor's compile of a full-width encoder
# and decoder included); the tiny ones are about 2x what the 2-core development VM takes.
ROW_COST_S = {
    "parity": (10.0, 2.0),
    "inference": (25.0, 3.0),
    "stream": (40.0, 3.0),
    "encoder": (120.0, 20.0),
    "train": (90.0, 6.0),
    "resume": (150.0, 20.0),
    "multi-gpu": (150.0, 30.0),
    "compile": (240.0, 30.0),
}
# One device command of at most 10 minutes within 15 minutes of machine time, leaving room for a second try:
# the checks end by 7 minutes (benchmarks/device_run.sh kills the process at 8).
DEFAULT_BUDGET_S = 420.0


# What the parity section reads of each reference fixture (all that benchmarks/device_carry.py carries of them).
FIXTURE_FILES = ("meta.json", "model.ckpt", "io.safetensors")


class Skip(Exception):
    """A check that does not apply here (its reason goes in the report)."""


@dataclass
class Check:
    """One row of a section: its name, its kind (the cost it is given), and the function measuring it."""

    name: str
    kind: str
    run: Callable[[], dict]


@dataclass
class Context:
    """What every section gets: the device, the sizes, the time budget and a scratch folder."""

    device: torch.device
    tiny: bool
    work: Path
    deadline: float  # time.monotonic() after which no check may still be running
    fixtures: Optional[Path] = None
    media: Optional[Path] = None
    peak_tflops: Optional[float] = None
    device_name: str = ""
    notes: list[str] = field(default_factory=list)
    clips: str = ""  # what the encoder check ran on
    on_row: Callable[[dict], None] = lambda row: None  # the report's hook: called as each row is done
    took: dict[str, float] = field(default_factory=dict)  # the longest check of each kind so far, seconds

    @property
    def width(self) -> int:
        return 8 if self.tiny else 128

    def cost(self, kind: str) -> float:
        """The seconds a check of ``kind`` is given: its estimate, or what one took here if that was longer."""
        estimate = ROW_COST_S[kind][1 if self.tiny else 0]
        return max(estimate, self.took.get(kind, 0.0))

    def time_left(self) -> float:
        return self.deadline - time.monotonic()


def run_checks(ctx: Context, checks: list[Check]) -> list[dict]:
    """Run each check, one row each: its figures and ``pass``; a failed one records its error, a skipped one its
    reason. A check starts only with its kind's cost left in the budget. Each row goes to ``ctx.on_row`` as it is
    done; a check cut off by a signal is recorded as such before the signal goes on."""
    rows = []
    for check in checks:
        need, left = ctx.cost(check.kind), ctx.time_left()
        began = time.monotonic()
        if left < need:
            why = f"time budget: {max(left, 0):.0f} s left, a {check.kind} check is given {need:.0f} s"
            row = {"check": check.name, "status": "skipped", "reason": why}
        else:
            try:
                figures = check.run()
                ok = figures.pop("ok", True)
                row = {"check": check.name, "status": "pass" if ok else "fail", **figures}
            except Skip as why:
                row = {"check": check.name, "status": "skipped", "reason": str(why)}
            except Exception as err:  # the check's own failure: recorded, the section goes on
                row = {"check": check.name, "status": "fail", "error": f"{type(err).__name__}: {err}"[:500]}
            except BaseException:  # a signal (or Ctrl-C): the row says so, the report is written on the way out
                row = {"check": check.name, "status": "cut off", "row_s": time.monotonic() - began}
                rows.append(row)
                ctx.on_row(row)
                raise
            finally:
                free_memory(ctx.device)
            seconds = time.monotonic() - began
            ctx.took[check.kind] = max(ctx.took.get(check.kind, 0.0), seconds)
            row["row_s"] = seconds
        rows.append(row)
        ctx.on_row(row)
    return rows


# ---- device helpers -------------------------------------------------------------------------------------------


def free_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def backend_name(device: torch.device) -> str:
    """``CUDA 13.0`` / ``ROCm 6.4`` (a ROCm build answers to torch.cuda too) / ``CPU``."""
    if device.type != "cuda":
        return "CPU"
    if getattr(torch.version, "hip", None):
        return f"ROCm {torch.version.hip}"
    return f"CUDA {torch.version.cuda}"


def _peak(ctx: Context, column: str) -> Optional[float]:
    for name, *peaks in PEAK_TFLOPS:
        if name in ctx.device_name:
            return dict(zip(PEAK_COLUMNS, peaks, strict=True))[column]
    return None


def ideal_seconds(ctx: Context, precision: str, gflop: dict[str, float]) -> Optional[float]:
    """The seconds ``gflop`` (by kind: conv / matmul) take at the device's dense peak for ``precision``: under
    bf16 / fp16 autocast every product runs at that peak (``--peak-tflops`` stands for it); in fp32 convolutions
    run at the TF32 peak where cuDNN may use TF32 and matrix products at it only where matmuls may
    (``torch.backends.cuda.matmul.allow_tf32``, off by default), else at the fp32 peak. None: device unknown."""
    if precision in ("bf16", "fp16"):
        peak = ctx.peak_tflops or _peak(ctx, precision)
        return gflop["total"] / 1e3 / peak if peak else None
    on_cuda = ctx.device.type == "cuda"
    conv_peak = _peak(ctx, "tf32" if on_cuda and torch.backends.cudnn.allow_tf32 else "fp32")
    matmul_peak = _peak(ctx, "tf32" if on_cuda and torch.backends.cuda.matmul.allow_tf32 else "fp32")
    if not (conv_peak and matmul_peak):
        return None
    return (gflop["conv"] / conv_peak + gflop["matmul"] / matmul_peak) / 1e3


def autocast(device: torch.device, precision: str):
    dtype = DTYPES[precision]
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


@contextlib.contextmanager
def exact_fp32():
    """TF32 off for matmuls and convolutions (fp32 parity must compare fp32 arithmetic)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def seeded_video(frames: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, frames, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ---- parity ---------------------------------------------------------------------------------------------------


@dataclass
class ParityCase:
    name: str
    tok: Any  # the tokenizer on the CPU
    ref: dict[str, torch.Tensor]  # x, z, x_rec (decode of z, trimmed to our frame count), indices for FSQ
    source: str  # where the reference comes from


def parity_cases(ctx: Context) -> list[ParityCase]:
    """The reference fixtures (the original's CPU fp32 outputs) when there are any, else tiny stand-ins whose
    reference is computed here on the CPU."""
    import json

    from safetensors.torch import load_file

    import vidtok

    folders = sorted(p for p in ctx.fixtures.iterdir() if (p / "meta.json").is_file()) if ctx.fixtures else []
    cases = []
    for folder in folders:
        meta = json.loads((folder / "meta.json").read_text())
        tok = vidtok.load_tokenizer(meta["name"], ckpt=folder / "model.ckpt", overrides=meta["overrides"]).eval()
        io = load_file(folder / "io.safetensors")
        x_rec = io["x_rec"][:, :, io["x_rec"].shape[2] - tok.decoded_frames(io["z"].shape[2]) :]
        ref = {"x": io["x"], "z": io["z"], "x_rec": x_rec}
        if "indices" in io:
            ref["indices"] = io["indices"].long()
        cases.append(ParityCase(folder.name, tok, ref, f"fixture {folder} (the original, CPU fp32)"))
    if cases:
        return cases
    ctx.notes.append("parity: no fixtures found (../shared/fixtures or --fixtures): tiny stand-ins, reference on CPU")
    for name in STAND_INS:
        torch.manual_seed(0)
        tok = vidtok.load_tokenizer(name, overrides=["model.ch=4"], pretrained=False).eval()
        with torch.no_grad():
            for p in tok.parameters():  # zero-initialised blocks would hide errors
                p.add_(torch.randn_like(p) * 0.02)
            x = seeded_video(16 if not tok.config.causal else 17, 32)
            z = tok.encode(x)
            ref = {"x": x, "z": z, "x_rec": tok.decode(z)}
            if tok.config.regularizer.kind == "fsq":
                ref["indices"] = tok.encode_indices(x)
        cases.append(ParityCase(name, tok, ref, "stand-in (ch=4, random weights), reference computed on CPU fp32"))
    return cases


def _parity_check(ctx: Context, case: ParityCase, precision: str) -> dict:
    dev = ctx.device
    tok = case.tok.to(dev)
    fsq = "indices" in case.ref
    try:
        with torch.no_grad(), exact_fp32() if precision == "fp32" else contextlib.nullcontext():
            with autocast(dev, precision):
                z = tok.encode(case.ref["x"].to(dev)).float().cpu()
                rec = tok.decode(case.ref["z"].to(dev)).float().cpu()
                indices = tok.encode_indices(case.ref["x"].to(dev)).cpu() if fsq else None
    finally:
        case.tok.cpu()
    z_err = (z - case.ref["z"]).abs().max().item()
    diff = (rec - case.ref["x_rec"]).abs()
    out: dict[str, Any] = {"z_max_err": z_err, "rec_max_err": diff.max().item(), "rec_mean_err": diff.mean().item()}
    if fsq:
        out["indices_equal"] = (indices == case.ref["indices"]).float().mean().item()
    if precision == "fp32":
        out["tolerance"] = (
            f"latents {PARITY_LATENT_TOL}, reconstruction max {PARITY_REC_MAX_TOL} / mean {PARITY_REC_MEAN_TOL} "
            "(abs), indices identical"
        )
        ok = diff.max().item() <= PARITY_REC_MAX_TOL and diff.mean().item() <= PARITY_REC_MEAN_TOL
        ok = ok and (out["indices_equal"] == 1.0 if fsq else z_err <= PARITY_LATENT_TOL)
    else:
        out["rec_rel_mean_err"] = diff.mean().item() / case.ref["x_rec"].abs().mean().item()
        tol = AMP_TOLERANCE[precision]
        ok = out["rec_rel_mean_err"] <= tol["reconstruction"]
        if fsq:
            wanted = f"indices equal >= {AMP_INDEX_AGREEMENT[precision]:.0%}"
            ok = ok and out["indices_equal"] >= AMP_INDEX_AGREEMENT[precision]
        else:
            wanted = f"latents max err / max |ref| <= {tol['latents']}"
            out["z_rel_err"] = z_err / case.ref["z"].abs().max().item()
            ok = ok and out["z_rel_err"] <= tol["latents"]
        out["tolerance"] = f"reconstruction mean err / mean |ref| <= {tol['reconstruction']}, {wanted}"
    return {**out, "reference": case.source, "ok": ok}


def parity(ctx: Context) -> list[dict]:
    """The fixtures on the device against their CPU reference: fp32 (TF32 off) to the parity tests' tolerances,
    bf16 / fp16 autocast to :data:`AMP_TOLERANCE`."""
    cases = parity_cases(ctx)
    checks = []
    for case in cases:
        for precision in ("fp32", "bf16", "fp16"):
            run = lambda c=case, p=precision: _parity_check(ctx, c, p)  # noqa: E731
            checks.append(Check(f"{case.name} {precision}", "parity", run))
    return run_checks(ctx, checks)


# ---- inference ------------------------------------------------------------------------------------------------

INFERENCE_MODES = (("fp32", "fp32", False), ("bf16", "bf16", False), ("fp16", "fp16", False),
                   ("compile+bf16", "bf16", True))  # fmt: skip


def compile_backend(ctx: Context) -> str:
    """inductor, except for tiny runs on a CPU: there its C++ build takes ~110 s a model on 2 cores, so they
    compile with aot_eager (the same graph capture and AOT autograd, no code generation)."""
    return "aot_eager" if ctx.tiny and ctx.device.type == "cpu" else "inductor"


def _counting(backend: str, graphs: list[int]):
    """``backend`` (a torch.compile backend name) that also records each graph dynamo hands it (its node count)."""
    from torch._dynamo import lookup_backend

    inner = lookup_backend(backend)

    def compile_graph(gm, example_inputs):
        graphs.append(len(gm.graph.nodes))
        return inner(gm, example_inputs)

    return compile_graph


MAX_GRAPHS = 2  # a compiled pass pair is one graph for the encoder and one for the decoder


def _inference_check(ctx: Context, name: str, precision: str, compiled: bool, gflop: dict[str, float]) -> dict:
    import torch._dynamo
    from torch._dynamo.utils import counters

    import vidtok

    dev = ctx.device
    if precision == "fp16" and dev.type != "cuda":  # (parity checks fp16 autocast's numbers on any device)
        raise Skip("fp16 timing needs a GPU: a CPU runs fp16 autocast on slow reference kernels")
    frames, size = 17, 32 if ctx.tiny else 256
    tok = vidtok.load_tokenizer(name, overrides=[f"model.ch={ctx.width}"], pretrained=False, device=dev).eval()
    backend, graphs = compile_backend(ctx), []
    if compiled:
        torch._dynamo.reset()
        counters.clear()
        tok.compile(backend=_counting(backend, graphs))
    x = seeded_video(frames, size).to(dev)
    with torch.inference_mode(), autocast(dev, precision):
        _, first_s = timed(dev, lambda: tok.decode(tok.encode(x)))  # warm-up (and compilation)
        reset_peak(dev)
        runs = []
        for _ in range(2):
            z, enc_s = timed(dev, lambda: tok.encode(x))
            y, dec_s = timed(dev, lambda z=z: tok.decode(z))
            runs.append((enc_s, dec_s))
    enc_s, dec_s = min(runs, key=sum)
    seconds = enc_s + dec_s
    out = {
        "encode_s": enc_s,
        "decode_s": dec_s,
        "first_call_s": first_s,
        "frames_per_s": frames / seconds,
        "peak_mb": peak_mb(dev),
        "gflop": gflop["total"],
        "tflops": gflop["total"] / 1e3 / seconds,
    }
    ok = tuple(y.shape) == tuple(x.shape) and bool(torch.isfinite(y.float()).all())
    if compiled:
        breaks = counters["graph_break"]
        out.update(compile_backend=backend, graphs=len(graphs), graph_breaks=sum(breaks.values()),
                   break_reasons=[f"{n}x {reason}"[:200] for reason, n in breaks.most_common(3)])  # fmt: skip
        ok = ok and len(graphs) <= MAX_GRAPHS
    ideal = ideal_seconds(ctx, precision, gflop)
    if ideal:
        out["peak_share"] = ideal / seconds
    return {**out, "ok": ok}


def _stream_check(ctx: Context, frames: int = 129) -> dict:
    """A v1.1 video of ``frames`` frames through the encoder and decoder streams, chunk by chunk (what
    ``vidtok reconstruct`` does): memory must not grow with the length. The chunks are made on the device before
    the clock starts and a short stream runs first (cuDNN's algorithm choices, allocations), so the figure is the
    model's."""
    import vidtok
    from vidtok.inference.pipeline import reconstruct_stream

    dev = ctx.device
    size, chunk = (32, 16) if ctx.tiny else (256, 16)
    precision = "bf16" if dev.type == "cuda" else "fp32"
    tok = vidtok.load_tokenizer(V11, overrides=[f"model.ch={ctx.width}"], pretrained=False, device=dev).eval()
    gen = torch.Generator().manual_seed(0)
    chunks = [(torch.rand(1, 3, min(chunk, frames - first), size, size, generator=gen) * 2 - 1).to(dev)
              for first in range(0, frames, chunk)]  # fmt: skip
    options = vidtok.InferenceOptions(chunk_frames=chunk, chunk_latents=4)
    with torch.inference_mode(), autocast(dev, precision):
        for _ in reconstruct_stream(tok, chunks[:2], options=options):  # warm-up: the same chunk shapes
            pass
        reset_peak(dev)
        out_frames, start = 0, time.perf_counter()
        for _, recon in reconstruct_stream(tok, chunks, options=options):
            out_frames += recon.shape[2]
        sync(dev)
        seconds = time.perf_counter() - start
    return {"frames": frames, "seconds": seconds, "frames_per_s": frames / seconds, "peak_mb": peak_mb(dev),
            "precision": precision, "ok": out_frames == frames}  # fmt: skip


def _clips(ctx: Context) -> Path:
    """A folder of a few real clips (the original's example.mp4, 3 copies) or, without it, generated ones."""
    from common import make_videos

    folder = ctx.work / "clips"
    if folder.is_dir():
        return folder
    if ctx.media is not None and ctx.media.is_file():
        folder.mkdir(parents=True)
        for i in range(3):
            shutil.copy(ctx.media, folder / f"clip{i}.mp4")
        ctx.clips = f"3 copies of {ctx.media.name} (real video)"
    else:
        make_videos(folder, 3, 34, 64 if ctx.tiny else 256)
        ctx.clips = "3 generated clips (no real video found: --media)"
    return folder


def _encoder_check(ctx: Context) -> dict:
    """encode.py's job on a few clips beside the model alone on the same clips, for growing DataLoader worker
    counts until the job reaches 90% of the model's frames/s."""
    import vidtok
    from encode import measure
    from vidtok.io.weight_files import save_tokenizer_safetensors

    dev = ctx.device
    videos = _clips(ctx)
    tok = vidtok.load_tokenizer(V11, overrides=[f"model.ch={ctx.width}"], pretrained=False).eval()
    ckpt = save_tokenizer_safetensors(tok.state_dict(), tok.config, ctx.work / "encoder_tok.safetensors")
    tok = tok.to(dev)
    precision = "bf16" if dev.type == "cuda" else "full"
    rows, needed, longest = [], None, 0.0
    for workers in (0, 1) if ctx.tiny else (0, 2, 4, 8):
        if ctx.time_left() < longest:  # another worker count would overrun the budget
            break
        began = time.monotonic()
        r = measure(tok, ckpt, videos, ctx.work / f"encoded{workers}", dev, workers=workers,
                    size=32 if ctx.tiny else 256, batch=2, precision=precision)  # fmt: skip
        rows.append({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()})
        longest = max(longest, time.monotonic() - began)
        if r["share"] >= 0.9:
            needed = workers
            break
    best = max(rows, key=lambda r: r["share"])
    return {"clips": ctx.clips, "precision": precision, "rows": rows, "job_fps": best["job_fps"],
            "model_fps": best["model_fps"], "share": best["share"], "workers_needed": needed,
            "ok": bool(rows) and all(r["frames"] > 0 for r in rows)}  # fmt: skip


def _inference_checks(ctx: Context, compiled: bool) -> list[Check]:
    from inference import flop_counts

    frames, size = 17, 32 if ctx.tiny else 256
    checks = []
    for name in (V10, V11):
        # fp32 runs the fused inference forms; autocast (and so the compiled bf16 rows) the general ones
        gflop = {amp: flop_counts(name, frames, size, overrides=(f"model.ch={ctx.width}",), autocast=amp)
                 for amp in (False, True)}  # fmt: skip
        for label, precision, compiles in INFERENCE_MODES:
            if compiles == compiled:
                work = gflop[precision != "fp32"]
                run = lambda n=name, p=precision, c=compiles, g=work: _inference_check(ctx, n, p, c, g)  # noqa: E731
                kind = "compile" if compiles else "inference"
                checks.append(Check(f"{name} {label} {frames}x{size}x{size}", kind, run))
    return checks


def inference(ctx: Context) -> list[dict]:
    """Full-width v1.0 and v1.1 KL 488 at 17x256x256 in fp32 / bf16 / fp16; a 129-frame v1.1 stream; the
    dataset encoder."""
    checks = _inference_checks(ctx, compiled=False)
    checks.append(Check(f"{V11} 129-frame stream (16-frame chunks)", "stream", lambda: _stream_check(ctx)))
    checks.append(Check("encode.py job vs model alone", "encoder", lambda: _encoder_check(ctx)))
    return run_checks(ctx, checks)


def compiled(ctx: Context) -> list[dict]:
    """The inference rows with ``torch.compile`` + bf16, the last section: compiling is the slowest step, so a
    tight budget loses these rows rather than training and resume."""
    return run_checks(ctx, _inference_checks(ctx, compiled=True))


# ---- training -------------------------------------------------------------------------------------------------


def _train_videos(ctx: Context) -> Path:
    from common import make_videos

    folder = ctx.work / "train_videos"
    if not folder.is_dir():
        make_videos(folder, 4, 20, 32 if ctx.tiny else 128)
    return folder


def _vgg_present() -> bool:
    from vidtok.errors import WeightsError
    from vidtok.io.auxiliary_weights import VGG16, resolve_weights

    try:
        resolve_weights(VGG16, download=False)
        return True
    except WeightsError:
        return False


def trainer_for(ctx: Context, run_dir: Path, *overrides: str):
    """A Trainer of the device check's size: width 128 (tiny: 8), 17 frames of 128x128 (tiny: 32x32), batch 1,
    LPIPS only when the VGG16 weights are on this machine, no logger, no validation."""
    from vidtok.training import Trainer, compose_train_config, load_run_config

    size = 32 if ctx.tiny else 128
    base = [
        f"model.ch={ctx.width}",
        f"data.path={_train_videos(ctx)}",
        "data.num_frames=17",
        "data.sample_fps=null",
        f"data.height={size}",
        f"data.width={size}",
        "data.batch_size=1",
        f"data.num_workers={0 if ctx.tiny else 2}",
        f"run_dir={run_dir}",
        "logger.kind=none",
        f"loss.perceptual_weight={1.0 if _vgg_present() else 0.0}",
        "validation.at_start=false",
        "validation.every=1000000",
        "validation.lpips=false",
        "checkpoint.every=1000000",
    ]
    return Trainer(load_run_config(compose_train_config([*base, *overrides])))


def _train_check(ctx: Context, precision: str) -> dict:
    if precision == "fp16" and ctx.device.type != "cuda":
        raise Skip("fp16 training needs a GPU (the Trainer refuses it on a CPU)")
    steps, disc_start = (4, 2) if ctx.tiny else (20, 10)
    run_dir = ctx.work / f"train_{precision}"
    shutil.rmtree(run_dir, ignore_errors=True)
    trainer = trainer_for(ctx, run_dir, f"train.mixed_precision={precision}", f"train.max_steps={steps}",
                          f"loss.disc_start={disc_start}")  # fmt: skip
    dev = trainer.device
    reset_peak(dev)
    times, logs = [], []
    for _ in range(steps):
        log, seconds = timed(dev, trainer.train_step)
        times.append(seconds)
        logs.append(log)
    steady = times[2:] if len(times) > 4 else times[1:]  # the first steps allocate and pick kernels
    losses = [log.get("total_loss", math.nan) for log in logs]
    disc = [log["disc_loss"] for log in logs[disc_start:] if "disc_loss" in log]
    return {
        "steps": steps,
        "s_per_step": sum(steady) / len(steady),
        "samples_per_s": len(steady) / sum(steady),
        "peak_mb": peak_mb(dev),
        "lpips": trainer.run.loss.perceptual_weight > 0,
        "disc_from_step": disc_start,
        "last_total_loss": losses[-1],
        "scaler": trainer.scaler.get_scale() if trainer.scaler is not None else None,
        "disc_steps": len(disc),
        "ok": all(math.isfinite(v) for v in losses) and bool(disc) and all(math.isfinite(v) for v in disc),
    }


def training(ctx: Context) -> list[dict]:
    """Steps at full width, 17x128x128, in bf16 and in fp16 with the gradient scaler, discriminator on mid-way."""
    return run_checks(ctx, [Check(f"{4 if ctx.tiny else 20} steps {p}", "train", lambda p=p: _train_check(ctx, p))
                            for p in ("bf16", "fp16")])  # fmt: skip


# ---- resume ---------------------------------------------------------------------------------------------------


def _resume_check(ctx: Context) -> dict:
    """An uninterrupted run of N steps beside one that stops after a checkpoint at N/2 and resumes: the losses of
    steps N/2+1..N must match (bit for bit on a CPU; on a GPU within 1e-3 relative, as cuDNN's backward kernels
    may add in another order)."""
    steps = 6 if ctx.tiny else 20
    half = steps // 2
    common_args = (f"loss.disc_start={half - 1}", f"checkpoint.every={half}", "train.mixed_precision=no")
    root = ctx.work / "resume"
    shutil.rmtree(root, ignore_errors=True)
    full = trainer_for(ctx, root / "full", *common_args, f"train.max_steps={steps}")
    full.fit()
    first = trainer_for(ctx, root / "split", *common_args, f"train.max_steps={half}")
    first.fit()
    resumed = trainer_for(ctx, root / "split", *common_args, f"train.max_steps={steps}")
    resumed.fit()
    a = [h["total_loss"] for h in full.history[half:]]
    b = [h["total_loss"] for h in resumed.history]
    same_steps = bool(a) and len(a) == len(b)
    rel = max(abs(x - y) / max(abs(x), 1e-12) for x, y in zip(a, b, strict=True)) if same_steps else math.inf
    exact = ctx.device.type != "cuda"
    return {
        "compared": f"total loss of steps {half + 1}..{steps}, resumed from the step-{half} checkpoint "
        "(weights, both optimisers, EMA, scaler, data position, CPU and CUDA RNG)",
        "tolerance": "identical" if exact else "1e-3 relative",
        "max_rel_diff": rel,
        "resumed_at": resumed.history[0]["step"] - 1 if resumed.history else None,
        "ok": (a == b) if exact else rel <= 1e-3,
    }


def resume(ctx: Context) -> list[dict]:
    return run_checks(ctx, [Check("save at the half, resume", "resume", lambda: _resume_check(ctx))])


# ---- multi-GPU ------------------------------------------------------------------------------------------------


def _sync_check(ctx: Context) -> dict:
    """``accelerate launch`` of 2 processes training 2 steps with a checkpoint after each: each save first checks
    that both processes hold the same weights (all-reduce of a checksum, Trainer.check_in_sync)."""
    from vidtok.accelerator import free_port

    gpus = torch.cuda.device_count() if ctx.device.type == "cuda" else 0
    if ctx.device.type == "cuda" and gpus < 2:
        raise Skip(f"{gpus} GPU visible: the 2-process gradient-sync check needs 2")
    run_dir = ctx.work / "two_processes"
    shutil.rmtree(run_dir, ignore_errors=True)
    # the checkout first, then what the caller's path holds (device_run.sh's carried packages)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    if ctx.device.type != "cuda":
        env.update(ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")  # gloo on the CPU: the same code, CI-sized
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()), str(REPO / "train.py"), "experiment=debug",
           f"data.path={_train_videos(ctx)}", f"val_data.path={_train_videos(ctx)}", f"run_dir={run_dir}",
           "train.max_steps=2", "checkpoint.every=1", "validation.at_start=false", "validation.every=1000",
           f"hydra.run.dir={run_dir / 'hydra'}"]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    saved = sorted((run_dir / "checkpoints").glob("step_*"))
    if ctx.device.type != "cuda":
        backend = "gloo (CPU)"
    else:
        backend = "rccl" if getattr(torch.version, "hip", None) else "nccl"
    # a resumable multi-process checkpoint holds each rank's RNG state; the run folder keeps its config
    rng_states = all((step / f"random_states_{rank}.pkl").is_file() for step in saved for rank in (0, 1))
    ok = done.returncode == 0 and len(saved) == 2 and rng_states and (run_dir / "config.yaml").is_file()
    out = {"backend": backend, "seconds": time.perf_counter() - start, "checkpoints": [p.name for p in saved],
           "rng_states_of_both_ranks": rng_states, "ok": ok}  # fmt: skip
    if done.returncode != 0:
        out["error"] = (done.stderr or done.stdout)[-800:]
    return out


def multi_gpu(ctx: Context) -> list[dict]:
    return run_checks(ctx, [Check("2-process gradient sync", "multi-gpu", lambda: _sync_check(ctx))])


SECTIONS: dict[str, Callable[[Context], list[dict]]] = {
    "parity": parity,
    "inference": inference,
    "training": training,
    "resume": resume,
    "multi-gpu": multi_gpu,
    "compile": compiled,
}
