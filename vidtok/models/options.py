"""How a tokenizer pass spends memory: time chunks, spatial tiles and padding, as one checked object.

Every layer that runs a tokenizer (``Tokenizer.encode`` / ``decode``, the streams, the file pipeline, the
``vidtok`` commands, evaluation) takes an [`InferenceOptions`][]. The public calls are the edges: there
the options (and any option keywords on top) are checked against the model once, by
[`InferenceOptions.checked`][], which raises [`InputError`][vidtok.InputError] naming valid values; below them
the checked object is passed down as it is. [`InferenceOptions.replace`][] keeps a checked object checked
(it checks only the fields it changes), and an edge handed a checked object checks nothing again.

* ``chunk_frames`` - causal models: frames that go through the encoder at once (memory, not the result);
* ``chunk_latents`` - causal models: latents that go through the decoder at once;
* ``tile`` / ``tile_overlap`` - pixels of the video: large frames are processed as blended tiles;
* ``pad`` - non-causal models: accept any frame count, padding with copies of the last frame.

How a long video is cut into clips (``clip_frames``) is not an option of a pass: see the pipeline and the
evaluation config.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

from ..config import TokenizerConfig
from ..errors import InputError

FIELDS = ("chunk_frames", "chunk_latents", "tile", "tile_overlap", "pad")


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_multiple(value: Optional[int], factor: int, what: str, label: str) -> None:
    """Raise an InputError naming valid values when ``value`` is not None nor a positive multiple of ``factor``."""
    if value is None:
        return
    if not _is_count(value) or value < 1 or value % factor:
        examples = ", ".join(str(factor * k) for k in (1, 2, 4, 8))
        raise InputError(f"{what} must be a positive multiple of {factor} for {label} (e.g. {examples}); got {value!r}")


@dataclass(frozen=True)
class InferenceOptions:
    """Chunking, tiling and padding of tokenizer passes; see the module docstring. All off by default."""

    chunk_frames: Optional[int] = None
    chunk_latents: Optional[int] = None
    tile: Optional[int] = None
    tile_overlap: Optional[int] = None
    pad: bool = False
    _checked_for: Optional[TokenizerConfig] = field(default=None, compare=False, repr=False)

    def replace(self, **changes) -> InferenceOptions:
        """A copy with ``changes`` (field names as keywords; unknown names raise TypeError). A checked object
        stays checked: the changed fields are checked against the same model (InputError as [`checked`][])."""
        unknown = sorted(set(changes) - set(FIELDS))
        if unknown:
            raise TypeError(f"unknown inference option(s) {', '.join(unknown)}; the options are {', '.join(FIELDS)}")
        changes = {name: value for name, value in changes.items() if getattr(self, name) != value}
        if not changes:
            return self
        changed = dataclasses.replace(self, _checked_for=None, **changes)
        if self._checked_for is None:
            return changed
        return changed._validated(self._checked_for, set(changes))

    def is_checked_for(self, config: TokenizerConfig) -> bool:
        """Whether these options were checked against ``config`` (by [`checked`][], or kept by [`replace`][])."""
        return self._checked_for is config

    def checked(self, config: TokenizerConfig) -> InferenceOptions:
        """These options checked against ``config`` (InputError naming valid values), with ``tile_overlap``
        filled in (a quarter tile, rounded down to the spatial factor). Checking is done once per model."""
        if self._checked_for is config:
            return self
        return self._validated(config, set(FIELDS))

    def _validated(self, config: TokenizerConfig, names: set[str]) -> InferenceOptions:
        """A copy checked for ``config``, after checking the fields ``names`` (the others are known to fit)."""
        if names & {"chunk_frames", "chunk_latents"}:
            self._check_chunks(config)
        if "pad" in names and not isinstance(self.pad, bool):
            raise InputError(f"pad must be True or False, got {self.pad!r}")
        overlap = self._checked_overlap(config) if names & {"tile", "tile_overlap"} else self.tile_overlap
        return dataclasses.replace(self, tile_overlap=overlap, _checked_for=config)

    def _check_chunks(self, config: TokenizerConfig) -> None:
        label, f = config.label, config.temporal_factor
        if not config.causal:
            for name in ("chunk_frames", "chunk_latents"):
                if getattr(self, name) is not None:
                    raise InputError(
                        f"{label} is non-causal: every output depends on the whole clip, so it cannot be processed "
                        f"chunk by chunk ({name}={getattr(self, name)!r}); encode clips of a multiple of {f} frames "
                        "separately, or use a causal model"
                    )
        check_multiple(self.chunk_frames, f, "chunk_frames", label)
        check_multiple(self.chunk_latents, 1, "chunk_latents", label)

    def _checked_overlap(self, config: TokenizerConfig) -> Optional[int]:
        """The tile overlap (default a quarter tile, rounded down to the spatial factor) once tile and overlap fit."""
        label, fs, overlap = config.label, config.spatial_factor, self.tile_overlap
        if self.tile is None:
            if overlap is not None:
                raise InputError(f"tile_overlap ({overlap!r}) needs tile")
            return None
        examples = ", ".join(str(fs * k) for k in (16, 32, 64))
        if not _is_count(self.tile) or self.tile < fs or self.tile % fs:
            raise InputError(
                f"tile must be a positive multiple of {fs} pixels for {label} (e.g. {examples}); got {self.tile!r}"
            )
        if overlap is None:
            overlap = self.tile // 4 // fs * fs
        if not _is_count(overlap) or overlap < 0 or overlap % fs or overlap >= self.tile:
            raise InputError(
                f"tile_overlap must be a multiple of {fs} pixels, >= 0 and smaller than the tile ({self.tile}) "
                f"for {label}; got {overlap!r}"
            )
        return overlap


def as_options(options: Optional[InferenceOptions]) -> InferenceOptions:
    """``options``, or the defaults for None; anything else raises TypeError."""
    if options is None:
        return InferenceOptions()
    if not isinstance(options, InferenceOptions):
        raise TypeError(f"options must be an InferenceOptions, got {type(options).__name__}")
    return options


def resolve_options(
    options: Optional[InferenceOptions], fields: dict, allowed: tuple[str, ...], what: str, config: TokenizerConfig
) -> InferenceOptions:
    """``options`` (default: none) with the keyword ``fields`` a call to the model of ``config`` was given on top (the
    object itself when none is given); a keyword that ``what`` does not use (e.g. ``chunk_latents`` to ``encode``)
    raises TypeError. Options checked for another model are checked afresh for this one, keywords included."""
    opts = as_options(options)
    stray = sorted(set(fields) - set(allowed))
    if stray:
        raise TypeError(f"{what} takes the options {', '.join(allowed)}; got {', '.join(stray)}")
    if opts._checked_for is not None and opts._checked_for is not config:
        opts = dataclasses.replace(opts, _checked_for=None)
    return opts.replace(**{name: value for name, value in fields.items() if value is not None})
