"""Shared test helpers: where the reference data lives and small tokenizers to test on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import pytest
import torch

# No test reaches the Hugging Face Hub (the tests that need one build an offline cache), nor the user's caches.
# Set before huggingface_hub is first imported (vidtok imports it), which reads them once; subprocesses inherit them.
_CACHES = tempfile.mkdtemp(prefix="vidtok-test-caches-")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_CACHE"] = os.path.join(_CACHES, "hf")
os.environ["VIDTOK_CACHE"] = os.path.join(_CACHES, "vidtok")

import vidtok  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures"
MANIFESTS = SHARED / "manifests"
TOOLS = REPO / "tools"

#: A checkout of microsoft/VidTok to compare with, when the environment names one.
ORIGINAL = os.environ.get("VIDTOK_ORIGINAL")
needs_original = pytest.mark.skipif(
    not ORIGINAL, reason="set VIDTOK_ORIGINAL to a microsoft/VidTok checkout to compare with it"
)

# Deterministic CPU numerics for parity tests; 2 threads is what CI machines have.
torch.set_num_threads(min(2, torch.get_num_threads()))


def original_module(dotted: str) -> ModuleType:
    """A module of the original (``"modules.losses"``) from the VIDTOK_ORIGINAL checkout (tools/original.py)."""
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    from original import original_module as from_checkout

    return from_checkout(ORIGINAL, dotted)


@pytest.fixture
def one_thread():
    """For tests of tiny tensors: one torch thread is as fast, and immune to OpenMP barrier stalls (30x slower runs
    measured) when other processes share the two cores. Use it with ``pytestmark = pytest.mark.usefixtures(...)``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def import_each_module(names: list[str], python: str | Path = sys.executable, cwd: Path = REPO, env=None):
    """Import each of ``names`` first, in a fresh interpreter state (vidtok's modules unloaded before each), in a
    subprocess of ``python`` (environment ``env``, default this one's); returns the finished process, whose stdout
    lists the modules that failed, one a line."""
    script = (
        "import importlib, sys\n"
        "failed = []\n"
        f"for name in {list(names)!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'vidtok' or m.startswith('vidtok.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as err:\n"
        "        failed.append(f'{name}: {type(err).__name__}: {err}')\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    return subprocess.run([str(python), "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def fixture_dirs() -> list[Path]:
    """Every reference-fixture folder (``meta.json`` + ``io.safetensors``) under ../shared/fixtures."""
    if not FIXTURES.is_dir():
        return []
    return sorted(p for p in FIXTURES.iterdir() if (p / "meta.json").is_file())


def needs_shared(path: Path) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        not path.exists(),
        reason=f"reference data {path} is absent (it sits beside the repo in CI, not in user installs)",
    )


def fixture_meta(folder: Path) -> dict:
    return json.loads((folder / "meta.json").read_text())


def random_video(frames: int, size: int = 16, batch: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.rand((batch, 3, frames, size, size), generator=torch.Generator().manual_seed(seed)) * 2 - 1


def perturb_(module: torch.nn.Module, std: float = 0.02, seed: int = 0) -> torch.nn.Module:
    """Add noise to every parameter so zero-initialised blocks are not identities."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * std)
    return module


def tiny_tokenizer(name: str, ch: int = 8, seed: int = 0) -> vidtok.Tokenizer:
    """An official preset at base width ``ch`` with perturbed random weights, eval mode."""
    torch.manual_seed(seed)
    tok = vidtok.build_tokenizer(vidtok.compose_tokenizer_config(name, [f"model.ch={ch}"]))
    return perturb_(tok, seed=seed).eval()


@pytest.fixture(scope="session")
def official() -> list[str]:
    return vidtok.official_names()


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    """Width-8 tokenizers of three presets (v1.1 causal KL, v1.0 causal FSQ 4096, non-causal KL) saved as vidtok
    safetensors files: name -> path."""
    from vidtok.io.weight_files import save_tokenizer_safetensors

    folder = tmp_path_factory.mktemp("weights")
    out = {}
    for name in ("vidtok_kl_causal_488_4chn_v1_1", "vidtok_fsq_causal_488_4096", "vidtok_kl_noncausal_488_4chn"):
        tok = tiny_tokenizer(name, ch=8)
        out[name] = save_tokenizer_safetensors(tok.state_dict(), tok.config, folder / f"{name}.safetensors")
    return out


def training_checkpoint(tok: vidtok.Tokenizer, run_dir: Path, step: int = 400, ema: bool = False) -> Path:
    """``tok`` saved the way ``Trainer.save_checkpoint`` saves a run's tokenizer: ``run_dir/checkpoints/step_N/``
    holding ``tokenizer.safetensors`` (``tokenizer_ema.safetensors`` with ``ema``) with its config and source."""
    from vidtok.io.weight_files import META_SOURCE, save_tokenizer_safetensors
    from vidtok.training.checkpoints import step_dir_name

    folder = run_dir / "checkpoints" / step_dir_name(step)
    source = {META_SOURCE: f"trained with vidtok train.py: run {run_dir}, step {step}" + (" (EMA weights)" * ema)}
    filename = "tokenizer_ema.safetensors" if ema else "tokenizer.safetensors"
    save_tokenizer_safetensors(tok.state_dict(), tok.config, folder / filename, source)
    (folder / "COMPLETE").write_text(f"{step}\n")
    return folder


def kill_process_tree(pid: int) -> None:
    """SIGKILL a process and every descendant, children first found then killed together: torch's launcher starts
    each rank in a session of its own, which a process-group kill does not reach."""
    import psutil

    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    for proc in [*root.children(recursive=True), root]:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


def accelerate_launch(script: Path, args: list[str], hydra_dir: Path, processes: int = 2) -> list[str]:
    """The command that runs a Hydra app ``script`` with ``args`` in ``processes`` CPU processes under
    ``accelerate launch`` (a free port each time; give it an environment with ACCELERATE_USE_CPU=1)."""
    from vidtok.accelerator import free_port

    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes)]
    cmd += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    return [*cmd, "--main_process_port", str(free_port()), str(script), *args, f"hydra.run.dir={hydra_dir}"]
