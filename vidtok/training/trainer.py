"""The VidTok training loop on Accelerate: one or many processes, CPU or GPU.

Per step (``grad_accum`` micro-batches): encode, regularise (KL sample or FSQ), decode, generator
loss (L1 + LPIPS through the learned-variance NLL, regularisation terms, adaptive adversarial term
once the discriminator has started), backward; then the discriminator loss on the detached
reconstruction, backward. Gradients are averaged across processes, clipped and both Adam
optimisers step. The models are not wrapped in DistributedDataParallel: the adaptive GAN weight
differentiates the same graph twice and the discriminator trains on alternate passes, which DDP's
one-forward-one-backward contract does not fit; gradients are all-reduced in buckets instead.

A step whose loss is not finite on any process is skipped on all of them and counted; after
``max_nonfinite`` in a row the run saves a checkpoint and stops with [`TrainingError`][].

This module holds the [`Trainer`][] (set-up, the step, checkpoints and resume, the loop); it delegates the
cross-process synchronisation to [`vidtok.distributed`][], the resumable clip stream to
[`vidtok.training.batches`][], learning rates to [`vidtok.training.optim`][] and validation to
[`vidtok.training.validation`][].
"""

from __future__ import annotations

import json
import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor, nn

from ..accelerator import make_accelerator
from ..data.config import build_dataset
from ..data.dataset import VideoClipDataset
from ..distributed import any_process, broadcast_parameters, parameters_in_sync, sync_gradients
from ..errors import TrainingError
from ..io.weight_files import (
    META_SOURCE,
    check_state_dict,
    read_checkpoint,
    save_tokenizer_safetensors,
    tokenizer_state_dict,
)
from ..models.loading import build_tokenizer
from ..models.weights import locate_weights
from ..modules.conv import unwrap_conv
from .batches import TrainBatches
from .checkpoints import CheckpointDir
from .config import RunConfig
from .ema import EMA
from .logging import RunLogger
from .optim import base_learning_rates, prime_adam, set_learning_rates, warmup_factor
from .validation import Validator

log = logging.getLogger("vidtok.train")


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
    """Builds everything a run needs from a [`RunConfig`][] and trains; see the module docstring."""

    def __init__(self, run: RunConfig, accelerator=None):
        self.run = run
        if run.train.threads:
            torch.set_num_threads(run.train.threads)
        self._set_up_processes(accelerator)
        self.run_dir = self._shared_run_dir()
        self.ckpts = CheckpointDir(self.run_dir / "checkpoints", keep=run.checkpoint.keep)
        self._prepare_run_dir()
        self.train_set, self.val_set = self._list_data()
        self._build_models()
        self._build_optimisers()
        self.ema = EMA(self.tok, run.train.ema_decay).to(self.device) if run.train.ema_decay else None
        self.state = TrainState()
        self._register_for_checkpointing()
        self.last_layer = unwrap_conv(self.tok.decoder.conv_out).weight
        self.logger: Optional[RunLogger] = None
        self.history: list[dict[str, float]] = []  # every step's logs (this process), for tests and callers
        self.last_validation: dict[str, float] = {}  # the metrics of this session's last validation
        self.batches = TrainBatches(
            run.data,
            self.train_set,
            seed=run.train.seed,
            epoch_steps=run.train.data_epoch_steps,
            grad_accum=run.train.grad_accum,
        )
        self.validator = self._build_validator()

    @property
    def _metrics(self) -> Any:
        """The validation metrics (a ``vidtok.metrics.VideoMetrics``), once the first validation built them."""
        return self.validator.metrics

    # ---- set-up helpers ------------------------------------------------------------------------
    def _set_up_processes(self, accelerator) -> None:
        """The Accelerate state (``acc``, ``device``, ``is_main``, ``world``) and the precision: ``amp_dtype``
        and the one GradScaler for both optimisers, updated once per step (fp16 only)."""
        # no mixed_precision in Accelerate: autocast and the scaler are the Trainer's own
        self.acc = accelerator or make_accelerator()
        self.device = self.acc.device
        self.amp_dtype = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.run.train.mixed_precision]
        if self.amp_dtype == torch.float16 and self.device.type != "cuda":
            raise TrainingError("train.mixed_precision=fp16 needs a CUDA/ROCm GPU; on CPU use bf16 or no")
        self.scaler = torch.amp.GradScaler(self.device.type) if self.amp_dtype == torch.float16 else None
        self.is_main = self.acc.is_main_process
        self.world = self.acc.num_processes

    def _shared_run_dir(self) -> Path:
        """Rank 0's run directory, which every process writes into."""
        from accelerate.utils import broadcast_object_list

        holder = [str(self.run.run_dir)]
        broadcast_object_list(holder)
        return Path(holder[0])

    def _prepare_run_dir(self) -> None:
        """Create the run directory and remove interrupted saves (main process), then wait for it."""
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.ckpts.clean_partial()
        self.acc.wait_for_everyone()

    def _list_data(self) -> tuple[VideoClipDataset, Optional[VideoClipDataset]]:
        """This process's training and validation datasets (None without ``val_data``).

        Listed once, now: a wrong data path fails before any model is built, and file lengths probed in one
        data epoch are remembered for the next."""
        run = self.run
        part = dict(rank=self.acc.process_index, world_size=self.world)
        train_set = build_dataset(run.data, train=True, size=run.resolution, **part)
        val_set = build_dataset(run.val_data, train=False, size=run.resolution, **part) if run.val_data else None
        return train_set, val_set

    def _build_models(self) -> None:
        """The tokenizer ``tok`` and the loss (with the discriminator), identical on every process, in train mode;
        then each process's own random stream for sampling noise."""
        from accelerate.utils import set_seed

        from ..losses import VidTokLoss

        run = self.run
        set_seed(run.train.seed)  # identical initial weights on every process
        self.tok = build_tokenizer(run.tokenizer).to(self.device)
        self.loss = VidTokLoss(run.loss, run.tokenizer.regularizer.kind).to(self.device)
        if run.init_from:
            self._init_from(run.init_from)
        self.tok.train().requires_grad_(True)
        if run.stage.freeze_encoder:
            self.tok.encoder.requires_grad_(False).eval()
        self.loss.train()
        broadcast_parameters(list(self.tok.parameters()) + list(self.loss.parameters()), self.world)
        set_seed(run.train.seed + self.acc.process_index)  # different sampling noise per process

    def _build_optimisers(self) -> None:
        """Adam for the trainable generator parameters (``gen_params``: tokenizer and loss) and for the
        discriminator (``disc_params``), at the base learning rates ``lr_g`` / ``lr_d``."""
        run = self.run
        self.gen_params = [p for p in self.tok.parameters() if p.requires_grad] + list(self.loss.generator_parameters())
        self.disc_params = list(self.loss.discriminator_parameters())
        if not self.gen_params:
            raise TrainingError("nothing to train: every tokenizer parameter is frozen")
        self.lr_g, self.lr_d = base_learning_rates(run.optim, self.world, run.data.batch_size, run.train.grad_accum)
        adam = dict(betas=tuple(run.optim.betas), eps=run.optim.eps, weight_decay=run.optim.weight_decay)
        self.opt_g = torch.optim.Adam(self.gen_params, lr=self.lr_g, **adam)
        self.opt_d = torch.optim.Adam(self.disc_params, lr=self.lr_d, **adam)

    def _register_for_checkpointing(self) -> None:
        """What ``accelerator.save_state`` saves, in this order (with every process's RNG states)."""
        for obj in (self.tok, self.loss, self.opt_g, self.opt_d, self.state, self.ema, self.scaler):
            if obj is not None:
                self.acc.register_for_checkpointing(obj)

    def _build_validator(self) -> Validator:
        """Validation of ``tok`` (and its EMA weights) on the validation set."""
        return Validator.for_run(
            self.run,
            self.tok,
            self.val_set,
            ema=self.ema,
            perceptual=self.loss.perceptual,  # the loss's LPIPS network, when it has one, serves validation too
            device=self.device,
            run_dir=self.run_dir,
            is_main=self.is_main,
            autocast=self._autocast,
            reference_state=getattr(self, "reference_state", None),
        )

    def _init_from(self, target: str) -> None:
        """Tokenizer weights (and an official checkpoint's discriminator, if any) from what ``target`` names (see
        [`vidtok.models.weights.locate_weights`][]); an official name means the Hub's original ``.ckpt``, which
        holds the discriminator too."""
        path = locate_weights(target, original_checkpoint=True).file
        loaded = read_checkpoint(path)
        check_state_dict(self.tok, loaded.state_dict, source=str(path))
        self.tok.load_state_dict(tokenizer_state_dict(loaded.state_dict))
        if self.run.validation.latent_drift:  # the weights validation measures the latents' drift from
            self.reference_state = {k: v.detach().to("cpu", copy=True) for k, v in self.tok.state_dict().items()}
        if any(k.startswith("loss.discriminator.") for k in loaded.state_dict):
            try:
                self.loss.load_original_state_dict(loaded.state_dict)
                log.info("discriminator initialised from %s", path)
            except (KeyError, RuntimeError, ValueError) as err:
                log.warning("discriminator of %s not used (%s); it starts from scratch", path, err)
        log.info("tokenizer initialised from %s", path)

    # ---- processes -----------------------------------------------------------------------------
    def _sync_gradients(self, params: list[nn.Parameter]) -> None:
        """Average gradients across processes (bucketed all-reduce, [`vidtok.distributed.sync_gradients`][])."""
        sync_gradients(params, self.world)

    def check_in_sync(self) -> None:
        """Raise TrainingError if the processes' tokenizer weights differ (they must stay identical)."""
        if not parameters_in_sync(self.tok.parameters(), self.world):
            raise TrainingError(
                f"the tokenizer weights differ between the {self.world} processes at step {self.state.step}: "
                "gradients were not synchronised"
            )

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
        step = self.state.step
        disc_on = step >= self.run.loss.disc_start and self.run.loss.disc_factor > 0
        if disc_on and not self.opt_d.state:
            prime_adam(self.opt_d, step)  # the state the original's discriminator Adam has by now
        self._set_lr(step)
        logs, finite, samples = self._accumulate_gradients(step, disc_on)
        if any_process(not finite, self.world, self.device):
            return self._skip_step(step)
        self.state.nonfinite_in_a_row = 0
        logs.update(self._apply_gradients(disc_on))
        self.state.step += 1
        logs["lr/generator"] = self.opt_g.param_groups[0]["lr"]
        logs["lr/discriminator"] = self.opt_d.param_groups[0]["lr"]
        logs["samples"] = float(samples)
        return logs

    def _accumulate_gradients(self, step: int, disc_on: bool) -> tuple[dict[str, float], bool, int]:
        """Forward and backward passes over ``grad_accum`` micro-batches; returns their averaged logs, whether
        every loss was finite (and every micro-batch had a clip) and how many clips they held."""
        accum = self.run.train.grad_accum
        logs: dict[str, float] = {}
        finite = True
        samples = 0
        for _ in range(accum):
            x = self._next_micro_batch()
            if x is None:  # every clip of this batch failed to load (reported by the data layer)
                finite = False
                continue
            samples += x.shape[0]
            ok, micro_logs = self._micro_batch_backward(x, step, disc_on)
            finite = finite and ok
            for key, value in micro_logs.items():
                logs[key] = logs.get(key, 0.0) + float(value) / accum
        self.loss.discriminator.requires_grad_(True)
        return logs, finite, samples

    def _next_micro_batch(self) -> Optional[Tensor]:
        """The next clips on the device (None when none of them loaded); counts the inputs that failed."""
        batch = next(self.batches.at(self.state.step))
        self.state.skipped_inputs += len(batch["skipped"])
        x = batch["video"]
        return None if x is None else x.to(self.device, non_blocking=True)

    def _micro_batch_backward(self, x: Tensor, step: int, disc_on: bool) -> tuple[bool, dict[str, Tensor]]:
        """The generator's backward pass, then (once it is on) the discriminator's; returns whether both losses
        were finite and their logs. The discriminator is skipped after a non-finite generator loss."""
        ok, recon, logs = self._generator_backward(x)
        if ok and disc_on:
            ok, d_logs = self._discriminator_backward(x, recon, step)
            logs = {**logs, **d_logs}
        return ok, logs

    def _generator_backward(self, x: Tensor) -> tuple[bool, Tensor, dict[str, Tensor]]:
        """Generator loss (discriminator frozen) and its backward pass when finite; returns whether it was finite,
        the reconstruction and the logs."""
        self.loss.discriminator.requires_grad_(False)
        with self._autocast():
            g_loss, recon, logs = self._generator_pass(x)
        ok = bool(torch.isfinite(g_loss))
        if ok:
            self._backward(g_loss / self.run.train.grad_accum)
        return ok, recon, logs

    def _discriminator_backward(self, x: Tensor, recon: Tensor, step: int) -> tuple[bool, dict[str, Tensor]]:
        """Discriminator loss on the detached reconstruction and its backward pass when finite."""
        self.loss.discriminator.requires_grad_(True)
        with self._autocast():
            d_loss, logs = self.loss.discriminator_loss(x, recon.detach(), step)
        ok = bool(torch.isfinite(d_loss))
        if ok:
            self._backward(d_loss / self.run.train.grad_accum)
        return ok, logs

    def _skip_step(self, step: int) -> dict[str, float]:
        """Drop the step's gradients (a loss was not finite, or a micro-batch had no clip, on some process) and
        count it; after ``max_nonfinite`` in a row, save a checkpoint and raise [`TrainingError`][]."""
        self.opt_g.zero_grad(set_to_none=True)
        self.opt_d.zero_grad(set_to_none=True)
        self.state.nonfinite_total += 1
        self.state.nonfinite_in_a_row += 1
        self.state.step += 1
        if self.state.nonfinite_in_a_row >= self.run.train.max_nonfinite:
            where = self.save_checkpoint()
            raise TrainingError(
                f"{self.state.nonfinite_in_a_row} steps in a row had a non-finite loss or no loadable clip "
                f"(last at step {step}); stopped. The weights from before them are saved in {where}; lower "
                "optim.lr, check the data, or use train.mixed_precision=no/bf16 before resuming"
            )
        return {"skipped_step": 1.0, "nonfinite_total": float(self.state.nonfinite_total)}

    def _apply_gradients(self, disc_on: bool) -> dict[str, float]:
        """Average the gradients across processes, clip them, step the optimisers (the discriminator's once it is
        on) and the EMA; returns the gradient norms before clipping."""
        norms = {}
        self._sync_gradients(self.gen_params)
        norms["grad_norm/generator"] = self._clip(self.gen_params, self.opt_g)
        if disc_on:
            self._sync_gradients(self.disc_params)
            norms["grad_norm/discriminator"] = self._clip(self.disc_params, self.opt_d)
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
        return norms

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
        factor = warmup_factor(step, self.run.optim.warmup_steps)
        set_learning_rates(((self.opt_g, self.lr_g), (self.opt_d, self.lr_d)), factor)

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
        self.batches.reset()
        log.info("resumed from %s at step %d", path, self.state.step)
        return path

    # ---- validation ----------------------------------------------------------------------------
    def validate(self) -> dict[str, float]:
        """Metrics over the validation data (gathered across processes) and sample reconstructions;
        with EMA weights, a second pass with them (``val_ema/...``). See [`Validator`][]. Kept as
        [`last_validation`][]."""
        results = self.validator.validate(self.state.step, self.logger)
        if results:
            self.last_validation = results
        return results

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
