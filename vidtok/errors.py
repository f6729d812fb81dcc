"""Every error vidtok raises for something the user gave it: a config, a file, a tensor, a data source, a launch.

All derive from [`VidtokError`][], so one ``except VidtokError`` catches any of them; each also derives from the
built-in type its kind has always had (``ValueError`` for bad values, ``RuntimeError`` for a run that cannot go on,
``OSError`` for damaged data), so code that caught those still does. Messages name what was expected and what was
found. Every entry point (the ``vidtok`` command, ``train`` / ``evaluate`` / ``encode``) prints such an error as one
line and exits with [`EXIT_USER_ERROR`][] ([`report`][]); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

EXIT_USER_ERROR = 2
"""The exit status of an entry point refusing its input (argparse's for a bad command line too)."""


class VidtokError(Exception):
    """Base of the errors vidtok raises for bad input; see the module docstring."""


class ConfigError(VidtokError, ValueError):
    """A configuration value is missing, unknown or inconsistent."""


class InputError(VidtokError, ValueError):
    """An input tensor, chunk or tile size does not fit the tokenizer (wrong type, shape, count or range)."""


class CheckpointError(VidtokError, ValueError):
    """A checkpoint file cannot be read, is unsafe, or does not fit the tokenizer."""


class WeightsNotFoundError(CheckpointError, FileNotFoundError):
    """What was named as weights holds none: no such file, or a folder with no tokenizer in it."""


class HubError(CheckpointError):
    """Official weights could not be had: not downloadable here, not in the cache, or damaged."""


class WeightsError(VidtokError, RuntimeError):
    """Auxiliary pretrained weights (LPIPS' VGG16, FVD's I3D) could not be found, downloaded or verified."""


class VideoError(VidtokError, ValueError):
    """A video file is missing, unreadable, or has no video stream."""


class ShortVideoError(VideoError):
    """A video holds fewer frames than one clip needs."""


class TokenFileError(VidtokError, ValueError):
    """A token file is unreadable, not a vidtok token file, or belongs to another tokenizer."""


class DataSourceError(VidtokError, ValueError):
    """A data source cannot be listed at all (missing CSV column, empty folder, no shards)."""


class DamagedShardError(VidtokError, OSError):
    """A tar stream that ended at a damaged header with data still after it."""


class DataError(VidtokError, RuntimeError):
    """Too many inputs in a row could not be read: the data source itself is broken."""


class ShardWriterError(VidtokError, ValueError):
    """The output pattern or an existing manifest does not fit this run."""


class ExportError(VidtokError, ValueError):
    """The tokenizer has no faithful AutoencoderVidTok counterpart (and the export was not forced)."""


class LaunchError(VidtokError, RuntimeError):
    """The processes were launched in a way Accelerate did not set up as asked."""


class TrainingError(VidtokError, RuntimeError):
    """The run cannot start or continue (e.g. too many non-finite losses in a row; a checkpoint was saved then)."""


def report(prog: str, err: VidtokError) -> int:
    """Print ``err`` as the one line ``<prog>: error: <message>`` on stderr; returns [`EXIT_USER_ERROR`][]."""
    message = " ".join(str(err).split("\n")) or type(err).__name__
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    return EXIT_USER_ERROR
