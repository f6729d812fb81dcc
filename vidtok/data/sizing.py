"""Which frame size each video becomes, decided from its own size: one size for every video (``crop``), the video's
aspect ratio kept (``aspect``), or the nearest of a list of sizes (``buckets``), the ways generative models' data
pipelines prepare mixed-size videos. Every mode then resizes to cover the chosen size and centre-crops
([`vidtok.io.video.resize_crop`][]), so only the choice of size lives here.

sizing = FrameSizing.buckets(["256x256", "256x448", "448x256"], multiple=8)
sizing.target(720, 1280)   # (256, 448): the bucket nearest to 16:9
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

from ..errors import ConfigError

#: The ways a size is chosen (the ``resize`` key of ``encode.py``).
RESIZE_MODES = ("crop", "aspect", "buckets")


def parse_size(value: Union[str, Sequence[int]], what: str = "a bucket") -> tuple[int, int]:
    """``"256x448"`` or ``[256, 448]`` -> ``(256, 448)`` (height, width), both positive."""
    try:
        parts = value.lower().split("x") if isinstance(value, str) else list(value)
        height, width = (int(p) for p in parts)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be HEIGHTxWIDTH (e.g. 256x448) or [height, width], got {value!r}") from None
    if height < 1 or width < 1:
        raise ConfigError(f"{what} must have positive sides, got {value!r}")
    return height, width


@dataclass(frozen=True)
class FrameSizing:
    """How a video of ``height`` x ``width`` pixels is sized ([`target`][vidtok.data.sizing.FrameSizing.target]).

    ``crop``: ``size`` for every video. ``aspect``: the shorter side becomes ``short_side`` and the longer side
    follows the video's aspect ratio, rounded down to a multiple of ``multiple`` (the model's spatial factor; the
    rest is cropped). ``buckets``: the size of ``buckets`` whose aspect ratio is nearest to the video's (by the
    ratio of the two ratios; the first listed on a tie).
    """

    mode: str = "crop"
    size: tuple[int, int] = (256, 256)
    short_side: Optional[int] = None
    multiple: int = 1
    buckets: tuple[tuple[int, int], ...] = ()

    @classmethod
    def buckets_of(cls, sizes: Sequence[Any], multiple: int = 1) -> FrameSizing:
        """Buckets from ``"HxW"`` strings or ``[h, w]`` pairs."""
        return cls("buckets", buckets=tuple(parse_size(s) for s in sizes), multiple=multiple).checked()

    def checked(self) -> FrameSizing:
        """This sizing, or a ConfigError naming what does not hold (every size a multiple of ``multiple``)."""
        if self.mode not in RESIZE_MODES:
            raise ConfigError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {self.mode!r}")
        m = self.multiple
        if self.mode == "aspect" and (not self.short_side or self.short_side < 1 or self.short_side % m):
            raise ConfigError(f"resize=aspect needs short_side, a positive multiple of {m}; got {self.short_side}")
        if self.mode == "buckets":
            if not self.buckets:
                raise ConfigError("resize=buckets needs a list of sizes: buckets=[256x256,256x448,448x256]")
            bad = [f"{h}x{w}" for h, w in self.buckets if h % m or w % m]
            if bad:
                raise ConfigError(f"buckets must be multiples of {m} (the model's spatial factor); got {bad}")
        return self

    def target(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width) a video of ``height`` x ``width`` is resized and cropped to."""
        if self.mode == "crop":
            return self.size
        if self.mode == "aspect":
            short, m = self.short_side, self.multiple
            if height <= width:  # torchvision's rounding of the long side, as the resize itself does
                return short, max(short, int(short * width / height) // m * m)
            return max(short, int(short * height / width) // m * m), short
        ratio = math.log(width / height)
        return min(self.buckets, key=lambda size: abs(math.log(size[1] / size[0]) - ratio))
