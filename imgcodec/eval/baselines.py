"""Classical codecs through Pillow, measured exactly like imgcodec (``evaluate.run``).

| name       | codec (library)                  | settings                                              | quality knob |
|------------|----------------------------------|-------------------------------------------------------|--------------|
| `jpeg`     | JPEG (libjpeg-turbo)             | 4:2:0 chroma subsampling, standard Huffman tables     | quality 1–95 |
| `jpeg444`  | JPEG (libjpeg-turbo)             | 4:4:4 (no chroma subsampling), standard Huffman tables| quality 1–95 |
| `webp`     | WebP (libwebp)                   | lossy, `method=6` (slowest, best)                     | quality 0–100|
| `avif`     | AVIF (libavif, AV1 encoder)      | `speed=6`, 4:2:0, one thread                          | quality 0–100|
| `jpeg2000` | JPEG 2000 (OpenJPEG)             | 9/7 wavelet, RGB→YCbCr (mct), `quality_mode="rates"`, raw codestream | compression ratio (24/bpp) |
| `jpegxl`   | JPEG XL (libjxl, `pillow-jxl-plugin`, optional) | `effort=7`, one thread                 | quality 0–100|

Every file is the complete file Pillow writes (headers included); decoding is Pillow's.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as pkg_version
from pathlib import Path
from typing import Sequence

import numpy as np
import PIL
from PIL import Image, features

from ..errors import CodecError, InputError
from .evaluate import dataset_info, environment, load_images, run
from .results import Results


@dataclass(frozen=True)
class Baseline:
    name: str
    description: str
    format: str  # Pillow's format name
    qualities: tuple  # default rate points
    knob: str  # what a quality value means
    options: dict = field(default_factory=dict)  # fixed save options
    feature: str | None = None  # PIL.features name that must be present
    plugin: str | None = None  # module that registers the format with Pillow
    install: str = ""

    def save_options(self, quality) -> dict:
        if self.format == "JPEG2000":
            return {**self.options, "quality_layers": [float(quality)]}
        return {**self.options, "quality": int(quality)}

    def settings(self) -> dict:
        lib = {"JPEG": "libjpeg_turbo", "WEBP": "webp", "AVIF": "avif", "JPEG2000": "jpg_2000"}.get(self.format)
        version = features.version(lib) if lib else None
        if self.plugin:
            try:
                version = pkg_version(self.install)
            except PackageNotFoundError:
                version = None
        return {
            "codec": self.name,
            "pillow_format": self.format,
            "options": self.options,
            "quality_knob": self.knob,
            "library": lib or self.install,
            "library_version": version,
            "pillow": PIL.__version__,
            "bytes": "the whole file as Pillow writes it",
        }

    def check_available(self) -> None:
        if self.plugin:
            try:
                __import__(self.plugin)
            except ImportError:
                raise CodecError(f"{self.name} needs the {self.install} package (pip install {self.install})") from None
        if self.feature and not features.check(self.feature):
            raise CodecError(f"this Pillow was built without {self.format} support ({self.name} unavailable)")

    def encode(self, rgb: np.ndarray, quality) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(rgb, "RGB").save(buf, format=self.format, **self.save_options(quality))
        return buf.getvalue()

    @staticmethod
    def decode(data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"))


BASELINES: dict[str, Baseline] = {
    b.name: b
    for b in (
        Baseline("jpeg", "JPEG 4:2:0 (libjpeg-turbo via Pillow)", "JPEG",
                 (10, 20, 30, 40, 50, 60, 70, 80, 90, 95), "quality (1-95)",
                 {"subsampling": "4:2:0", "optimize": False, "progressive": False}, "jpg"),
        Baseline("jpeg444", "JPEG 4:4:4 (libjpeg-turbo via Pillow)", "JPEG",
                 (10, 20, 30, 40, 50, 60, 70, 80, 90, 95), "quality (1-95)",
                 {"subsampling": "4:4:4", "optimize": False, "progressive": False}, "jpg"),
        Baseline("webp", "WebP lossy, method 6 (libwebp via Pillow)", "WEBP",
                 (5, 15, 30, 50, 70, 85, 95), "quality (0-100)",
                 {"method": 6, "lossless": False}, "webp"),
        Baseline("avif", "AVIF, speed 6, 4:2:0 (libavif via Pillow)", "AVIF",
                 (10, 20, 30, 40, 50, 60, 70, 80, 90), "quality (0-100)",
                 {"speed": 6, "subsampling": "4:2:0", "max_threads": 1}, "avif"),
        Baseline("jpeg2000", "JPEG 2000, 9/7 wavelet (OpenJPEG via Pillow)", "JPEG2000",
                 (192, 128, 96, 64, 48, 32, 24, 16, 12, 8), "compression ratio (about 24/bpp)",
                 {"quality_mode": "rates", "irreversible": True, "mct": 1, "no_jp2": True}, "jpg_2000"),
        Baseline("jpegxl", "JPEG XL, effort 7 (libjxl via pillow-jxl-plugin)", "JXL",
                 (10, 20, 30, 40, 50, 60, 70, 80, 90), "quality (0-100)",
                 {"effort": 7, "num_threads": 1, "lossless": False}, None, "pillow_jxl", "pillow-jxl-plugin"),
    )
}


def get(name: str) -> Baseline:
    try:
        return BASELINES[name.lower()]
    except KeyError:
        raise InputError(f"unknown codec {name!r} (known: {', '.join(BASELINES)})") from None


def parse_qualities(values: Sequence[str]) -> list | None:
    """``-q 10 -q 20,30`` → [10, 20, 30] (numbers; whole ones as int); nothing → None (the defaults)."""
    items = [v.strip() for value in values for v in str(value).split(",") if v.strip()]
    if not items:
        return None
    out = []
    for item in items:
        try:
            number = float(item)
        except ValueError:
            raise InputError(f"quality must be a number, not {item!r}") from None
        if not number > 0 or number != number:
            raise InputError(f"quality must be positive, not {item!r}")
        out.append(int(number) if number == int(number) else number)
    return sorted(set(out))


def evaluate_baseline(
    codec: str,
    data: Path,
    qualities: Sequence | None = None,
    limit: int | None = None,
    progress: bool | None = None,
) -> Results:
    """Measure a classical codec over the images of ``data`` at each quality."""

    base = get(codec)
    base.check_available()
    qualities = list(qualities) if qualities else list(base.qualities)
    images = load_images(data, limit)
    rows = run(images, qualities, base.encode, base.decode, label=base.name, progress=progress)
    return Results(
        name=base.name,
        description=base.description,
        kind="classical",
        settings=base.settings(),
        dataset=dataset_info(data, images),
        images=rows,
        environment=environment(),
    )
