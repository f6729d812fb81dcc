"""Every command and Python example that README.md and docs/ show runs here, as written.

Shell commands come from ```bash blocks (one command per line, ``\\`` continuations joined) and ```console blocks
(lines after ``$ ``); Python examples are the ```python blocks. Each block runs in a fresh folder that holds the
files the pages name: generated videos (``videos/``, ``val/``, ``in.mp4``, ``train.csv``), shards of them
(``shards/``), official-format checkpoints of full width with random weights under their official file names (also
in an offline Hugging Face Hub cache, so that names alone load them as they load the published weights), and a
width-16 ``runs/demo`` checkpoint. Commands of a block run in order, as a user types them.

:data:`HOW` says how each shell command runs. ``RUN``: as written. A suffix: as written plus those arguments, where
the full job is too long for a test (``--cfg job`` prints the composed config, ``dry_run=true`` validates every job
of a sweep, a short demo). ``CI``: the set-up commands, which are what ``.ci/run`` executes (checked line by line
against it; the demo part runs short). ``LAUNCH``: multi-node ``accelerate launch``: its arguments are parsed by
accelerate's own parser and the app part (train.py or encode.py) composes with ``--cfg job``. ``SLURM``: the
sweep's jobs are composed with the submitit launcher (``--cfg hydra``), nothing is submitted. A command on the
pages that is not in :data:`HOW`, or an entry of :data:`HOW` no page shows, fails the test.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from diffusers_models import save as save_diffusers_model
from hubcache import add_repo_to_hub_cache, add_to_hub_cache, hub_environment
from standins import save_detector
from videos import write_indexed_video

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
CHECKPOINTS = ("vidtok_kl_causal_488_4chn_v1_1", "vidtok_fsq_causal_488_32768_v1_1", "vidtok_kl_causal_488_4chn")


@dataclass(frozen=True)
class How:
    kind: str  # "run", "suffix", "ci", "launch", "slurm"
    suffix: str = ""
    expect: str = ""  # a text the command's output must contain


RUN = How("run")
CFG = How("suffix", " --cfg job")
DRY = How("suffix", " dry_run=true", expect="dry run (nothing trained)")
SHORT_DEMO = How(
    "suffix",
    " train.max_steps=2 checkpoint.every=2 validation.every=2 validation.max_clips=1",
    expect="Training finished at step 2.",
)

HOW: dict[str, How] = {
    # set up (README, Getting started)
    "python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.14.1 torchvision==0.29.1 && "
    'pip install -e ".[dev]" && python train.py experiment=demo': How("ci"),
    ". .venv/bin/activate && ruff check . && python -m pytest -q": How("ci"),
    "mkdocs build --strict": RUN,
    # the GPU check's carried folder (here in the block's folder: the default is the checkout's .carry/)
    "python benchmarks/device_carry.py": How("suffix", " --dest .carry", expect="MiB (wheels"),
    # the jobs as modules of the installed package
    "python -m vidtok.train experiment=demo": DRY,
    "accelerate launch -m vidtok.train regularizer=fsq compression=488 data.path=videos/ val_data.path=val/": DRY,
    "python -m vidtok.evaluate tokenizer=vidtok_kl_causal_488_4chn data.dir=val/ height=64 width=64 "
    "metrics.lpips=false": CFG,  # the app evaluate.py runs (for real, on the Evaluation page)
    "python -m vidtok.encode tokenizer=vidtok_kl_causal_488_4chn_v1_1 data.dir=videos/ output.dir=latents/": CFG,
    "python -m vidtok.decode data.dir=latents/ output.dir=decoded/": CFG,
    # the vidtok command
    "vidtok list": How("run", expect="vidtok_fsq_causal_888_32768_v1_1"),
    "vidtok config vidtok_kl_causal_488_4chn_v1_1": How("run", expect="temporal_upsample: linear"),
    "vidtok config vidtok_fsq_causal_888_32768_v1_1": How("run", expect="temporal: 8"),
    "vidtok convert vidtok_kl_causal_488_4chn.ckpt vidtok_kl_causal_488_4chn.safetensors": RUN,
    "vidtok export-diffusers --tokenizer vidtok_kl_causal_488_4chn_v1_1 vidtok_diffusers/": How(
        "run", expect="AutoencoderVidTok.from_pretrained"
    ),
    "vidtok demo --size 32": RUN,
    "vidtok download vidtok_kl_causal_488_4chn_v1_1": How("run", expect="MiB cached"),
    "vidtok download vidtok_kl_causal_488_4chn_v1_1 vidtok_fsq_causal_488_32768_v1_1": How("run", expect="MiB cached"),
    "vidtok reconstruct --tokenizer vidtok_kl_causal_488_4chn_v1_1 in.mp4 out.mp4 --side-by-side": How(
        "run", expect="PSNR"
    ),
    "vidtok reconstruct --tokenizer vidtok_kl_causal_488_4chn_v1_1 in.mp4 small.mp4 --height 32 --width 32 "
    "--fps 12 --max-frames 9": How("run", expect="5 frames, 32x32"),
    "vidtok reconstruct --ckpt vidtok_kl_causal_488_4chn_v1_1.ckpt in.mp4 tiled.mp4 --tile 32 --tile-overlap 16 "
    "--chunk-frames 8 --chunk-latents 2": RUN,
    "vidtok encode --tokenizer vidtok_fsq_causal_488_32768_v1_1 in.mp4 tokens.safetensors --indices": RUN,
    "vidtok decode tokens.safetensors decoded.mp4": RUN,
    "vidtok encode --tokenizer vidtok_kl_causal_488_4chn_v1_1 in.mp4 in.latents.safetensors": RUN,
    "vidtok shards videos/ shards/train-%06d.tar --max-count 2": RUN,
    "vidtok shards videos/ shards/train-%06d.tar --max-count 2 --quiet": RUN,
    "vidtok shards train.csv shards_csv/train-%06d.tar --data-dir videos/ --column videos --resize 32": RUN,
    # training
    "python train.py experiment=demo": SHORT_DEMO,
    "python train.py experiment=debug data.path=videos/": RUN,
    "python train.py regularizer=fsq compression=488 --cfg job": How("run", expect="kind: fsq"),
    "accelerate launch train.py regularizer=fsq compression=488 data.path=videos/ val_data.path=val/": DRY,
    "accelerate launch train.py tokenizer=vidtok_kl_causal_488_4chn_v1_1 "
    "init_from=vidtok_kl_causal_488_4chn_v1_1 data=shards data.path='shards/train-{000000..000001}.tar' "
    "val_data.path=val/": DRY,
    "ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 train.py experiment=debug "
    "data.path=videos/": RUN,
    "python train.py -m --config-dir sweeps --config-name regularizer_x_compression data.path=videos/ "
    "val_data.path=val/": DRY,
    "python train.py -m --config-dir sweeps --config-name learning_rate data.path=videos/": DRY,
    "python train.py -m regularizer=kl,fsq optim.lr=1e-5,2e-5 data.path=videos/": DRY,
    "python train.py -m compression=488,444 regularizer=kl,fsq data.path=videos/": DRY,
    "python train.py -m compression=488,444 regularizer=kl,fsq data.path=videos/ dry_run=true": How(
        "run", expect="4x4x4 FSQ 262144"
    ),
    "python train.py -m --config-dir sweeps --config-name slurm regularizer=kl,fsq data=shards "
    "data.path='shards/train-{000000..000001}.tar' hydra.launcher.partition=gpu hydra.launcher.nodes=2": How("slurm"),
    "accelerate launch --multi_gpu --num_machines 2 --machine_rank $NODE_RANK --num_processes 16 "
    "--main_process_ip $FIRST_NODE --main_process_port 29500 train.py run_dir=runs/fsq488 regularizer=fsq "
    "compression=488 data=shards data.path='shards/train-{000000..000001}.tar'": How("launch"),
    # comparisons (a stand-in Wan autoencoder in the offline Hub cache)
    "python evaluate.py 'tokenizers=[vidtok_kl_causal_488_4chn_v1_1,diffusers:Wan-AI/Wan2.1-T2V-1.3B-Diffusers/vae]' "
    "data.dir=val/ height=32 width=32 metrics.lpips=false": How("run", expect="vidtok comparison of 2 tokenizers"),
    "python evaluate.py 'tokenizers=[vidtok_kl_causal_488_16chn_v1_1,vidtok_fsq_causal_488_32768_v1_1,"
    "diffusers:THUDM/CogVideoX-2b/vae,diffusers:Wan-AI/Wan2.1-T2V-1.3B-Diffusers/vae,"
    "{diffusers:hunyuanvideo-community/HunyuanVideo/vae,tiling:true,name:HunyuanVideo}]' data.dir=mcl_jcv/ "
    "metrics.fvd=true": How("suffix", " --cfg job", expect="name: HunyuanVideo"),
    "python evaluate.py benchmark=mcl_jcv 'tokenizers=[vidtok_kl_causal_488_4chn,vidtok_kl_causal_488_4chn_v1_1]' "
    "data.dir=mcl_jcv/": How("suffix", " --cfg job", expect="benchmark: mcl_jcv"),
    "python evaluate.py ckpt=runs/demo/checkpoints/step_00000400/tokenizer.safetensors "
    "reference=vidtok_kl_causal_488_4chn data.dir=val/ height=32 width=32 metrics.lpips=false": How(
        "run", expect="latent drift from vidtok_kl_causal_488_4chn: relative L2"
    ),
    # evaluation
    "python evaluate.py ckpt=vidtok_kl_causal_488_4chn.ckpt data.dir=val/ height=32 width=32 metrics.lpips=false": How(
        "run", expect="2 videos evaluated"
    ),
    "python evaluate.py ckpt=runs/demo/checkpoints/step_00000400/tokenizer.safetensors "
    "data.dir=vidtok/assets/demo/val height=64 width=64 sample_fps=8 clip_frames=9 metrics.lpips=false": How(
        "run", expect="4 videos evaluated (16 clips)"
    ),
    "python evaluate.py tokenizer=vidtok_kl_causal_488_4chn data.dir=mcl_jcv/": CFG,
    "python evaluate.py tokenizer=vidtok_fsq_noncausal_488_262144 data.dir=mcl_jcv/": CFG,
    "python evaluate.py tokenizer=vidtok_kl_causal_488_4chn_v1_1 data.dir=mcl_jcv/ mode=whole": CFG,
    "python evaluate.py ckpt=runs/x/checkpoints/step_00020000/tokenizer.safetensors data.dir=val/ metrics.fvd=true "
    "output.reconstructions=true output.side_by_side=true": CFG,
    "python evaluate.py ckpt=finetuned.ckpt tokenizer=vidtok_kl_causal_488_4chn_v1_1 data.dir=test.csv": CFG,
    "accelerate launch --num_processes 8 evaluate.py ckpt=vidtok_kl_causal_488_4chn.ckpt "
    "data.dir='shards/train-{000000..000001}.tar' metrics.fvd=true": CFG,
    # dataset encoding
    "python encode.py tokenizer=vidtok_kl_causal_488_4chn_v1_1 data.dir=videos/ output.dir=latents/": CFG,
    "python encode.py tokenizer=vidtok_fsq_causal_488_32768_v1_1 data.dir=videos/ output.dir=tokens/ "
    "output.indices=true height=32 width=32": How("run", expect="wrote 8 samples of vidtok_fsq_causal_488_32768_v1_1"),
    "python encode.py tokenizer=vidtok_kl_causal_488_4chn_v1_1 data.dir=videos/ output.dir=latents_aspect/ "
    "resize=aspect short_side=32 max_frames=33": How("run", expect="wrote 4 samples"),
    "python encode.py tokenizer=vidtok_kl_causal_488_4chn_v1_1 data.dir=videos/ output.dir=latents_buckets/ "
    "resize=buckets 'buckets=[32x32,32x56,56x32]' max_frames=17": How("run", expect="wrote 4 samples"),
    "python decode.py data.dir=tokens/ output.dir=decoded/": How("run", expect="wrote 8 videos with"),
    # the walk-through of generative.md (on the bundled clips)
    "python encode.py tokenizer=vidtok_kl_causal_488_4chn_v1_1 data.dir=vidtok/assets/demo/train/ data.limit=4 "
    "output.dir=latents/ resize=buckets 'buckets=[32x32,32x56,56x32]' max_frames=17 output.posterior=true": How(
        "run", expect="wrote 4 samples"
    ),
    "python decode.py tokenizer=vidtok_kl_causal_488_4chn_v1_1 data.dir=generated_latents/ stats=latents/stats.json "
    "output.dir=generated_videos/": How("run", expect="wrote 4 videos"),
    "vidtok fvd generated_videos/ vidtok/assets/demo/val/ --detector i3d_torchscript.pt --height 32 --width 56 "
    "--clips first": How("suffix", " --no-detector-check", expect="generated_videos/ (4 videos, 4 clips) vs"),
    # the stand-in detector is not the reference I3D: its SHA-256 check is the one thing left out
    "vidtok fvd generated/ real/ --detector i3d_torchscript.pt --height 32 --width 32 --report fvd.json": How(
        "suffix", " --no-detector-check", expect="generated/ (3 videos, 6 clips"
    ),
    "vidtok fvd generated/ real/ --detector i3d_torchscript.pt --height 32 --width 32": How(
        "suffix", " --no-detector-check", expect="FVD "
    ),
    "python decode.py tokenizer=vidtok_kl_causal_488_4chn_v1_1 data.dir=generated/ stats=latents/stats.json "
    "output.dir=generated_videos/": CFG,
    "accelerate launch --num_processes 8 decode.py data.dir=tokens/ output.dir=decoded/": CFG,
    "accelerate launch --num_processes 8 encode.py tokenizer=vidtok_fsq_causal_488_32768_v1_1 "
    "data.dir='shards/train-{000000..000001}.tar' output.dir=tokens/ output.indices=true": CFG,
    "accelerate launch --multi_gpu --num_machines 2 --machine_rank $NODE_RANK --num_processes 16 "
    "--main_process_ip $FIRST_NODE --main_process_port 29500 encode.py tokenizer=vidtok_kl_causal_488_4chn_v1_1 "
    "data.dir='shards/train-{000000..000001}.tar' output.dir=latents/": How("launch"),
}


# ---- reading the pages ---------------------------------------------------------------------------------------


@dataclass
class Block:
    page: str
    line: int
    lang: str
    body: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    def commands(self) -> list[str]:
        if self.lang == "console":
            lines, keep = [], False
            for raw in self.body.splitlines():
                if raw.startswith("$ "):
                    lines.append(raw[2:])
                    keep = raw.rstrip().endswith("\\")
                elif keep:
                    lines.append(raw)
                    keep = raw.rstrip().endswith("\\")
            text = "\n".join(lines)
        else:
            text = self.body
        joined = re.sub(r"\\\n\s*", "", text)
        out = []
        for line in joined.splitlines():
            line = strip_comment(line).strip()
            if line:
                out.append(re.sub(r"\s+", " ", line))
        return out


def strip_comment(line: str) -> str:
    """The line without a trailing ``# comment`` (a # inside quotes or a word stays)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def blocks() -> list[Block]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for m in re.finditer(r"^```(\w+)\n(.*?)^```\s*$", text, flags=re.S | re.M):
            if m.group(1) in ("bash", "console", "python"):
                line = text[: m.start()].count("\n") + 1
                found.append(Block(page.relative_to(REPO).as_posix(), line, m.group(1), m.group(2)))
    return found


BLOCKS = blocks()
SHELL = [b for b in BLOCKS if b.lang != "python"]
PYTHON = [b for b in BLOCKS if b.lang == "python"]
#: Pages whose blocks are one walk-through: run in order, in one folder, each block on what the earlier ones wrote.
WALKTHROUGHS = ["docs/generative.md"]


def test_every_command_on_the_pages_is_known_and_every_known_command_is_shown() -> None:
    shown = {c for b in SHELL for c in b.commands()}
    assert not sorted(shown - set(HOW)), "commands on the pages that no test runs (add them to HOW)"
    assert not sorted(set(HOW) - shown), "HOW lists commands that no page shows any more"
    assert PYTHON and SHELL


# ---- the folder the commands run in ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import vidtok
    from vidtok.data import folder_records, write_shards
    from vidtok.io.weight_files import save_tokenizer_safetensors

    base = tmp_path_factory.mktemp("docs_sandbox")
    for i in range(4):
        write_indexed_video(base / "videos" / f"clip{i}.mp4", frames=40, fps=24, height=64, width=64)
    for i in range(2):
        write_indexed_video(base / "val" / f"val{i}.mp4", frames=17, fps=24, height=64, width=64)
    write_indexed_video(base / "in.mp4", frames=9, fps=24, height=48, width=48)
    for i in range(3):  # a generative model's output, and real clips to judge it against
        write_indexed_video(base / "generated" / f"sample{i}.mp4", frames=33, fps=24, height=40, width=48)
    for i in range(2):
        write_indexed_video(base / "real" / f"real{i}.mp4", frames=40, fps=24, height=64, width=64)
    save_detector(base / "i3d_torchscript.pt", 16)  # a stand-in: the reference file cannot be had offline
    (base / "train.csv").write_text("videos\n" + "".join(f"clip{i}.mp4\n" for i in range(4)))
    write_shards(folder_records(base / "videos"), str(base / "shards" / "train-%06d.tar"), max_count=2, progress=False)
    for name in CHECKPOINTS:  # official format: a Lightning-style dict with the state under "state_dict"
        torch.manual_seed(0)
        torch.save({"state_dict": vidtok.load_tokenizer(name, pretrained=False).state_dict()}, base / f"{name}.ckpt")
    # the same files as the Hub's: names alone load them (offline), as they would the published weights
    add_to_hub_cache(base / ".hf", {name: base / f"{name}.ckpt" for name in CHECKPOINTS})
    wan = save_diffusers_model("wan", base / "stand-ins" / "wan_vae")  # Compare tokenizers: Wan's VAE by its Hub id
    add_repo_to_hub_cache(base / ".hf", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", {f"vae/{p.name}": p for p in wan.iterdir()})
    demo = vidtok.load_tokenizer(
        "vidtok_kl_causal_488_4chn", overrides=["model.ch=16", "model.num_res_blocks=1"], pretrained=False
    )
    step = base / "runs" / "demo" / "checkpoints" / "step_00000400"
    step.mkdir(parents=True)
    save_tokenizer_safetensors(demo.state_dict(), demo.config, step / "tokenizer.safetensors")
    links = (
        "train.py",
        "evaluate.py",
        "encode.py",
        "decode.py",
        "sweeps",
        "conf",
        "vidtok",
        "docs",
        "mkdocs.yml",
        "benchmarks",
    )
    for name in links:
        (base / name).symlink_to(REPO / name)
    return base


def workdir(sandbox: Path, block: Block, tmp_path: Path) -> Path:
    """A fresh folder with links to the sandbox's files; a block that writes shards/ gets none to start from."""
    writes_shards = any(c.startswith("vidtok shards") and " shards/" in c for c in block.commands())
    tmp_path.mkdir(parents=True)
    for item in sandbox.iterdir():
        if item.name == "shards" and writes_shards:
            continue
        (tmp_path / item.name).symlink_to(item.resolve() if item.is_symlink() else item, item.is_dir())
    return tmp_path


def environment(tmp_path: Path, sandbox: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIDTOK_", "PYTEST"))}
    env.update(hub_environment(sandbox / ".hf", sandbox / ".vidtok_cache"))
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        WANDB_MODE="disabled",
        TORCH_HOME=str(tmp_path / ".torch"),
        NODE_RANK="0",
        FIRST_NODE="127.0.0.1",
    )
    return env


def shell(command: str, cwd: Path, env: dict[str, str], timeout: int = 600) -> str:
    proc = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"`{command}` failed ({proc.returncode}):\n{output[-4000:]}"
    return output


def _named_inputs(command: str, cwd: Path) -> tuple:
    """What the files a command names (``a.mp4``, ``data.dir=val/``) hold before it runs: path, size and hash."""
    state = []
    for word in shlex.split(command, posix=True):
        for name in {word, word.split("=", 1)[-1]}:
            path = cwd / name
            if not name or name.startswith("-") or not path.exists() or path.resolve().is_relative_to(REPO):
                continue  # (the checkout's own files - scripts, configs, the package - are the same for every block)
            files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
            for f in files:
                state.append((str(f.relative_to(cwd)), f.stat().st_size, hashlib.sha256(f.read_bytes()).hexdigest()))
    return tuple(sorted(state))


def _files(cwd: Path) -> dict[str, tuple[int, int]]:
    """The files of a block's folder itself (the sandbox's shared folders are links, not followed)."""
    found = {}
    for root, dirs, names in os.walk(cwd):
        dirs[:] = [d for d in dirs if not Path(root, d).is_symlink()]
        for name in names:
            f = Path(root, name)
            if not f.is_symlink():
                found[str(f.relative_to(cwd))] = (f.stat().st_size, f.stat().st_mtime_ns)
    return found


_RAN: dict[tuple, tuple[str, dict[str, bytes]]] = {}


def run_once(command: str, cwd: Path, env: dict[str, str]) -> str:
    """``shell(command)``, once per session for the same files named on its line: where another page shows the same
    command over the same inputs, its output and the files it wrote into the folder are replayed (the command ran,
    as typed, on those inputs; running it again would check nothing more)."""
    key = (command, _named_inputs(command, cwd))
    if key in _RAN:
        out, written = _RAN[key]
        for name, data in written.items():
            (cwd / name).parent.mkdir(parents=True, exist_ok=True)
            (cwd / name).write_bytes(data)
        return out
    before = _files(cwd)
    out = shell(command, cwd, env)
    written = {name: (cwd / name).read_bytes() for name, stamp in _files(cwd).items() if before.get(name) != stamp}
    _RAN[key] = (out, written)
    return out


def run_ci_command(command: str, cwd: Path, env: dict[str, str], main_page: bool) -> None:
    """The set-up line as .ci/run runs it; the demo short, and on the README (the front door) its printed next
    commands run too."""
    ci = (REPO / ".ci" / "run").read_text()
    for step in (s.strip() for s in command.split("&&")):
        if step == "python train.py experiment=demo":
            output = run_once(step + SHORT_DEMO.suffix, cwd, env)
            if main_page:
                run_the_demos_next_commands(output, cwd, env)
        elif step.startswith("pip install"):
            assert step.replace("pip install ", "pip install --quiet ") in ci, f"{step!r} is not what .ci/run installs"
        elif step.startswith(("python3 -m venv", ". .venv/bin/activate")):
            assert "python3 -m venv" in ci and "/bin/activate" in ci, ".ci/run makes no virtual environment"
        else:  # the test command: CI runs it (running pytest inside pytest would only recurse)
            assert ci.rstrip().endswith(command.split("&&", 1)[1].strip()), f".ci/run does not end with {step!r}"


def run_the_demos_next_commands(output: str, cwd: Path, env: dict[str, str]) -> None:
    """The README's main job ends by printing where the run is, what it reached and the two next commands
    (reconstruct a clip with the trained checkpoint, evaluate it): pasted as printed, both run."""
    ending = output[output.index("Training finished at step 2.") :]
    assert re.search(r"run folder: +runs/train/\S+\n", ending), ending
    assert re.search(r"validation: +PSNR \d+\.\d\d dB, SSIM \d\.\d{4}", ending), ending
    commands = [line.strip() for line in ending.splitlines() if line.startswith(("  vidtok ", "  python "))]
    assert [c.split()[:2] for c in commands] == [["vidtok", "reconstruct"], ["python", "-m"]], ending
    assert "wrote out.mp4: 34 frames, 64x64 at 8 fps" in shell(commands[0], cwd, env)
    assert "4 videos evaluated (16 clips)" in shell(commands[1], cwd, env)


def run_launch_command(command: str, cwd: Path, env: dict[str, str]) -> None:
    from accelerate.commands.launch import launch_command_parser

    words = shlex.split(os.path.expandvars(command.replace("$NODE_RANK", "0").replace("$FIRST_NODE", "127.0.0.1")))
    assert words[:2] == ["accelerate", "launch"]
    args = launch_command_parser().parse_args(words[2:])
    assert args.multi_gpu and args.num_machines == 2 and args.num_processes == 16
    assert args.training_script in ("train.py", "encode.py"), args.training_script
    app = " ".join(shlex.quote(w) for w in [args.training_script, *args.training_script_args])
    shell(f"python {app} --cfg job", cwd, env)


def run_slurm_command(command: str, cwd: Path, env: dict[str, str]) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="hydra-submitit-launcher is not installed")
    words = shlex.split(command)
    assert words[2] == "-m"
    single = [w for w in words[3:] if "," not in w]  # one job of the sweep; --cfg and -m do not combine
    out = shell(" ".join(shlex.quote(w) for w in ["python", "train.py", *single, "--cfg", "hydra"]), cwd, env)
    assert "SlurmLauncher" in out and "partition: gpu" in out and "nodes: 2" in out, out[-2000:]


def run_shell_block(block: Block, cwd: Path, env: dict[str, str]) -> None:
    for command in block.commands():
        how = HOW[command]
        if how.kind == "ci":
            run_ci_command(command, cwd, env, main_page=block.page == "README.md")
        elif how.kind == "launch":
            run_launch_command(command, cwd, env)
        elif how.kind == "slurm":
            run_slurm_command(command, cwd, env)
        else:
            out = run_once(command + how.suffix, cwd, env)
            assert how.expect in out, f"`{command}` printed no {how.expect!r}:\n{out[-3000:]}"


def run_python_block(block: Block, cwd: Path, env: dict[str, str]) -> str:
    (cwd / "example.py").write_text(block.body)
    return shell("python example.py", cwd, env)


ALONE = [b for b in SHELL if b.page not in WALKTHROUGHS]


@pytest.mark.slow
@pytest.mark.parametrize("block", ALONE, ids=[b.id for b in ALONE])
def test_shell_block_runs(block: Block, sandbox: Path, tmp_path: Path) -> None:
    run_shell_block(block, workdir(sandbox, block, tmp_path / "work"), environment(tmp_path, sandbox))


@pytest.mark.slow
@pytest.mark.parametrize("page", WALKTHROUGHS)
def test_walkthrough_runs_top_to_bottom(page: str, sandbox: Path, tmp_path: Path) -> None:
    steps = [b for b in BLOCKS if b.page == page]
    assert steps, f"{page} has no blocks"
    cwd = workdir(sandbox, steps[0], tmp_path / "work")
    env = environment(tmp_path, sandbox)
    for block in steps:
        if block.lang == "python":
            run_python_block(block, cwd, env)
        else:
            run_shell_block(block, cwd, env)


PYTHON_ALONE = [b for b in PYTHON if b.page not in WALKTHROUGHS]


@pytest.mark.slow
@pytest.mark.parametrize("block", PYTHON_ALONE, ids=[b.id for b in PYTHON_ALONE])
def test_python_block_runs(block: Block, sandbox: Path, tmp_path: Path) -> None:
    run_python_block(block, workdir(sandbox, block, tmp_path / "work"), environment(tmp_path, sandbox))


def test_docstrings_cross_reference_in_the_docs_sites_syntax() -> None:
    """The API reference renders docstrings with mkdocstrings, which links ``[`name`][target]`` (checked by the
    strict build: an unknown target fails it) and would print a Sphinx role such as ``:func:`name``` as text."""
    role = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|exc|obj):`")
    found = [
        f"{path.relative_to(REPO)}:{number}"
        for path in sorted((REPO / "vidtok").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if role.search(line)
    ]
    assert not found, f"Sphinx roles the docs site shows as text: {found[:10]}"
    assert "scoped_crossrefs: true" in (REPO / "mkdocs.yml").read_text()
