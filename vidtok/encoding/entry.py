"""The entry point of ``encode.py`` (a Hydra app): the composed config in,
[`encode_dataset`][vidtok.encoding.encode_dataset] run, one summary line printed, and any user error
([`VidtokError`][vidtok.errors.VidtokError]) turned into one line."""

from __future__ import annotations

from typing import Any

from ..hydra_app import is_main_rank, run_job
from .run import encode_dataset


def encode_from_hydra(cfg: Any) -> int:
    """Entry point of encode.py: runs [`encode_dataset`][], prints what was written; exits with one line and status 2
    on a user error. Returns the number of samples in the output."""
    result = run_job("encode", encode_dataset, cfg, "data.dir=videos/ output.dir=latents/")
    if is_main_rank():
        print(
            f"wrote {result.samples} samples of {result.identity.get('name') or 'the tokenizer'} to "
            f"{result.output_dir} ({result.videos} videos encoded now, {result.skipped_done} done before, "
            f"{len(result.failed)} failed; {result.frames / max(result.seconds, 1e-9):.1f} frames/s)"
        )
    return result.samples
