"""The VidTok training objective: L1 + LPIPS reconstruction as a learned-variance NLL, an adaptively weighted
PatchGAN generator term after ``disc_start``, and the latent regulariser's KL or FSQ auxiliary loss.

Numerically this is the original's ``GeneralLPIPSWithDiscriminator`` with ``dims=3``: videos are folded to
frames, so per-pixel terms are summed and divided by B*T, and the (per-frame) LPIPS distance is added to
every pixel's L1 term before that sum, as the original does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Optional

import torch
import torch.nn as nn
from torch import Tensor

from ..metrics.lpips import LPIPS
from .adversarial import DISC_LOSSES, GEN_LOSSES, LeCAM, adaptive_generator_weight
from .config import LossConfig
from .discriminator import NLayerDiscriminator, NLayerDiscriminator3D, load_discriminator_state_dict
from .regularization import commitment_loss, entropy_loss_weight, fsq_entropy_loss, kl_loss

REGULARIZER_KINDS = ("kl", "fsq")


def original_steps(iteration: int) -> tuple[int, int, int]:
    """(regularization step, generator step, discriminator step) that reproduce the original's schedules at
    training iteration ``iteration`` (0-based). Its Lightning ``global_step`` advanced once per optimizer,
    i.e. twice per iteration: the generator loss saw 2i, the discriminator loss 2i + 1, and the FSQ entropy
    annealing global_step // 2 = i. So with the default ``disc_start`` 20001 the discriminator starts
    training at iteration 10000 and the generator's adversarial term at iteration 10001."""
    return iteration, 2 * iteration, 2 * iteration + 1


def _fold_frames(x: Tensor) -> Tensor:
    """(B, C, T, H, W) -> (B*T, C, H, W), frame-major within each sample."""
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w)


@contextlib.contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """Parameters of ``module`` do not require grad inside: a forward builds no weight-gradient graph."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


class VidTokLoss(nn.Module):
    """Training losses of a VidTok tokenizer; ``regularizer`` is ``"kl"`` or ``"fsq"``.

    Per iteration: ``z, terms = loss.regularization(tok.encode_moments(x), tok.regularizer, step)``,
    ``x_hat = tok.decode(z)[:, :, :T]``, ``generator_loss(x, x_hat, terms, step, last_layer)`` for the
    tokenizer (+ ``generator_parameters()``) optimiser, then ``discriminator_loss(x, x_hat, step)`` for the
    ``discriminator_parameters()`` optimiser. See [`original_steps`][] for the original's step counting.

    The state dict holds ``logvar``, the discriminator and the LeCAM averages. The LPIPS network is kept out
    of the module tree on purpose (frozen, loaded from its own files): it is never in ``state_dict()``,
    ``parameters()`` or an optimiser, yet follows ``.to()`` / ``.cuda()`` moves; it is [`perceptual`][].
    """

    logvar: nn.Parameter

    def __init__(self, config: Optional[LossConfig] = None, regularizer: str = "kl", pretrained_lpips: bool = True):
        super().__init__()
        config = LossConfig() if config is None else config.validate()
        if regularizer not in REGULARIZER_KINDS:
            raise ValueError(f"regularizer must be one of {REGULARIZER_KINDS}, got {regularizer!r}")
        self.config = config
        self.regularizer_kind = regularizer
        self.logvar = nn.Parameter(torch.tensor(float(config.logvar_init)), requires_grad=config.learn_logvar)
        disc_cls = NLayerDiscriminator if config.disc_type == "2d" else NLayerDiscriminator3D
        self.discriminator = disc_cls(config.disc_in_channels, config.disc_channels, config.disc_num_layers)
        self.lecam = LeCAM(config.lecam_decay) if config.lecam_weight > 0 else None
        self._disc_loss = DISC_LOSSES[config.disc_loss]
        self._gen_loss = GEN_LOSSES[config.gen_loss]
        lpips = None
        if config.perceptual_weight > 0:
            lpips = LPIPS(
                pretrained=pretrained_lpips,
                vgg_path=config.vgg_path,
                frames_per_pass=config.lpips_frames_per_pass,
                checkpoint=config.lpips_checkpoint,
            )
        self.__dict__["_lpips"] = lpips  # deliberately not registered (see the class docstring)
        self._codebooks: dict[tuple, Tensor] = {}

    # ---- plumbing ---------------------------------------------------------------------------------
    @property
    def perceptual(self) -> Optional[LPIPS]:
        """The frozen LPIPS network (None when ``perceptual_weight`` is 0)."""
        return self._lpips

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> VidTokLoss:
        super()._apply(fn, recurse)
        if self._lpips is not None:
            self._lpips._apply(fn, recurse)
        self._codebooks.clear()
        return self

    def generator_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters trained with the tokenizer: ``logvar`` when ``learn_logvar``."""
        if self.config.learn_logvar:
            yield self.logvar

    def discriminator_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the discriminator optimiser."""
        yield from self.discriminator.parameters()

    def disc_factor(self, step: int) -> float:
        """``config.disc_factor`` from ``disc_start`` on, 0 before."""
        return 0.0 if step < self.config.disc_start else float(self.config.disc_factor)

    def entropy_weight(self, step: int) -> float:
        """The annealed FSQ entropy-loss weight at ``step``."""
        c = self.config
        return entropy_loss_weight(step, c.entropy_weight, c.entropy_annealing_steps, c.entropy_annealing_factor)

    def load_original_state_dict(self, state_dict: Mapping[str, Tensor], prefix: str = "loss.") -> None:
        """Initialise the discriminator and ``logvar`` from an official training checkpoint's ``state_dict``
        (keys ``loss.discriminator.*`` and ``loss.logvar``); strict, see [`load_discriminator_state_dict`][]."""
        load_discriminator_state_dict(self.discriminator, state_dict, prefix + "discriminator.")
        if prefix + "logvar" in state_dict:
            with torch.no_grad():
                self.logvar.copy_(state_dict[prefix + "logvar"].reshape(()))

    def _codebook(self, regularizer: nn.Module, device: torch.device) -> Tensor:
        key = (tuple(regularizer.levels), device)
        if key not in self._codebooks:
            indices = torch.arange(regularizer.codebook_size, device=device)
            self._codebooks[key] = regularizer.indices_to_codes(indices).float()
        return self._codebooks[key]

    # ---- the three loss paths -------------------------------------------------------------------
    def regularization(
        self, moments: Tensor, regularizer: nn.Module, step: int, sample: bool = True
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Encoder output -> (latents to decode, regularisation terms).

        KL: a posterior sample (the mean with ``sample=False``) and ``{"kl_loss"}``. FSQ: the straight-through
        codes and ``{"aux_loss"}`` = annealed entropy weight * entropy loss + commitment weight * commitment,
        plus its parts (``entropy_loss``, ``per_sample_entropy``, ``codebook_entropy``, ``commitment_loss``,
        ``entropy_weight``) for logging. Only ``kl_loss`` and ``aux_loss`` enter [`generator_loss`][].
        """
        c = self.config
        if self.regularizer_kind == "kl":
            if not hasattr(regularizer, "kl"):
                raise TypeError(f"a KL loss needs a DiagonalGaussian regularizer, got {type(regularizer).__name__}")
            z = regularizer(moments, sample=sample)
            return z, {"kl_loss": kl_loss(moments)}
        if not hasattr(regularizer, "codebook_size"):
            raise TypeError(f"an FSQ loss needs an FSQ regularizer, got {type(regularizer).__name__}")
        codes = regularizer(moments)
        zero = moments.new_zeros((), dtype=torch.float32)
        terms: dict[str, Tensor] = {}
        weight = self.entropy_weight(step)
        aux = zero
        if c.entropy_weight > 0:
            codebook = self._codebook(regularizer, moments.device)
            ent = fsq_entropy_loss(moments, codebook, c.inv_temperature, c.diversity_gamma, c.entropy_chunk_size)
            aux = ent.entropy_loss * weight
            terms.update(
                entropy_loss=ent.entropy_loss,
                per_sample_entropy=ent.per_sample_entropy,
                codebook_entropy=ent.codebook_entropy,
            )
        if c.commitment_weight > 0 or c.entropy_weight > 0:
            commit = commitment_loss(moments, codes)
            aux = aux + commit * c.commitment_weight
            terms["commitment_loss"] = commit
        terms["entropy_weight"] = torch.tensor(weight)
        return codes.to(moments.dtype), {"aux_loss": aux, **terms}

    def _check_videos(self, inputs: Tensor, recon: Tensor) -> None:
        if inputs.ndim != 5 or inputs.shape != recon.shape:
            raise ValueError(
                f"expected inputs and reconstructions of one shape (B, C, T, H, W), got {tuple(inputs.shape)} "
                f"and {tuple(recon.shape)} (slice the decoder output to the input's T)"
            )
        if inputs.shape[1] != self.config.disc_in_channels:
            raise ValueError(f"expected {self.config.disc_in_channels} channels, got {inputs.shape[1]}")

    def generator_loss(
        self,
        inputs: Tensor,
        recon: Tensor,
        reg_terms: Mapping[str, Tensor],
        step: int,
        last_layer: Optional[Tensor] = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The tokenizer's loss for videos (B, 3, T, H, W) in [-1, 1] and its reconstruction.

        ``last_layer`` is the decoder's output conv weight, for the adaptive adversarial weight; it is only
        needed from ``disc_start`` on. Before ``disc_start`` the discriminator is not run at all (the
        original multiplies its term by 0) and ``d_weight`` / ``g_loss`` are logged as 0.
        """
        self._check_videos(inputs, recon)
        c = self.config
        x, y = _fold_frames(inputs), _fold_frames(recon)
        rec_loss = (x - y).abs()
        if c.pixel_weight != 1.0:  # the original ignores its pixel weight; 1.0 keeps its numerics exact
            rec_loss = rec_loss * c.pixel_weight
        if self._lpips is not None:
            p_loss = self._lpips(x, y)
            rec_loss = rec_loss + c.perceptual_weight * p_loss
        else:
            p_loss = rec_loss.new_zeros(())
        nll = rec_loss / torch.exp(self.logvar) + self.logvar
        nll_loss = nll.sum() / nll.shape[0]

        disc_factor = self.disc_factor(step)
        zero = nll_loss.new_zeros(()).detach()
        g_loss, d_weight = zero, zero
        loss = nll_loss
        if disc_factor > 0:
            # Only the input gradient is needed here: the discriminator is trained by discriminator_loss.
            disc = getattr(self.discriminator, "module", self.discriminator)  # unwrap DDP if it was wrapped
            with _frozen(disc):
                logits_fake = disc(y if c.disc_type == "2d" else recon.contiguous())
            g_loss = self._gen_loss(logits_fake)
            if torch.is_grad_enabled() and nll_loss.requires_grad:
                if last_layer is None:
                    raise ValueError(
                        "generator_loss needs last_layer (the decoder's output conv weight) from disc_start on, "
                        "got None"
                    )
                d_weight = adaptive_generator_weight(nll_loss, g_loss, last_layer, c.disc_weight)
            loss = loss + d_weight * disc_factor * g_loss

        logs: dict[str, Tensor] = {}
        weights = {"kl_loss": c.kl_weight, "aux_loss": c.aux_weight}
        for name, value in reg_terms.items():
            if name in weights:
                loss = loss + weights[name] * value
            logs[name] = value.detach().float().mean()
        logs.update(
            total_loss=loss.detach().clone(),
            nll_loss=nll_loss.detach(),
            rec_loss=rec_loss.detach().mean(),
            p_loss=p_loss.detach().mean(),
            logvar=self.logvar.detach().clone(),
            d_weight=d_weight.detach(),
            disc_factor=torch.tensor(disc_factor),
            g_loss=g_loss.detach(),
        )
        return loss, logs

    def discriminator_loss(self, inputs: Tensor, recon: Tensor, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        """The discriminator's loss (hinge or vanilla, + LeCAM), on detached inputs; multiplied by 0 before
        ``disc_start`` but still computed, as the original does, so the LeCAM averages and batch-norm
        statistics evolve as there. The LeCAM averages are updated in training mode only."""
        self._check_videos(inputs, recon)
        c = self.config
        inputs, recon = inputs.detach(), recon.detach()
        if c.disc_type == "2d":
            inputs, recon = _fold_frames(inputs), _fold_frames(recon)
        logits_real = self.discriminator(inputs.contiguous())
        logits_fake = self.discriminator(recon.contiguous())
        disc_factor = self.disc_factor(step)
        gan_loss = self._disc_loss(logits_real, logits_fake)
        logs: dict[str, Tensor] = {}
        if self.lecam is not None:
            if self.training:
                self.lecam.update(logits_real, logits_fake)
            lecam_loss = self.lecam(logits_real, logits_fake)
            loss = disc_factor * (lecam_loss * c.lecam_weight + gan_loss)
            logs.update(
                lecam_loss=lecam_loss.detach(),
                lecam_real_ema=self.lecam.real_ema.detach().float(),
                lecam_fake_ema=self.lecam.fake_ema.detach().float(),
            )
        else:
            loss = disc_factor * gan_loss
        logs.update(
            disc_loss=loss.detach().clone(),
            disc_gan_loss=gan_loss.detach(),
            logits_real=logits_real.detach().mean(),
            logits_fake=logits_fake.detach().mean(),
            disc_factor=torch.tensor(disc_factor),
        )
        return loss, logs
