"""Validation during training: metrics over the validation data (gathered across processes), a second pass with
the EMA weights when there are any, and side-by-side sample videos (input | reconstruction) written into the run
directory and sent to the run's logger. [`Validator`][] holds what that needs; the Trainer calls it."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import torch
from torch import Tensor

from ..data.config import DataConfig, build_loader
from ..distributed import gather_objects
from ..io.video import tensor_to_frames, write_video
from ..metrics.drift import LatentDrift

if TYPE_CHECKING:
    from ..data import VideoClipDataset
    from ..models.tokenizer import Tokenizer
    from .config import RunConfig, ValidationConfig
    from .ema import EMA
    from .logging import RunLogger


@dataclass
class Validator:
    """Validates ``tok`` (and its ``ema`` weights) on ``dataset``, read as ``data`` says.

    ``reference_state``: the weights the run started from (``init_from``), whose latents of the validation clips the
    tokenizer's are compared with (``latent_drift``; the reference is kept on the CPU between validations).
    ``perceptual``: the loss's LPIPS network, when it has one, so that validation scores with it instead of
    loading a second one; ``autocast``: the training's autocast context (a fresh one per call). Sample videos go
    to ``run_dir/samples`` and only the main process writes them. The metrics (LPIPS, the I3D detector) are
    built at the first pass: they take seconds to load.
    """

    config: ValidationConfig
    data: Optional[DataConfig]
    vgg_path: Optional[str]
    freeze_encoder: bool
    tok: Tokenizer
    dataset: Optional[VideoClipDataset]
    ema: Optional[EMA]
    perceptual: Optional[torch.nn.Module]
    device: torch.device
    run_dir: Path
    is_main: bool
    autocast: Callable[[], AbstractContextManager]
    reference_state: Optional[dict[str, Tensor]] = None
    metrics: Any = field(default=None, init=False)  # a vidtok.metrics.VideoMetrics, once built
    reference: Any = field(default=None, init=False)  # the tokenizer of reference_state, once built (on the CPU)

    @classmethod
    def for_run(cls, run: RunConfig, tok: Tokenizer, dataset: Optional[VideoClipDataset], **parts: Any) -> Validator:
        """The validator of a run: its validation, data, LPIPS weights and stage settings; ``parts``: the other
        fields (``ema``, ``perceptual``, ``device``, ``run_dir``, ``is_main``, ``autocast``)."""
        return cls(run.validation, run.val_data, run.loss.vgg_path, run.stage.freeze_encoder, tok, dataset, **parts)

    @torch.no_grad()
    def validate(self, step: int, logger: Optional[RunLogger] = None) -> dict[str, float]:
        """Metrics at training step ``step`` as ``val/<name>`` (and ``val_ema/<name>``); {} without validation
        data. Leaves the tokenizer's train/eval modes and training's random streams as they were."""
        if self.dataset is None:
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
                        summary = self._validation_pass(prefix, step, logger)
                    results.update({f"{prefix}/{k}": v for k, v in summary.items() if isinstance(v, (int, float))})
        finally:
            if self.reference is not None:
                self.reference.to("cpu")  # kept off the training's device between validations
            self.tok.train(was_training)
            if self.freeze_encoder:
                self.tok.encoder.eval()
        return results

    def _validation_pass(self, prefix: str, step: int, logger: Optional[RunLogger]) -> dict[str, Any]:
        from ..metrics import VideoMetrics

        vcfg = self.config
        if self.metrics is None:  # built once: LPIPS and the I3D detector take seconds to load
            shared = self.perceptual  # the loss's LPIPS network, when it has one, serves validation too
            self.metrics = VideoMetrics(
                lpips=shared if vcfg.lpips and shared is not None else vcfg.lpips,
                vgg_path=self.vgg_path,
                fvd=vcfg.fvd,
                detector_path=vcfg.detector_path,
                device=self.device,
            )
        metrics = self.metrics
        metrics.reset()
        reference = self._reference()
        drift = LatentDrift() if reference is not None else None
        clips, saved = 0, 0
        for batch in build_loader(self.data, self.dataset, persistent_workers=False):
            x = batch["video"]
            if x is None:
                continue
            if vcfg.max_clips is not None and clips >= vcfg.max_clips:
                break
            x = x.to(self.device)
            with self.autocast():
                if reference is None:
                    recon = self.tok(x)
                else:  # the model's two passes as tok(x) runs them, and the reference's latents of x
                    z = self.tok.encode(x)
                    recon = self.tok.decode(z)[:, :, : x.shape[2]]
                    drift.measure(self.tok, reference, x, z)
            recon = recon.float().clamp(-1, 1)
            names = [f"{k}#{c}" for k, c in zip(batch["keys"], batch["clips"], strict=True)]
            metrics.update(x, recon, names)
            clips += x.shape[0]
            if self.is_main and saved < vcfg.samples:
                for i in range(min(x.shape[0], vcfg.samples - saved)):
                    self._save_sample(prefix, saved, x[i : i + 1], recon[i : i + 1], batch["fps"][i], step, logger)
                    saved += 1
        summary = metrics.compute()
        if reference is not None:
            summary.update(_drift_summary(drift))
        return summary

    def _reference(self) -> Any:
        """The reference tokenizer on the device, built at the first validation (None without one)."""
        if self.reference_state is None or not self.config.latent_drift:
            return None
        if self.reference is None:
            from ..models.tokenizer import Tokenizer

            self.reference = Tokenizer(self.tok.config)
            self.reference.load_state_dict(self.reference_state)
            self.reference.eval().requires_grad_(False)
        return self.reference.to(self.device)

    def _save_sample(
        self, prefix: str, index: int, x: Tensor, recon: Tensor, fps: float, step: int, logger: Optional[RunLogger]
    ) -> None:
        frames = tensor_to_frames(torch.cat([x.cpu(), recon.cpu()], dim=4))  # input | reconstruction
        path = self.run_dir / "samples" / f"{prefix}_step{step:08d}_{index}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(path, frames, fps=fps or 8.0)
        if logger is not None:
            logger.video(f"{prefix}/sample_{index}", path, frames, step, fps or 8.0)


def _drift_summary(drift: LatentDrift) -> dict[str, float]:
    """The processes' drift sums merged: ``latent_drift``, ``latent_drift_ch<i>``, ``latent_changed_tokens``."""
    d = LatentDrift.merged(gather_objects(drift)).compute()
    if not d:
        return {}
    out = {"latent_drift": d["relative_l2"]}
    out.update({f"latent_drift_ch{i}": v for i, v in enumerate(d["per_channel"])})
    if "changed_tokens" in d:
        out["latent_changed_tokens"] = d["changed_tokens"]
    return out
