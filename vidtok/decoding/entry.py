"""The entry point of ``decode.py`` (a Hydra app): the composed config in,
[`decode_dataset`][vidtok.decoding.decode_dataset] run, one summary line printed, and any user error
([`VidtokError`][vidtok.errors.VidtokError]) turned into one line."""

from __future__ import annotations

import logging
import os
from typing import Any

from ..config_loader import composed_values
from ..hydra_app import user_errors
from .run import decode_dataset


def decode_from_hydra(cfg: Any) -> int:
    """Entry point of decode.py: runs [`decode_dataset`][], prints what was written; exits with one line and status 2
    on a user error. Returns the number of videos written."""
    from ..accelerator import end_processes

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with user_errors("decode"):
        try:
            result = decode_dataset(composed_values(cfg, "data.dir=latents/ output.dir=decoded/"))
        finally:
            end_processes()
    if int(os.environ.get("RANK", "0")) == 0:
        print(
            f"wrote {result.videos} videos with {result.identity.get('name') or 'the tokenizer'} to "
            f"{result.output_dir} ({result.skipped_done} done before, {len(result.failed)} failed; "
            f"{result.frames / max(result.seconds, 1e-9):.1f} frames/s)"
        )
    return result.videos
