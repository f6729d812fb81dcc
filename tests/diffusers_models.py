"""Tiny randomly initialised diffusers video autoencoders of every family the evaluation runs, built from their
classes' own constructor arguments with the released models' compression factors (only the widths are small), and
saved as ``save_pretrained`` folders. Allegro runs by tiles only (tiling is switched on); ``sample_size=32`` makes its
tile 24 x 32 x 32 frames."""

from __future__ import annotations

from pathlib import Path

import torch

#: family key -> (class name, constructor arguments); factors as released: 4x8x8 unless said.
TINY = {
    "cogvideox": ("AutoencoderKLCogVideoX", dict(
        block_out_channels=(8, 8, 8, 8), latent_channels=4, layers_per_block=1, norm_num_groups=2)),
    "wan": ("AutoencoderKLWan", dict(
        base_dim=4, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True],
        latents_mean=[0.0] * 4, latents_std=[1.0] * 4)),
    "hunyuan": ("AutoencoderKLHunyuanVideo", dict(
        block_out_channels=(8, 8, 8, 8), latent_channels=4, layers_per_block=1, norm_num_groups=2)),
    "ltx": ("AutoencoderKLLTXVideo", dict(  # 8x32x32
        latent_channels=8, block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True, False), decoder_spatio_temporal_scaling=(True, True, True, False),
        decoder_inject_noise=(False,) * 5, upsample_residual=(False,) * 4, upsample_factor=(1,) * 4,
        timestep_conditioning=False, patch_size=4, patch_size_t=1, encoder_causal=True, decoder_causal=False)),
    "mochi": ("AutoencoderKLMochi", dict(  # 6x8x8; 32 channels is its smallest width (GroupNorm of 32 groups)
        encoder_block_out_channels=(32,) * 4, decoder_block_out_channels=(32,) * 4, latent_channels=4,
        layers_per_block=(1,) * 5, latents_mean=(0.0,) * 4, latents_std=(1.0,) * 4)),
    "cosmos": ("AutoencoderKLCosmos", dict(  # 8x8x8
        latent_channels=4, encoder_block_out_channels=(8,) * 4, decode_block_out_channels=(8,) * 4, num_layers=1,
        latents_mean=None, latents_std=None)),
    "allegro": ("AutoencoderKLAllegro", dict(
        block_out_channels=(8, 8, 8, 8), latent_channels=4, layers_per_block=1, norm_num_groups=2, sample_size=32)),
    "vidtok": ("AutoencoderVidTok", dict(
        ch=8, ch_mult=[1, 1, 1, 1], z_channels=4, double_z=True, num_res_blocks=1, regularizer="kl")),
    "vidtok_fsq": ("AutoencoderVidTok", dict(
        ch=8, ch_mult=[1, 1, 1, 1], z_channels=3, double_z=False, num_res_blocks=1, regularizer="fsq",
        codebook_size=512)),
}  # fmt: skip

#: (temporal factor, spatial factor, frame rule (first, step)) each tiny model must report.
EXPECTED = {
    "cogvideox": (4, 8, (1, 8)),
    "wan": (4, 8, (1, 4)),
    "hunyuan": (4, 8, (1, 4)),
    "ltx": (8, 32, (1, 8)),
    "mochi": (6, 8, (1, 6)),
    "cosmos": (8, 8, (1, 8)),
    "allegro": (4, 8, (24, 16)),
    "vidtok": (4, 8, (1, 4)),
    "vidtok_fsq": (4, 8, (1, 4)),
}


def build(key: str, seed: int = 0) -> torch.nn.Module:
    """The tiny model of family ``key``, with small random weights, in eval mode."""
    import diffusers

    cls_name, kwargs = TINY[key]
    torch.manual_seed(seed)
    model = getattr(diffusers, cls_name)(**kwargs).eval()
    if key == "allegro":
        model.enable_tiling()
    return model


def save(key: str, folder: Path, seed: int = 0) -> Path:
    """The tiny model of ``key`` as a ``save_pretrained`` folder."""
    build(key, seed).save_pretrained(folder)
    return folder
