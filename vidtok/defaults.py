"""Defaults that several layers share (the model's streams, the file pipeline, the jobs, the command line), named
once. The YAML configs repeat some of them as values; tests/test_config_defaults.py holds them to these."""

from __future__ import annotations

#: The paper's clip lengths: 17 frames (1 + 4k) for causal models, 16 for non-causal ones.
PROTOCOL_CLIP_FRAMES = {True: 17, False: 16}

#: Frames per encoder pass of a causal stream when nothing says otherwise (the original's ``chunk_size``).
CHUNK_FRAMES = 16
#: Latents per decoder pass of a causal stream when nothing says otherwise.
CHUNK_LATENTS = 4


def protocol_clip_frames(causal: bool) -> int:
    """Frames of one clip of the paper's protocol for a causal or non-causal model (17 / 16)."""
    return PROTOCOL_CLIP_FRAMES[bool(causal)]
