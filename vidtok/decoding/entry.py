"""The entry point of ``decode.py`` (a Hydra app): the composed config in,
[`decode_dataset`][vidtok.decoding.decode_dataset] run, one summary line printed, and any user error
([`VidtokError`][vidtok.errors.VidtokError]) turned into one line."""

from __future__ import annotations

from typing import Any

from ..hydra_app import is_main_rank, run_job
from .run import decode_dataset


def decode_from_hydra(cfg: Any) -> int:
    """Entry point of decode.py: runs [`decode_dataset`][], prints what was written; exits with one line and status 2
    on a user error. Returns the number of videos written."""
    result = run_job("decode", decode_dataset, cfg, "data.dir=latents/ output.dir=decoded/")
    if is_main_rank():
        print(
            f"wrote {result.videos} videos with {result.identity.get('name') or 'the tokenizer'} to "
            f"{result.output_dir} ({result.skipped_done} done before, {len(result.failed)} failed; "
            f"{result.frames / max(result.seconds, 1e-9):.1f} frames/s)"
        )
    return result.videos
