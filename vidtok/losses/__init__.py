"""Training losses of VidTok tokenizers: reconstruction (L1 + LPIPS), PatchGAN adversarial and latent
regularisation (KL or FSQ entropy + commitment), with the original's numerics.

>>> loss = VidTokLoss(LossConfig(), regularizer="kl")
>>> z, terms = loss.regularization(tok.encode_moments(x), tok.regularizer, step)
>>> x_hat = tok.decode(z)[:, :, : x.shape[2]]
>>> g, logs = loss.generator_loss(x, x_hat, terms, step, unwrap_conv(tok.decoder.conv_out).weight)
>>> d, dlogs = loss.discriminator_loss(x, x_hat, step)
"""

from .adversarial import (
    LeCAM,
    adaptive_generator_weight,
    hinge_d_loss,
    hinge_g_loss,
    non_saturating_g_loss,
    vanilla_d_loss,
)
from .config import LossConfig
from .discriminator import (
    NLayerDiscriminator,
    NLayerDiscriminator3D,
    init_discriminator_weights,
    load_discriminator_state_dict,
)
from .regularization import (
    FSQEntropyTerms,
    commitment_loss,
    entropy_loss_weight,
    fsq_entropy_loss,
    kl_loss,
)
from .vidtok_loss import VidTokLoss, original_steps

__all__ = [
    "FSQEntropyTerms",
    "LeCAM",
    "LossConfig",
    "NLayerDiscriminator",
    "NLayerDiscriminator3D",
    "VidTokLoss",
    "adaptive_generator_weight",
    "commitment_loss",
    "entropy_loss_weight",
    "fsq_entropy_loss",
    "hinge_d_loss",
    "hinge_g_loss",
    "init_discriminator_weights",
    "kl_loss",
    "load_discriminator_state_dict",
    "non_saturating_g_loss",
    "original_steps",
    "vanilla_d_loss",
]
