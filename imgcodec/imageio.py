"""Image input and output: any Pillow image to a canonical 8-bit array, and back.

What the codec does with each kind of input (the decoder restores size and mode from the header):

| input                         | coded as                  | decoded as                      |
|-------------------------------|---------------------------|---------------------------------|
| RGB (8-bit)                   | RGB                       | RGB                             |
| L, 1 (grayscale, bilevel)     | RGB with R = G = B        | L (8-bit grayscale)             |
| I;16 / I / F (16-bit, 32-bit) | top 8 bits, as L          | L (8-bit): depth is reduced     |
| RGB 16-bit PNG                | Pillow's 8-bit RGB        | RGB                             |
| P (palette)                   | its RGB (or RGBA) colours | RGB (or RGBA)                   |
| CMYK, YCbCr, LAB, HSV         | converted to RGB          | RGB                             |
| RGBA, LA, PA, P+transparency  | colour lossy, alpha lossless (zlib) | RGBA or LA             |

EXIF orientation is applied before coding, so the decoded image is upright.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .atomic import write_atomic
from .errors import InputError, OutputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".ppm", ".pgm", ".gif"}
OUTPUT_FORMATS = {".png": "PNG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}

# Refuse decompression bombs: more pixels than this is an error, not a warning.
MAX_INPUT_PIXELS = 64 * 1024 * 1024
Image.MAX_IMAGE_PIXELS = MAX_INPUT_PIXELS


@dataclass
class CanonicalImage:
    """The picture as the codec sees it: (H, W, 3) uint8 RGB, optional (H, W) uint8 alpha."""

    rgb: np.ndarray
    alpha: np.ndarray | None
    gray: bool  # restore as L / LA

    @property
    def mode(self) -> str:
        return ("L" if self.gray else "RGB") + ("A" if self.alpha is not None else "")

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.shape[1], self.rgb.shape[0]


def find_images(folder: Path) -> list[Path]:
    """Every image file under ``folder``, recursively, in a stable order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def open_image(source) -> Image.Image:
    """Open a path (or take a PIL image), apply EXIF orientation, fully load it."""
    if isinstance(source, Image.Image):
        img = source
    else:
        path = Path(source)
        if not path.exists():
            raise InputError(f"{path}: no such file")
        if path.is_dir():
            raise InputError(f"{path} is a folder, not an image")
        if path.stat().st_size == 0:
            raise InputError(f"{path} is empty")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(path)
                img.load()
        except UnidentifiedImageError:
            raise InputError(f"{path} is not an image Pillow can read") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InputError(f"{path} has more than {MAX_INPUT_PIXELS} pixels (decompression bomb guard)") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise InputError(f"{path} is truncated or corrupt ({exc})") from None
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block must not stop coding: keep the stored orientation
        return img


def canonicalize(img: Image.Image) -> CanonicalImage:
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode == "PA":
        img, mode = img.convert("RGBA"), "RGBA"
    alpha = None
    if mode in ("RGBA", "LA", "RGBa", "La"):
        if mode in ("RGBa", "La"):
            img = img.convert(mode.upper())
            mode = img.mode
        alpha = np.asarray(img.getchannel("A"), dtype=np.uint8).copy()
    gray = mode in ("L", "LA", "1", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(img).astype(np.float64)
        if mode.startswith("I;16") or (mode == "I" and arr.max(initial=0) > 255):
            arr = arr / 257.0  # 16-bit range onto 8 bits
        lum = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    elif gray:
        lum = np.asarray(img.convert("L"), dtype=np.uint8)
    else:
        lum = None
    if lum is not None:
        rgb = np.repeat(lum[:, :, None], 3, axis=2)
    else:
        rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise InputError("image has no pixels")
    return CanonicalImage(np.ascontiguousarray(rgb), alpha, gray)


def read_image(source) -> CanonicalImage:
    return canonicalize(open_image(source))


def load_rgb_array(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file (for training and evaluation)."""
    return read_image(path).rgb


def to_pil(rgb: np.ndarray, alpha: np.ndarray | None, gray: bool) -> Image.Image:
    if gray:
        img = Image.fromarray(rgb[:, :, 0].copy(), "L")
    else:
        img = Image.fromarray(rgb, "RGB")
    if alpha is not None:
        img.putalpha(Image.fromarray(alpha, "L"))
    return img


def output_format(path: Path) -> str:
    fmt = OUTPUT_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise OutputError(
            f"cannot tell the output format of {path} (use one of: {', '.join(sorted(OUTPUT_FORMATS))})"
        )
    return fmt


def image_bytes(img: Image.Image, path: Path) -> bytes:
    """``img`` in the file format named by the extension of ``path`` (WebP lossless)."""
    fmt = output_format(path)
    buf = io.BytesIO()
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def save_image(img: Image.Image, path: Path, force: bool = False) -> None:
    """Write ``img`` atomically in the format named by the extension."""
    data = image_bytes(img, path)
    write_atomic(Path(path), lambda f: f.write(data), force=force)
