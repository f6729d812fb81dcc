"""Training: config composition and validation, steps, checkpoints, exact resume, failures, processes, sweeps."""

from __future__ import annotations

import itertools
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from videos import write_indexed_video

import vidtok
from vidtok.accelerator import end_processes, free_port
from vidtok.errors import ConfigError, TrainingError
from vidtok.losses.discriminator import NLayerDiscriminator3D
from vidtok.training import Trainer, compose_train_config, load_run_config
from vidtok.training.checkpoints import CheckpointDir
from vidtok.training.summary import run_ending

from conftest import perturb_, training_checkpoint

REPO = Path(__file__).resolve().parents[1]
MODELS = ("causal", "causal_v1_1", "noncausal")
REGULARIZERS = ("kl", "fsq")
COMPRESSIONS = ("488", "444", "288", "41616", "888")
STAGES = ("lowres", "highres_decoder")


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six small real videos (h264 mp4) to train and validate on."""
    root = tmp_path_factory.mktemp("videos")
    for i in range(6):
        write_indexed_video(root / f"clip{i}.mp4", frames=24 + 4 * i, height=40, width=48)
    return root


def debug_run(tmp_path: Path, video_dir: Path, *overrides: str):
    cfg = compose_train_config(
        [
            "experiment=debug",
            f"data.path={video_dir}",
            f"val_data.path={video_dir}",
            f"run_dir={tmp_path / 'run'}",
            "train.threads=1",
            *overrides,
        ]
    )
    return load_run_config(cfg)


def losses(trainer: Trainer) -> list[tuple[float, float]]:
    return [(h["step"], h.get("total_loss", float("nan"))) for h in trainer.history]


# ---- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize("model,regularizer", list(itertools.product(MODELS, REGULARIZERS)))
def test_every_group_combination_composes(model: str, regularizer: str) -> None:
    for compression, stage in itertools.product(COMPRESSIONS, STAGES):
        frames = 16 if model == "noncausal" else 17  # fits every compression's temporal factor (2, 4, 8)
        extra = ["init_from=stage1.safetensors"] if stage == "highres_decoder" else []
        cfg = compose_train_config(
            [
                f"model={model}",
                f"regularizer={regularizer}",
                f"compression={compression}",
                f"stage={stage}",
                "data.path=videos",
                f"data.num_frames={frames}",
                "run_dir=runs/x",
                *extra,
            ]
        )
        run = load_run_config(cfg)
        assert run.tokenizer.regularizer.kind == regularizer
        assert run.tokenizer.compression.spatial == (16 if compression == "41616" else int(compression[1]))
        assert run.stage.name == stage and run.resolution == ((128, 128) if stage == "lowres" else (256, 256))
        assert run.stage.freeze_encoder == (stage == "highres_decoder")


def test_official_preset_composes_for_training() -> None:
    run = load_run_config(compose_train_config(["tokenizer=vidtok_fsq_causal_488_262144", "data.path=v", "run_dir=r"]))
    assert run.tokenizer.name == "vidtok_fsq_causal_488_262144" and run.tokenizer.codebook_size == 262144


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["regularizer=vq"], "regularizer"),
        (["compression=489"], "compression"),
        (["data.num_frames=16"], "data.num_frames=16 does not fit"),
        (["model=noncausal", "data.num_frames=17"], "data.num_frames=17 does not fit"),
        (["data.height=100", "data.width=128"], "height 100 is not divisible by the spatial factor 8"),
        (["stage=highres_decoder"], "init_from"),
        (["train.mixed_precision=fp8"], "train.mixed_precision"),
        (["+train.stepz=3"], "unknown train option"),
        (["optim.lr=-1"], "optim.lr"),
        (["logger.kind=mlflow"], "logger.kind"),
    ],
)
def test_bad_config_values_fail_at_start_naming_the_value(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_run_config(compose_train_config(["data.path=v", "run_dir=r", *overrides]))


def test_data_path_is_required() -> None:
    with pytest.raises(ConfigError, match="data.path"):
        load_run_config(compose_train_config(["run_dir=r"]))


# ---- training, checkpoints and resume -----------------------------------------------------------


def test_debug_run_trains_saves_and_exports(tmp_path: Path, video_dir: Path) -> None:
    run = debug_run(tmp_path, video_dir)
    trainer = Trainer(run)
    trainer.fit()
    assert [h["step"] for h in trainer.history] == [1, 2, 3, 4]
    assert all(torch.isfinite(torch.tensor(v)) for _, v in losses(trainer))
    assert "g_loss" in trainer.history[-1] and "disc_loss" in trainer.history[-1]  # discriminator from step 2
    assert "disc_loss" not in trainer.history[0]
    # the discriminator's Adam counts the 2 batches before disc_start, as the original's does
    assert {int(state["step"]) for state in trainer.opt_d.state.values()} == {4}
    ckpts = CheckpointDir(tmp_path / "run" / "checkpoints").complete()
    assert [s for s, _ in ckpts] == [2, 4]  # keep 2
    last = ckpts[-1][1]
    tok = vidtok.load_tokenizer(ckpt=last / "tokenizer.safetensors")
    assert all(not k.startswith("loss.") for k in tok.state_dict())
    assert torch.equal(tok.state_dict()["decoder.conv_out.conv.weight"], trainer.tok.decoder.conv_out.conv.weight)
    samples = sorted((tmp_path / "run" / "samples").glob("*.mp4"))
    assert samples, "validation reconstructions are written"


def test_stop_and_resume_gives_the_same_losses(tmp_path: Path, video_dir: Path) -> None:
    full = Trainer(debug_run(tmp_path / "a", video_dir, "train.max_steps=5", "loss.disc_start=1"))
    full.fit()
    first = Trainer(debug_run(tmp_path / "b", video_dir, "train.max_steps=3", "loss.disc_start=1"))
    first.fit()
    resumed = Trainer(debug_run(tmp_path / "b", video_dir, "train.max_steps=5", "loss.disc_start=1"))
    resumed.fit()
    assert losses(first) + losses(resumed) == losses(full)
    for key, value in full.tok.state_dict().items():
        assert torch.equal(value, resumed.tok.state_dict()[key]), key


def test_a_run_killed_while_saving_resumes_from_the_last_complete_checkpoint(
    tmp_path: Path, video_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer = Trainer(debug_run(tmp_path, video_dir, "train.max_steps=4", "checkpoint.every=2"))
    real_save = trainer.acc.save_state
    calls = []

    def dying_save(folder: str, *args, **kwargs):
        calls.append(folder)
        if len(calls) == 2:  # the step-4 save: write part of it, then die
            real_save(folder, *args, **kwargs)
            (Path(folder) / "model.safetensors").write_bytes(b"half")
            raise KeyboardInterrupt
        return real_save(folder, *args, **kwargs)

    monkeypatch.setattr(trainer.acc, "save_state", dying_save)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    root = tmp_path / "run" / "checkpoints"
    assert [s for s, _ in CheckpointDir(root).complete()] == [2]
    assert any(p.name.startswith(".tmp-") for p in root.iterdir())
    monkeypatch.undo()
    again = Trainer(debug_run(tmp_path, video_dir, "train.max_steps=4"))
    assert not any(p.name.startswith(".tmp-") for p in root.iterdir())  # leftovers cleaned at start
    assert again.resume() is not None and again.state.step == 2
    again.fit()
    assert [s for s, _ in CheckpointDir(root).complete()] == [2, 4]


def test_non_finite_losses_skip_steps_then_stop_with_a_checkpoint(
    tmp_path: Path, video_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer = Trainer(debug_run(tmp_path, video_dir, "train.max_steps=10", "train.max_nonfinite=3"))
    real = trainer.loss.generator_loss
    bad_steps = {1, 3, 4, 5}

    def sometimes_nan(inputs, recon, terms, step, last_layer):
        loss, logs = real(inputs, recon, terms, step, last_layer)
        return (loss * float("nan") if step in bad_steps else loss), logs

    monkeypatch.setattr(trainer.loss, "generator_loss", sometimes_nan)
    before = {k: v.clone() for k, v in trainer.tok.state_dict().items()}
    with pytest.raises(TrainingError, match="3 steps in a row had a non-finite loss"):
        trainer.fit()
    assert trainer.state.nonfinite_total == 4 and trainer.state.step == 6
    skipped = [h for h in trainer.history if h.get("skipped_step")]
    assert [h["step"] for h in skipped] == [2, 4, 5]  # the third in a row raises before it is logged
    saved = CheckpointDir(tmp_path / "run" / "checkpoints").latest()
    assert saved is not None and json.loads((saved / "trainer_state.json").read_text())["step"] == 6
    weights = vidtok.load_tokenizer(ckpt=saved / "tokenizer.safetensors").state_dict()
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert any(not torch.equal(weights[k], before[k]) for k in before)  # steps 1 and 3 did train


def test_bf16_mixed_precision_step(tmp_path: Path, video_dir: Path) -> None:
    trainer = Trainer(debug_run(tmp_path, video_dir, "train.max_steps=2", "train.mixed_precision=bf16"))
    seen: list[torch.dtype] = []  # what the decoder's last convolution computes in, during the training steps
    hook = trainer.tok.decoder.conv_out.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    trainer.fit()
    hook.remove()
    assert seen and torch.bfloat16 in seen, seen
    assert all(torch.isfinite(torch.tensor(v)) for _, v in losses(trainer))
    assert all(p.dtype == torch.float32 for p in trainer.tok.parameters())  # weights stay fp32 (autocast only)


def test_fsq_with_3d_discriminator_and_ema(tmp_path: Path, video_dir: Path) -> None:
    run = debug_run(
        tmp_path,
        video_dir,
        "regularizer=fsq",
        "regularizer.levels=[8,5,5]",
        "loss.disc_type=3d",
        "loss.disc_start=0",
        "train.ema_decay=0.9",
        "train.max_steps=2",
    )
    trainer = Trainer(run)
    disc = trainer.loss.discriminator
    assert isinstance(disc, NLayerDiscriminator3D)
    convs = [m for m in disc.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d))]
    assert convs and all(isinstance(m, torch.nn.Conv3d) for m in convs)
    judged: list[tuple[int, ...]] = []  # the shapes the discriminator scored during training
    hook = disc.register_forward_hook(lambda module, args, out: judged.append(tuple(args[0].shape)))
    trainer.fit()
    hook.remove()
    assert judged and all(len(shape) == 5 and shape[2] == 9 for shape in judged), judged  # whole (N, C, T, H, W) clips
    assert "aux_loss" in trainer.history[-1] and "disc_loss" in trainer.history[-1]
    last = CheckpointDir(tmp_path / "run" / "checkpoints").latest()
    ema = vidtok.load_tokenizer(ckpt=last / "tokenizer_ema.safetensors").state_dict()
    live = trainer.tok.state_dict()
    assert any(not torch.equal(ema[k], live[k]) for k in live)


def test_highres_decoder_stage_freezes_the_encoder(tmp_path: Path, video_dir: Path) -> None:
    stage1 = Trainer(debug_run(tmp_path / "s1", video_dir, "train.max_steps=1"))
    stage1.fit()
    init = CheckpointDir(tmp_path / "s1" / "run" / "checkpoints").latest() / "tokenizer.safetensors"
    run = debug_run(
        tmp_path / "s2", video_dir, "stage=highres_decoder", f"init_from={init}", "data.height=48", "data.width=48"
    )
    trainer = Trainer(run)
    start = {k: v.clone() for k, v in trainer.tok.state_dict().items()}
    assert torch.equal(start["encoder.conv_in.conv.weight"], stage1.tok.state_dict()["encoder.conv_in.conv.weight"])
    trainer.fit()
    end = trainer.tok.state_dict()
    enc = [k for k in start if k.startswith("encoder.")]
    dec = [k for k in start if k.startswith("decoder.")]
    assert all(torch.equal(start[k], end[k]) for k in enc)
    assert any(not torch.equal(start[k], end[k]) for k in dec)


# ---- what a finished run prints ------------------------------------------------------------------


def demo_run_config(*overrides: str):
    return load_run_config(compose_train_config(["experiment=demo", "run_dir=runs/demo", *overrides]))


def command_lines(text: str) -> dict[str, str]:
    """The printed commands of a run's ending, by program (``vidtok`` / ``python``)."""
    commands = [line.strip() for line in text.splitlines() if line.startswith(("  vidtok ", "  python "))]
    return {command.split()[0]: command for command in commands}


def test_the_ending_names_folder_metrics_checkpoint_and_two_pasteable_commands(tmp_path: Path) -> None:
    run = demo_run_config()
    val = Path(run.val_data.path)
    step = tmp_path / "runs" / "demo" / "checkpoints" / "step_00000002"
    text = run_ending(
        run,
        run_dir=tmp_path / "runs" / "demo",
        step=2,
        validation={"val/psnr": 14.567, "val/ssim": 0.41234, "val/clips": 1.0},
        checkpoint=step,
        video=str(val / "bbb_bird.mp4"),
        cwd=tmp_path,
    )
    assert "run folder:      runs/demo\n" in text  # inside the current folder: relative
    assert "PSNR 14.57 dB, SSIM 0.4123" in text
    assert "last checkpoint: runs/demo/checkpoints/step_00000002\n" in text
    commands = command_lines(text)
    ckpt = "runs/demo/checkpoints/step_00000002/tokenizer.safetensors"
    assert commands["vidtok"] == (
        f"vidtok reconstruct --ckpt {ckpt} {val}/bbb_bird.mp4 out.mp4 --side-by-side --height 64 --width 64 --fps 8"
    )  # the clips lie outside the current folder: absolute
    assert commands["python"] == (
        f"python -m vidtok.evaluate ckpt={ckpt} data.dir={val} height=64 width=64 sample_fps=8 clip_frames=9 "
        "metrics.lpips=false"  # the run validated without LPIPS, whose VGG16 weights may be absent
    )
    assert len(text.splitlines()) <= 8


def test_the_ending_says_when_there_is_no_validation_or_no_checkpoint(tmp_path: Path) -> None:
    run = demo_run_config("val_data.path=null")
    common = dict(run_dir=tmp_path / "run", step=3, validation={}, video="clip.mp4", cwd=tmp_path)
    without_validation = run_ending(run, checkpoint=tmp_path / "run" / "checkpoints" / "step_00000003", **common)
    assert "validation:      none (no val_data.path)" in without_validation
    assert "No validation data to evaluate it on" in without_validation
    assert "python" not in command_lines(without_validation)
    assert command_lines(without_validation)["vidtok"].startswith("vidtok reconstruct --ckpt run/checkpoints/")
    without_checkpoint = run_ending(run, checkpoint=None, **common)
    assert "none was saved, so there is nothing to reconstruct or evaluate yet" in without_checkpoint
    assert not command_lines(without_checkpoint)
    shards = run_ending(run, checkpoint=tmp_path / "ck", **{**common, "video": None})
    assert "no single video file to suggest" in shards and "<video>" in shards


def test_the_ending_quotes_paths_and_keeps_the_runs_lpips_weights(tmp_path: Path) -> None:
    run = demo_run_config("validation.lpips=true", "loss.vgg_path=/models/vgg 16.pth", "val_data.path=/data/my val")
    text = run_ending(
        run,
        run_dir=tmp_path / "a b",
        step=1,
        validation={"val/psnr": 20.0, "val/ssim": 0.5, "val/lpips": 0.25, "val_ema/psnr": 21.0, "val_ema/ssim": 0.6},
        checkpoint=tmp_path / "a b" / "checkpoints" / "step_00000001",
        video="/data/my val/x.mp4",
        cwd=tmp_path,
    )
    assert "LPIPS 0.2500; EMA weights: PSNR 21.00 dB, SSIM 0.6000" in text
    reconstruct = shlex.split(command_lines(text)["vidtok"])
    assert reconstruct[3:5] == ["a b/checkpoints/step_00000001/tokenizer.safetensors", "/data/my val/x.mp4"]
    evaluate = shlex.split(command_lines(text)["python"])
    assert "data.dir='/data/my val'" in evaluate and "metrics.vgg_path='/models/vgg 16.pth'" in evaluate
    assert not any(word.startswith("metrics.lpips") for word in evaluate)  # the run scored LPIPS: so does evaluate


# ---- processes, commands, sweeps ----------------------------------------------------------------


def command_env() -> dict[str, str]:
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("WORLD_SIZE", None)
    return env


@pytest.mark.slow
def test_sweep_of_two_runs(tmp_path: Path, video_dir: Path) -> None:
    cmd = [
        sys.executable, str(REPO / "train.py"), "-m", "experiment=debug", f"data.path={video_dir}",
        f"val_data.path={video_dir}", "train.max_steps=1", "optim.lr=1e-4,2e-4", "validation.at_start=false",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]  # fmt: skip
    result = subprocess.run(cmd, env=command_env(), capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for job in ("0", "1"):
        job_dir = tmp_path / "sweep" / job
        assert CheckpointDir(job_dir / "checkpoints").latest() is not None, job_dir
    from omegaconf import OmegaConf

    lrs = sorted(OmegaConf.load(tmp_path / "sweep" / j / "config.yaml").optim.lr for j in "01")
    assert lrs == [1e-4, 2e-4]


def _train_two_processes(run_dir: str, video_dir: str, break_sync: bool) -> None:
    from vidtok.training import Trainer, compose_train_config, load_run_config

    cfg = compose_train_config(
        ["experiment=debug", f"data.path={video_dir}", f"run_dir={run_dir}", "train.max_steps=2", "train.threads=1"]
    )
    trainer = Trainer(load_run_config(cfg))
    if break_sync:
        trainer._sync_gradients = lambda params: None
    try:
        trainer.fit()
        outcome = "ok"
    except TrainingError as err:
        outcome = str(err)
    Path(run_dir, f"outcome{trainer.acc.process_index}.txt").write_text(outcome)
    end_processes()  # as the jobs end: a process group left open can abort a rank (SIGABRT) as gloo tears down
    # The outcome is on disk. After the sync check failed, a rank has once still aborted in the interpreter's
    # teardown ("terminate called without an active exception", 1 run in ~10): leave without it.
    os._exit(0)


def _spawned_rank(rank: int, port: int, run_dir: str, video_dir: str, break_sync: bool) -> None:
    # a fresh interpreter per rank (spawn): forking a process whose thread pools are running can deadlock
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    os.environ["ACCELERATE_USE_CPU"] = "1"
    _train_two_processes(run_dir, video_dir, break_sync)


@pytest.mark.slow
@pytest.mark.parametrize("break_sync", [False, True])
def test_two_processes_average_gradients(tmp_path: Path, video_dir: Path, break_sync: bool) -> None:
    import torch.multiprocessing as mp

    args = (free_port(), str(tmp_path), str(video_dir), break_sync)
    mp.start_processes(_spawned_rank, args=args, nprocs=2, join=True, start_method="spawn")
    outcomes = {(tmp_path / f"outcome{r}.txt").read_text() for r in (0, 1)}
    if break_sync:  # each process sees its own clips: unsynchronised weights drift apart and are caught
        assert all("differ between the 2 processes" in o for o in outcomes)
    else:
        assert outcomes == {"ok"}


def test_gradient_accumulation_equals_a_larger_batch(tmp_path: Path, video_dir: Path) -> None:
    # FSQ without the (batch-nonlinear) entropy term and before the discriminator starts: accumulating
    # two batches of one is the same optimisation as one batch of two.
    common = ["regularizer=fsq", "regularizer.levels=[8,5,5]", "loss.entropy_weight=0", "loss.disc_start=100"]
    one = Trainer(debug_run(tmp_path / "a", video_dir, *common, "data.batch_size=2", "train.max_steps=2"))
    one.fit()
    two = Trainer(debug_run(tmp_path / "b", video_dir, *common, "train.grad_accum=2", "train.max_steps=2"))
    two.fit()
    for (_, a), (_, b) in zip(losses(one), losses(two), strict=True):
        assert a == pytest.approx(b, rel=1e-5)
    for key, value in one.tok.state_dict().items():
        torch.testing.assert_close(value, two.tok.state_dict()[key], rtol=1e-4, atol=1e-6)


def test_gradient_checkpointing_gives_the_same_step(tmp_path: Path, video_dir: Path) -> None:
    plain = Trainer(debug_run(tmp_path / "a", video_dir, "train.max_steps=1", "validation.at_start=false"))
    plain.fit()
    overrides = ("train.max_steps=1", "validation.at_start=false", "model.gradient_checkpointing=true")
    ckpt = Trainer(debug_run(tmp_path / "b", video_dir, *overrides))
    assert ckpt.tok.encoder.gradient_checkpointing
    ckpt.fit()
    assert losses(plain) == losses(ckpt)
    for key, value in plain.tok.state_dict().items():
        torch.testing.assert_close(value, ckpt.tok.state_dict()[key], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", ["tensorboard", "wandb"])
def test_loggers_write_without_network(tmp_path: Path, video_dir: Path, kind: str, monkeypatch) -> None:
    if kind == "wandb":
        pytest.importorskip("wandb")
        monkeypatch.setenv("WANDB_MODE", "offline")
    run = debug_run(tmp_path, video_dir, f"logger.kind={kind}", "logger.wandb_mode=offline", "train.max_steps=2")
    Trainer(run).fit()
    run_dir = tmp_path / "run"
    if kind == "tensorboard":
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(run_dir / "tb"))
        events.Reload()
        tags = events.Tags()["scalars"]
        assert {"train/total_loss", "train/samples_per_s", "val/psnr", "train/lr/generator"} <= set(tags)
        assert events.Tags()["images"], "validation samples are logged as frame strips"
    else:
        assert list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))


def test_slurm_nodes_build_one_accelerate_launch_each() -> None:
    from vidtok.training.launch import first_host, slurm_accelerate_command

    assert first_host("gpu[003-005,9],cpu1") == "gpu003"
    assert first_host("node7") == "node7" and first_host("a-b[10,12]") == "a-b10"
    env = {
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_NODEID": "1",
        "SLURM_GPUS_ON_NODE": "8",
        "SLURM_JOB_NODELIST": "gpu[017-018]",
        "SLURM_JOB_ID": "123456",
    }
    overrides = ["regularizer=fsq", "compression='488'", "launch.accelerate=true", "data.path=/d", "run_dir=/old"]
    cmd = slurm_accelerate_command(
        overrides, "/runs/7", env=env, config_dir="/repo/sweeps", config_name="slurm", python="python"
    )
    expected_head = [
        "python", "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "2", "--machine_rank", "1",
        "--num_processes", "16", "--main_process_ip", "gpu017", "--main_process_port", str(20000 + 123456 % 20000),
        "-m", "vidtok.train", "--config-dir", "/repo/sweeps", "--config-name", "slurm",
    ]  # fmt: skip
    assert cmd[: len(expected_head)] == expected_head
    passed = cmd[len(expected_head) :]
    assert passed == [
        "regularizer=fsq",
        "compression='488'",
        "data.path=/d",
        "launch.accelerate=false",
        "run_dir=/runs/7",
        "hydra.run.dir=/runs/7",
    ]
    # what the node's processes will compose is a valid run config
    run = load_run_config(compose_train_config([o for o in passed if not o.startswith("hydra.")]))
    assert run.tokenizer.is_discrete and run.run_dir == "/runs/7"


def test_demo_experiment_runs_on_the_bundled_clips(tmp_path: Path) -> None:
    run = load_run_config(
        compose_train_config(
            [
                "experiment=demo",
                f"run_dir={tmp_path / 'run'}",
                "train.max_steps=2",
                "validation.every=2",
                "validation.at_start=false",
                "logger.kind=none",
                "train.threads=1",
            ]
        )
    )
    assert Path(run.data.path).name == "train" and Path(run.val_data.path).name == "val"
    trainer = Trainer(run)
    trainer.fit()
    assert trainer.state.skipped_inputs == 0
    assert len(list((tmp_path / "run" / "samples").glob("val_step00000002_*.mp4"))) == 2


@pytest.mark.slow
def test_sigkill_during_a_save_then_restart_resumes(tmp_path: Path, video_dir: Path) -> None:
    """SIGKILL the real command while a checkpoint is being written (retried until a kill lands mid-save: the
    temporary folder is still there after the process died), then the same command resumes from the last complete
    checkpoint and finishes."""
    import signal
    import time

    landed = False
    for attempt in range(6):
        run_dir = tmp_path / f"run{attempt}"
        args = [
            sys.executable, str(REPO / "train.py"), "experiment=debug", f"data.path={video_dir}", f"run_dir={run_dir}",
            f"hydra.run.dir={tmp_path / 'hydra' / str(attempt)}", "checkpoint.every=1", "checkpoint.keep=3",
            "validation.at_start=false", "validation.every=1000",
        ]  # fmt: skip
        proc = subprocess.Popen([*args, "train.max_steps=1000"], env=command_env(), cwd=tmp_path)
        root = run_dir / "checkpoints"
        deadline = time.monotonic() + 120
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                names = [p.name for p in root.iterdir()] if root.is_dir() else []
                complete = [n for n in names if n.startswith("step_")]
                if complete and any(n.startswith(".tmp-") for n in names):
                    break  # a save is under way: kill it right there
                if len(complete) >= 3:
                    break  # saves were too quick to catch this time
                time.sleep(0.0005)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        if not any(p.name.startswith(".tmp-") for p in root.iterdir()):
            continue  # the kill fell between saves: try again
        landed = True
        newest = CheckpointDir(root).latest()
        assert newest is not None, "no complete checkpoint before the kill"
        step = json.loads((newest / "trainer_state.json").read_text())["step"]
        result = subprocess.run(
            [*args, f"train.max_steps={step + 2}"], env=command_env(), cwd=tmp_path, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"resumed from {newest}" in result.stdout + result.stderr  # Hydra logs to stdout
        assert CheckpointDir(root).latest().name == f"step_{step + 2:08d}"
        assert not any(p.name.startswith(".tmp-") for p in root.iterdir())  # the half-written save was removed
        break
    assert landed, "no kill landed during a save in 6 attempts"


def test_full_loss_with_lpips_and_lpips_validation(tmp_path: Path, video_dir: Path) -> None:
    from standins import random_vgg16_file  # a random VGG16 stand-in (the real one is a download)

    vgg = random_vgg16_file(tmp_path / "vgg16.pth")
    run = debug_run(
        tmp_path,
        video_dir,
        "loss.perceptual_weight=1.0",
        f"loss.vgg_path={vgg}",
        "validation.lpips=true",
        "loss.disc_start=1",
        "train.max_steps=2",
    )
    trainer = Trainer(run)
    trainer.fit()
    assert all(h["p_loss"] > 0 for h in trainer.history)
    assert "val/lpips" in trainer.validate()
    # one LPIPS network in the run: validation scores with the loss's own
    assert trainer.loss.perceptual is not None and trainer._metrics.scorer.lpips is trainer.loss.perceptual


def test_slurm_sweep_config_composes_with_the_submitit_launcher(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="hydra-submitit-launcher is not installed")
    cmd = [
        sys.executable, str(REPO / "train.py"), "--config-dir", str(REPO / "sweeps"), "--config-name", "slurm",
        "data.path=/data", "hydra.launcher.nodes=4", "--cfg", "all",
    ]  # fmt: skip
    result = subprocess.run(cmd, env=command_env(), capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(result.stdout)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.nodes == 4 and cfg.hydra.launcher.tasks_per_node == 1
    assert cfg.launch.accelerate is True


def test_init_from_an_official_checkpoint_loads_tokenizer_and_discriminator(tmp_path: Path, video_dir: Path) -> None:
    from vidtok.losses import VidTokLoss

    donor = Trainer(debug_run(tmp_path / "donor", video_dir, "train.max_steps=1"))
    torch.manual_seed(123)
    disc = VidTokLoss(donor.run.loss, "kl").discriminator  # weights unlike the run's own
    state = {k: v + 0.01 for k, v in donor.tok.state_dict().items()}
    state.update({f"loss.discriminator.{k}": v for k, v in disc.state_dict().items()})
    state["loss.logvar"] = torch.tensor(-0.5)
    torch.save({"state_dict": state}, tmp_path / "official_style.ckpt")
    trainer = Trainer(debug_run(tmp_path / "run", video_dir, f"init_from={tmp_path / 'official_style.ckpt'}"))
    for key, value in trainer.tok.state_dict().items():
        assert torch.equal(value, state[key]), key
    for key, value in trainer.loss.discriminator.state_dict().items():
        assert torch.equal(value, disc.state_dict()[key]), key
    assert float(trainer.loss.logvar.detach()) == -0.5


def test_init_from_a_training_checkpoint_folder_loads_its_tokenizer(tmp_path: Path, video_dir: Path) -> None:
    """init_from takes what the training log names (``saved checkpoint .../checkpoints/step_N``)."""
    run = debug_run(tmp_path / "run", video_dir)
    earlier = perturb_(vidtok.build_tokenizer(run.tokenizer), seed=3)
    step = training_checkpoint(earlier, tmp_path / "earlier_run", step=2)
    trainer = Trainer(debug_run(tmp_path / "run", video_dir, f"init_from={step}"))
    for key, value in earlier.state_dict().items():
        assert torch.equal(trainer.tok.state_dict()[key], value), key


def test_a_missing_data_folder_fails_before_the_model_is_built(tmp_path: Path, video_dir: Path) -> None:
    from vidtok.errors import DataSourceError

    with pytest.raises(DataSourceError, match="does not exist"):
        Trainer(debug_run(tmp_path, tmp_path / "no_such_folder"))
    with pytest.raises(DataSourceError, match="does not exist"):
        Trainer(debug_run(tmp_path, video_dir, f"val_data.path={tmp_path / 'no_val'}"))


def test_fine_tuning_validation_reports_how_far_the_latents_moved(tmp_path: Path, video_dir: Path) -> None:
    """With init_from, validation measures the encoder's latents of its clips against the starting weights': zero
    before the first step, then exactly the relative L2 of the two tokenizers' latents of those clips."""
    from vidtok.data.config import build_loader
    from vidtok.metrics.drift import LatentDrift

    stage1 = Trainer(debug_run(tmp_path / "s1", video_dir, "train.max_steps=1"))
    stage1.fit()
    init = CheckpointDir(tmp_path / "s1" / "run" / "checkpoints").latest() / "tokenizer.safetensors"
    trainer = Trainer(debug_run(tmp_path / "s2", video_dir, f"init_from={init}", "train.max_steps=2"))
    start = trainer.validate()
    assert start["val/latent_drift"] == 0.0 and start["val/latent_drift_ch0"] == 0.0
    trainer.fit()
    end = trainer.validate()
    channels = trainer.tok.config.latent_channels
    assert sorted(k for k in end if k.startswith("val/latent_drift_ch")) == [f"val/latent_drift_ch{i}" for i in
                                                                             range(channels)]  # fmt: skip
    reference = vidtok.load_tokenizer(ckpt=init)
    drift, clips = LatentDrift(), 0
    validator = trainer.validator
    trainer.tok.eval()
    with torch.no_grad():
        for batch in build_loader(validator.data, validator.dataset, persistent_workers=False):
            if validator.config.max_clips is not None and clips >= validator.config.max_clips:
                break
            drift.update(trainer.tok.encode(batch["video"]), reference.encode(batch["video"]))
            clips += batch["video"].shape[0]
    assert end["val/latent_drift"] == pytest.approx(drift.compute()["relative_l2"], rel=1e-6)
    assert end["val/latent_drift"] > 0
    # the decoder-only stage keeps the encoder: its latents do not move at all
    frozen = Trainer(debug_run(tmp_path / "s3", video_dir, "stage=highres_decoder", f"init_from={init}",
                               "data.height=48", "data.width=48", "train.max_steps=1"))  # fmt: skip
    frozen.fit()
    assert frozen.validate()["val/latent_drift"] == 0.0
