"""The VidTok training loop on Accelerate: one or many processes, CPU or GPU.

Per step (``grad_accum`` micro-batches): encode, regularise (KL sample or FSQ), decode, generator
loss (L1 + LPIPS through the learned-variance NLL, regularisation terms, adaptive adversarial term
once the discriminator has started), backward; then the discriminator loss on the detached
reconstruction, backward. Gradients are averaged across processes, clipped and both Adam
optimisers step. The models are not wrapped in DistributedDataParallel: the adaptive GAN weight
differentiates the same graph twice and the discriminator trains on alternate passes, which DDP's
one-forward-one-backward contract does not fit; gradients are all-reduced in buckets instead.

A step whose loss is not finite on any process is skipped on all of them and counted; after
``max_nonfinite`` in a row the run saves a checkpoint and stops with :class:`TrainingError`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..data.config import build_dataset, build_loader
from ..distributed import make_accelerator, reset_accelerate_state  # noqa: F401 (re-exported)
from ..io.video import tensor_to_frames, write_video
from ..io.weight_files import check_state_dict, read_checkpoint, save_tokenizer_safetensors, tokenizer_state_dict
from ..models.loading import build_tokenizer
from ..models.pretrained import META_SOURCE
from ..modules.conv import unwrap_conv
from .checkpoints import CheckpointDir
from .config import RunConfig
from .ema import EMA
from .logging import RunLogger

log = logging.getLogger("vidtok.train")

GRAD_BUCKET_ELEMENTS = 1 << 23  # 32 MB of float32 per all-reduce


class TrainingError(RuntimeError):
    """The run cannot continue (e.g. too many non-finite losses in a row); a checkpoint was saved."""


@dataclass
class TrainState:
    """Counters saved with each checkpoint."""

    step: int = 0
    nonfinite_total: int = 0
    nonfinite_in_a_row: int = 0
    skipped_inputs: int = 0

    def state_dict(self) -> dict[str, int]:
        return dict(vars(self))

    def load_state_dict(self, state: dict[str, int]) -> None:
        for key, value in state.items():
            setattr(self, key, int(value))


class Trainer:
    """Builds everything a run needs from a :class:`RunConfig` and trains; see the module docstring."""

    def __init__(self, run: RunConfig, accelerator=None):
        from accelerate.utils import broadcast_object_list, set_seed

        from ..losses import VidTokLoss

        self.run = run
        cfg = run.train
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        # no mixed_precision here: autocast and the one GradScaler for both optimisers are the Trainer's own
        self.acc = accelerator or make_accelerator()
        self.device = self.acc.device
        self.amp_dtype = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.mixed_precision]
        if self.amp_dtype == torch.float16 and self.device.type != "cuda":
            raise TrainingError("train.mixed_precision=fp16 needs a CUDA/ROCm GPU; on CPU use bf16 or no")
        # One scaler for both optimisers, updated once per step (fp16 only).
        self.scaler = torch.amp.GradScaler(self.device.type) if self.amp_dtype == torch.float16 else None
        self.is_main = self.acc.is_main_process
        self.world = self.acc.num_processes

        holder = [str(run.run_dir)]  # every rank writes into rank 0's directory
        broadcast_object_list(holder)
        self.run_dir = Path(holder[0])
        self.ckpts = CheckpointDir(self.run_dir / "checkpoints", keep=run.checkpoint.keep)
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.ckpts.clean_partial()
        self.acc.wait_for_everyone()

        # Listed once, now: a wrong data path fails before any model is built, and file lengths probed
        # in one data epoch are remembered for the next.
        part = dict(rank=self.acc.process_index, world_size=self.world)
        self.train_set = build_dataset(run.data, train=True, size=run.resolution, **part)
        self.val_set = build_dataset(run.val_data, train=False, size=run.resolution, **part) if run.val_data else None
        set_seed(cfg.seed)  # identical initial weights on every process
        self.tok = build_tokenizer(run.tokenizer).to(self.device)
        self.loss = VidTokLoss(run.loss, run.tokenizer.regularizer.kind).to(self.device)
        if run.init_from:
            self._init_from(run.init_from)
        self.tok.train().requires_grad_(True)
        if run.stage.freeze_encoder:
            self.tok.encoder.requires_grad_(False).eval()
        self.loss.train()
        self._broadcast_parameters()
        set_seed(cfg.seed + self.acc.process_index)  # different sampling noise per process

        self.gen_params = [p for p in self.tok.parameters() if p.requires_grad] + list(self.loss.generator_parameters())
        self.disc_params = list(self.loss.discriminator_parameters())
        if not self.gen_params:
            raise TrainingError("nothing to train: every tokenizer parameter is frozen")
        scale = self.world * run.data.batch_size * cfg.grad_accum if run.optim.scale_lr else 1
        self.lr_g = run.optim.lr * scale
        self.lr_d = (run.optim.disc_lr or run.optim.lr) * scale
        adam = dict(betas=tuple(run.optim.betas), eps=run.optim.eps, weight_decay=run.optim.weight_decay)
        self.opt_g = torch.optim.Adam(self.gen_params, lr=self.lr_g, **adam)
        self.opt_d = torch.optim.Adam(self.disc_params, lr=self.lr_d, **adam)
        self.ema = EMA(self.tok, cfg.ema_decay).to(self.device) if cfg.ema_decay else None
        self.state = TrainState()
        # Saved by accelerator.save_state in this order (with every process's RNG states).
        for obj in (self.tok, self.loss, self.opt_g, self.opt_d, self.state, self.ema, self.scaler):
            if obj is not None:
                self.acc.register_for_checkpointing(obj)

        self.last_layer = unwrap_conv(self.tok.decoder.conv_out).weight
        self.logger: Optional[RunLogger] = None
        self.history: list[dict[str, float]] = []  # every step's logs (this process), for tests and callers
        self._metrics: Any = None
        self._data_epoch: Optional[int] = None
        self._batches: Optional[Iterator[dict]] = None

    # ---- set-up helpers ------------------------------------------------------------------------
    def _init_from(self, path: str) -> None:
        """Tokenizer weights (and an official checkpoint's discriminator, if any) from ``path``, or from the published
        checkpoint when ``path`` is an official name (the Hub's ``.ckpt``, which holds the discriminator too)."""
        from ..config import official_names

        if path in official_names() and not Path(path).exists():
            from ..hub import download_checkpoint

            path = str(download_checkpoint(path))
        loaded = read_checkpoint(path)
        check_state_dict(self.tok, loaded.state_dict, source=str(path))
        self.tok.load_state_dict(tokenizer_state_dict(loaded.state_dict))
        if any(k.startswith("loss.discriminator.") for k in loaded.state_dict):
            try:
                self.loss.load_original_state_dict(loaded.state_dict)
                log.info("discriminator initialised from %s", path)
            except (KeyError, RuntimeError, ValueError) as err:
                log.warning("discriminator of %s not used (%s); it starts from scratch", path, err)
        log.info("tokenizer initialised from %s", path)

    def _broadcast_parameters(self) -> None:
        if self.world > 1:
            for tensor in list(self.tok.parameters()) + list(self.loss.parameters()):
                dist.broadcast(tensor.data, src=0)

    def _sync_gradients(self, params: list[nn.Parameter]) -> None:
        """Average gradients across processes (bucketed all-reduce)."""
        if self.world == 1:
            return
        for p in params:  # every process must send the same buckets, even for unused parameters
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in params]
        bucket: list[Tensor] = []
        size = 0
        for grad in grads + [None]:
            if grad is not None:
                bucket.append(grad)
                size += grad.numel()
            if bucket and (grad is None or size >= GRAD_BUCKET_ELEMENTS):
                flat = torch.cat([g.reshape(-1) for g in bucket])
                dist.all_reduce(flat)
                flat /= self.world
                offset = 0
                for g in bucket:
                    g.copy_(flat[offset : offset + g.numel()].view_as(g))
                    offset += g.numel()
                bucket, size = [], 0

    def check_in_sync(self) -> None:
        """Raise TrainingError if the processes' tokenizer weights differ (they must stay identical)."""
        if self.world == 1:
            return
        with torch.no_grad():
            mine = torch.stack([p.detach().double().sum() for p in self.tok.parameters()])
        gathered = [torch.empty_like(mine) for _ in range(self.world)]
        dist.all_gather(gathered, mine)
        if any(not torch.equal(g, gathered[0]) for g in gathered):
            raise TrainingError(
                f"the tokenizer weights differ between the {self.world} processes at step {self.state.step}: "
                "gradients were not synchronised"
            )

    def _any(self, flag: bool) -> bool:
        """True if ``flag`` is true on any process."""
        if self.world == 1:
            return flag
        value = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(value)
        return bool(value.item() > 0)

    # ---- data ----------------------------------------------------------------------------------
    def _train_batches(self) -> Iterator[dict]:
        """Batches for the current step. The clip stream restarts every ``data_epoch_steps`` steps with
        a seed of its own, so after a resume at most that many steps' batches are replayed to land on
        exactly the batch an uninterrupted run would see."""
        cfg = self.run.train
        epoch, offset = divmod(self.state.step, cfg.data_epoch_steps)
        if self._batches is None or epoch != self._data_epoch:
            dataset = self.train_set
            dataset.set_epoch(epoch)
            # The loader draws its workers' base seed from its own generator, not the global RNG that
            # KL sampling uses: a resumed run then draws the same noise as an uninterrupted one.
            generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
            self._batches = iter(build_loader(self.run.data, dataset, persistent_workers=False, generator=generator))
            self._data_epoch = epoch
            for _ in range(offset * cfg.grad_accum):
                next(self._batches)
        return self._batches

    # ---- one step ------------------------------------------------------------------------------
    def _generator_pass(self, x: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        step = self.state.step
        frozen = self.run.stage.freeze_encoder
        with torch.no_grad() if frozen else nullcontext():
            moments = self.tok.encode_moments(x)
            z, terms = self.loss.regularization(moments, self.tok.regularizer, step)
        recon = self.tok.decode(z)[:, :, : x.shape[2]]
        last_layer = self.last_layer if self.last_layer.requires_grad else None
        loss, logs = self.loss.generator_loss(x, recon, terms, step, last_layer)
        return loss, recon, logs

    def train_step(self) -> dict[str, float]:
        """One optimiser step (``grad_accum`` micro-batches); returns the step's averaged logs."""
        cfg = self.run.train
        accum = cfg.grad_accum
        step = self.state.step
        disc_on = step >= self.run.loss.disc_start and self.run.loss.disc_factor > 0
        if disc_on and not self.opt_d.state:
            self._prime_discriminator_optimizer(step)
        self._set_lr(step)
        logs: dict[str, float] = {}
        finite = True
        samples = 0
        for _ in range(accum):
            batch = next(self._train_batches())
            self.state.skipped_inputs += len(batch["skipped"])
            x = batch["video"]
            if x is None:  # every clip of this batch failed to load (reported by the data layer)
                finite = False
                continue
            x = x.to(self.device, non_blocking=True)
            samples += x.shape[0]
            self.loss.discriminator.requires_grad_(False)
            with self._autocast():
                g_loss, recon, g_logs = self._generator_pass(x)
            ok = bool(torch.isfinite(g_loss))
            if ok:
                self._backward(g_loss / accum)
            d_logs: dict[str, Tensor] = {}
            if ok and disc_on:
                self.loss.discriminator.requires_grad_(True)
                with self._autocast():
                    d_loss, d_logs = self.loss.discriminator_loss(x, recon.detach(), step)
                ok = bool(torch.isfinite(d_loss))
                if ok:
                    self._backward(d_loss / accum)
            finite = finite and ok
            for key, value in {**g_logs, **d_logs}.items():
                logs[key] = logs.get(key, 0.0) + float(value) / accum
        self.loss.discriminator.requires_grad_(True)

        if self._any(not finite):
            self.opt_g.zero_grad(set_to_none=True)
            self.opt_d.zero_grad(set_to_none=True)
            self.state.nonfinite_total += 1
            self.state.nonfinite_in_a_row += 1
            self.state.step += 1
            if self.state.nonfinite_in_a_row >= cfg.max_nonfinite:
                where = self.save_checkpoint()
                raise TrainingError(
                    f"{self.state.nonfinite_in_a_row} steps in a row had a non-finite loss or no loadable clip "
                    f"(last at step {step}); stopped. The weights from before them are saved in {where}; lower "
                    "optim.lr, check the data, or use train.mixed_precision=no/bf16 before resuming"
                )
            return {"skipped_step": 1.0, "nonfinite_total": float(self.state.nonfinite_total)}
        self.state.nonfinite_in_a_row = 0

        self._sync_gradients(self.gen_params)
        logs["grad_norm/generator"] = self._clip(self.gen_params, self.opt_g)
        if disc_on:
            self._sync_gradients(self.disc_params)
            logs["grad_norm/discriminator"] = self._clip(self.disc_params, self.opt_d)
        for opt in (self.opt_g, self.opt_d) if disc_on else (self.opt_g,):
            if self.scaler is not None:
                self.scaler.step(opt)  # skips the update if fp16 gradients overflowed
            else:
                opt.step()
        if self.scaler is not None:
            self.scaler.update()
        self.opt_g.zero_grad(set_to_none=True)
        self.opt_d.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.tok)
        self.state.step += 1
        logs["lr/generator"] = self.opt_g.param_groups[0]["lr"]
        logs["lr/discriminator"] = self.opt_d.param_groups[0]["lr"]
        logs["samples"] = float(samples)
        return logs

    def _prime_discriminator_optimizer(self, step: int) -> None:
        """Give the discriminator's Adam the state the original's has when its discriminator starts.

        The original steps that Adam on every batch from the start, with zero gradients until
        ``disc_start``: moments stay zero but the step count advances, so bias correction no longer
        inflates the first real moments and those updates are about 3x a fresh Adam's. vidtok skips
        the discriminator until then and reproduces that state here instead.
        """
        if step == 0:
            return
        for group in self.opt_d.param_groups:
            for p in group["params"]:
                self.opt_d.state[p] = {
                    "step": torch.tensor(float(step)),
                    "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                }

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _backward(self, loss: Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def _clip(self, params: list[nn.Parameter], opt: torch.optim.Optimizer) -> float:
        if self.scaler is not None:
            self.scaler.unscale_(opt)
        clip = self.run.train.clip_grad
        return float(torch.nn.utils.clip_grad_norm_(params, clip if clip else float("inf")))

    def _set_lr(self, step: int) -> None:
        warmup = self.run.optim.warmup_steps
        factor = min(1.0, (step + 1) / warmup) if warmup else 1.0
        for opt, base in ((self.opt_g, self.lr_g), (self.opt_d, self.lr_d)):
            for group in opt.param_groups:
                group["lr"] = base * factor

    # ---- checkpoints ---------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """Save the full training state (all processes take part) plus the tokenizer as safetensors."""
        self.check_in_sync()
        step = self.state.step
        tmp = self.ckpts.begin(step) if self.is_main else self.ckpts.tmp_path(step)
        self.acc.wait_for_everyone()
        self.acc.save_state(str(tmp))
        if self.is_main:
            source = {META_SOURCE: f"trained with vidtok train.py: run {self.run_dir}, step {self.state.step}"}
            save_tokenizer_safetensors(self.tok.state_dict(), self.run.tokenizer, tmp / "tokenizer.safetensors", source)
            if self.ema is not None:
                ema_state = self.ema.averaged_state_dict(self.tok)
                source = {META_SOURCE: f"{source[META_SOURCE]} (EMA weights)"}
                save_tokenizer_safetensors(ema_state, self.run.tokenizer, tmp / "tokenizer_ema.safetensors", source)
            (tmp / "trainer_state.json").write_text(json.dumps(self.state.state_dict(), indent=1))
        self.acc.wait_for_everyone()
        final = self.ckpts.path(step)
        if self.is_main:
            final = self.ckpts.commit(step, tmp)
            log.info("saved checkpoint %s", final)
        self.acc.wait_for_everyone()
        return final

    def resume(self) -> Optional[Path]:
        """Load the checkpoint ``checkpoint.resume`` names (``auto``: the newest complete one, if any)."""
        mode = self.run.checkpoint.resume
        if mode == "never":
            if self.ckpts.latest() is not None:
                raise TrainingError(
                    f"{self.run_dir} already has checkpoints and checkpoint.resume=never: use a new run_dir"
                )
            return None
        path = self.ckpts.latest() if mode == "auto" else Path(mode)
        if path is None:
            return None
        if not (path / "trainer_state.json").is_file():
            raise TrainingError(f"{path} is not a complete training checkpoint (no trainer_state.json)")
        self.acc.load_state(str(path))
        self._batches = None
        log.info("resumed from %s at step %d", path, self.state.step)
        return path

    # ---- validation ----------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Metrics over the validation data (gathered across processes) and sample reconstructions;
        with EMA weights, a second pass with them (``val_ema/...``)."""
        if self.val_set is None:
            return {}
        passes = [("val", nullcontext())]
        if self.ema is not None:
            passes.append(("val_ema", self.ema.applied(self.tok)))
        results: dict[str, float] = {}
        was_training = self.tok.training
        self.tok.eval()
        devices = [self.device] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):  # validation leaves training's random streams alone
                for prefix, weights in passes:
                    with weights:
                        summary = self._validation_pass(prefix)
                    results.update({f"{prefix}/{k}": v for k, v in summary.items() if isinstance(v, (int, float))})
        finally:
            self.tok.train(was_training)
            if self.run.stage.freeze_encoder:
                self.tok.encoder.eval()
        return results

    def _validation_pass(self, prefix: str) -> dict[str, Any]:
        from ..metrics import VideoMetrics

        vcfg = self.run.validation
        if self._metrics is None:  # built once: LPIPS and the I3D detector take seconds to load
            shared = self.loss.perceptual  # the loss's LPIPS network, when it has one, serves validation too
            self._metrics = VideoMetrics(
                lpips=shared if vcfg.lpips and shared is not None else vcfg.lpips,
                vgg_path=self.run.loss.vgg_path,
                fvd=vcfg.fvd,
                detector_path=vcfg.detector_path,
                device=self.device,
            )
        metrics = self._metrics
        metrics.reset()
        clips, saved = 0, 0
        for batch in build_loader(self.run.val_data, self.val_set, persistent_workers=False):
            x = batch["video"]
            if x is None:
                continue
            if vcfg.max_clips is not None and clips >= vcfg.max_clips:
                break
            x = x.to(self.device)
            with self._autocast():
                recon = self.tok(x)
            recon = recon.float().clamp(-1, 1)
            names = [f"{k}#{c}" for k, c in zip(batch["keys"], batch["clips"], strict=True)]
            metrics.update(x, recon, names)
            clips += x.shape[0]
            if self.is_main and saved < vcfg.samples:
                for i in range(min(x.shape[0], vcfg.samples - saved)):
                    self._save_sample(prefix, saved, x[i : i + 1], recon[i : i + 1], batch["fps"][i])
                    saved += 1
        return metrics.compute()

    def _save_sample(self, prefix: str, index: int, x: Tensor, recon: Tensor, fps: float) -> None:
        frames = tensor_to_frames(torch.cat([x.cpu(), recon.cpu()], dim=4))  # input | reconstruction
        path = self.run_dir / "samples" / f"{prefix}_step{self.state.step:08d}_{index}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(path, frames, fps=fps or 8.0)
        if self.logger is not None:
            self.logger.video(f"{prefix}/sample_{index}", path, frames, self.state.step, fps or 8.0)

    # ---- the loop ------------------------------------------------------------------------------
    def fit(self) -> dict[str, float]:
        """Train to ``train.max_steps`` (resuming if there is a checkpoint); returns the last logs."""
        from tqdm.auto import tqdm

        run, cfg = self.run, self.run.train
        self.resume()
        if self.is_main:
            self.logger = RunLogger(run.logger, self.run_dir, run.raw)
        start_step = self.state.step
        bar = tqdm(total=cfg.max_steps, initial=start_step, disable=not self.is_main, desc="train", dynamic_ncols=True)
        last: dict[str, float] = {}
        window = {"time": time.perf_counter(), "samples": 0.0}
        try:
            if run.validation.at_start and start_step == 0:
                self._log(self.validate())
            while self.state.step < cfg.max_steps:
                logs = self.train_step()
                window["samples"] += logs.pop("samples", 0.0)
                self.history.append({"step": float(self.state.step), **logs})
                step = self.state.step
                last = logs
                bar.update(1)
                if step % run.logger.every == 0 or step == cfg.max_steps:
                    elapsed = max(time.perf_counter() - window["time"], 1e-9)
                    rate = window["samples"] * self.world / elapsed
                    logs = {f"train/{k}": v for k, v in logs.items()}
                    logs["train/samples_per_s"] = rate
                    logs["train/frames_per_s"] = rate * run.data.num_frames
                    logs["train/nonfinite_total"] = float(self.state.nonfinite_total)
                    self._log(logs)
                    total = logs.get("train/total_loss")
                    if total is not None:
                        bar.set_postfix(loss=f"{total:.4f}", refresh=False)
                    window = {"time": time.perf_counter(), "samples": 0.0}
                if step % run.validation.every == 0 or step == cfg.max_steps:
                    self._log(self.validate())
                if step % run.checkpoint.every == 0 or step == cfg.max_steps:
                    self.save_checkpoint()
        finally:
            bar.close()
            if self.logger is not None:
                self.logger.close()
        return last

    def _log(self, values: dict[str, float]) -> None:
        if not values:
            return
        if self.is_main:
            shown = " ".join(f"{k}={v:.5g}" for k, v in sorted(values.items()) if math.isfinite(v))
            log.info("step %d: %s", self.state.step, shown)
            if self.logger is not None:
                self.logger.scalars(values, self.state.step)
