"""Image input and output: any Pillow image to a canonical 8-bit array, and back.

What the codec does with each kind of input (the decoder restores size and mode from the header):

| input                         | coded as                  | decoded as                      |
|-------------------------------|---------------------------|---------------------------------|
| RGB (8-bit)                   | RGB                       | RGB                             |
| L, 1 (grayscale, bilevel)     | RGB with R = G = B        | L (8-bit grayscale)             |
| I;16 / I (16-bit, 32-bit)     | top 8 bits, as L          | L (8-bit): depth is reduced     |
| F (float)                     | scaled by its range, as L | L (8-bit)                       |
| RGB 16-bit PNG                | Pillow's 8-bit RGB        | RGB                             |
| P (palette)                   | its RGB (or RGBA) colours | RGB (or RGBA)                   |
| CMYK, YCbCr, LAB, HSV         | converted to RGB          | RGB                             |
| RGBA, LA, PA, P+transparency  | colour lossy, alpha lossless (zlib) | RGBA or LA             |

EXIF orientation is applied before coding, so the decoded image is upright (the kept EXIF says
orientation 1).  Float images (TIFF mode F, float arrays) are scaled by their range: values within
0 … 1 are taken as 0 … 1, else within 0 … 255 or 0 … 65535 as that, else the image's own
minimum … maximum maps to 0 … 255 (NaN as 0).  Animated or multi-frame inputs (GIF, WebP, APNG,
multi-page TIFF) are refused: imgcodec codes still images.

Metadata (``metadata="all" | "icc" | "none"``, default ``"all"``): the ICC profile, EXIF and XMP
are kept with the picture and attached to the decoded image.  An ICC profile of another colour
space than the coded one (a CMYK profile, an RGB profile on a grey image) is applied instead:
the pixels are converted to sRGB.  ``to_srgb=True`` converts any tagged image to sRGB and keeps
no profile.

The encoder's inputs: a path, a ``PIL.Image``, a numpy array ((H, W), (H, W, 1), (H, W, 3) or
(H, W, 4); any integer, bool or float dtype), the bytes of an image file, or a binary file object.
"""

from __future__ import annotations

import io
import os
import warnings
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from struct import error as struct_error
from types import MappingProxyType
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..atomic import describe, write_atomic
from ..errors import BitstreamError, CodecError, InputError, OutputError
from ..format import bitstream

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".ppm", ".pgm", ".gif"})
OUTPUT_FORMATS = MappingProxyType({".png": "PNG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"})

# Refuse decompression bombs: an input of more pixels than this, or than the application's
# ``Image.MAX_IMAGE_PIXELS`` where that is lower, is an error (checked before its pixels are read;
# Pillow's own setting is left as the application has it).
MAX_INPUT_PIXELS = 64 * 1024 * 1024
MAX_SIDE = 1 << 16  # the file format's limit on each side (bitstream.MAX_SIDE)
METADATA = ("all", "icc", "none")
MAX_METADATA_BYTES = 1 << 24  # each of ICC, EXIF, XMP


@dataclass
class CanonicalImage:
    """The picture as the codec sees it: (H, W, 3) uint8 RGB, optional (H, W) uint8 alpha."""

    rgb: np.ndarray
    alpha: np.ndarray | None
    gray: bool  # restore as L / LA
    icc: bytes | None = None  # ICC profile of the pixels (None: sRGB by convention)
    exif: bytes | None = None
    xmp: bytes | None = None

    @property
    def metadata(self) -> dict[str, bytes]:
        """The metadata present, in the file format's order: icc, exif, xmp."""
        return {k: v for k, v in (("icc", self.icc), ("exif", self.exif), ("xmp", self.xmp)) if v}

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


def _describe_source(source) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else f"<{type(source).__name__}>"


def _too_many_pixels(name: str) -> str:
    limit = min(MAX_INPUT_PIXELS, Image.MAX_IMAGE_PIXELS or MAX_INPUT_PIXELS)
    return f"{name} has more than {limit} pixels (decompression bomb guard)"


def _open_pillow(fp, name: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's warnings about odd but readable files
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fp)
            if img.width * img.height > MAX_INPUT_PIXELS:
                raise InputError(_too_many_pixels(name))
            frames = getattr(img, "n_frames", 1)
            if frames > 1:
                raise InputError(f"{name} is animated or has several frames ({frames}): imgcodec codes still "
                                 "images only (extract one frame first)")
            img.load()
    except CodecError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{name} is not an image Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(_too_many_pixels(name)) from None
    except PermissionError:
        raise InputError(f"cannot read {name}: permission denied") from None
    except MemoryError:
        raise InputError(f"{name} is too large to read into memory") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct_error) as exc:
        raise InputError(f"{name} is truncated or corrupt ({exc})") from None
    return img


def open_input(path) -> BinaryIO:
    """An input file open for reading (binary, seekable: a pipe's bytes are read into memory),
    with a specific ``InputError`` for each way that fails."""
    path = Path(path)
    try:
        f = open(path, "rb")
        if not f.seekable():
            with f:
                return io.BytesIO(f.read())
        return f
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a folder, not a file") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {describe(exc)}") from None


def read_input_bytes(path) -> bytes:
    """The bytes of an input file, with a specific ``InputError`` for each way that fails."""
    with open_input(path) as f:
        try:
            return f.read()
        except OSError as exc:
            raise InputError(f"cannot read {path}: {describe(exc)}") from None


def open_image(source) -> Image.Image:
    """Open any encoder input (see the module's docstring), apply EXIF orientation, fully load it."""
    if isinstance(source, Image.Image):
        img = source
    elif isinstance(source, np.ndarray):
        img = array_to_image(source)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise InputError("the input is empty")
        img = _open_pillow(io.BytesIO(bytes(source)), "the input")
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise InputError(f"{path}: no such file")
        if path.is_dir():
            raise InputError(f"{path} is a folder, not an image")
        try:
            fp = open(path, "rb")
        except PermissionError:
            raise InputError(f"cannot read {path}: permission denied") from None
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
        with fp:
            if os.fstat(fp.fileno()).st_size == 0:
                raise InputError(f"{path} is empty")
            img = _open_pillow(fp, str(path))
    elif hasattr(source, "read"):
        try:
            data = source.read()
        except OSError as exc:
            raise InputError(f"cannot read the input file object: {exc.strerror or exc}") from None
        if not isinstance(data, (bytes, bytearray)):
            raise InputError(f"the input file object gave {type(data).__name__}, not bytes (open it in binary mode)")
        return open_image(bytes(data))
    else:
        raise InputError(f"cannot encode a {type(source).__name__}: give a path, a PIL image, a numpy array, "
                         "the bytes of an image file or a binary file object")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block must not stop coding: keep the stored orientation
        return img


def scale_to_8bit(arr: np.ndarray, sixteen_bit: bool = False) -> np.ndarray:
    """uint8 of an integer, bool or float array: see the module's docstring for the ranges."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(f"cannot encode an array of dtype {arr.dtype}")
    a = arr.astype(np.float64)
    with np.errstate(all="ignore"):
        a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if sixteen_bit:
            scale, offset = 1 / 257, 0.0
        elif lo >= 0 and hi <= 1 and np.issubdtype(arr.dtype, np.floating):
            scale, offset = 255.0, 0.0
        elif lo >= 0 and hi <= 255:
            scale, offset = 1.0, 0.0
        elif lo >= 0 and hi <= 65535:
            scale, offset = 1 / 257, 0.0
        else:
            scale, offset = (255.0 / (hi - lo) if hi > lo else 0.0), lo
        return np.clip(np.rint((a - offset) * scale), 0, 255).astype(np.uint8)


def array_to_image(arr: np.ndarray) -> Image.Image:
    """A ``PIL.Image`` of an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array (L, RGB, RGBA)."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise InputError(f"cannot encode an array of shape {arr.shape}: give (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InputError("image has no pixels")
    check_size(arr.shape[1], arr.shape[0])
    a = np.ascontiguousarray(scale_to_8bit(arr))
    return Image.fromarray(a, "L" if a.ndim == 2 else ("RGB" if a.shape[2] == 3 else "RGBA"))


def check_size(width: int, height: int) -> None:
    if width > MAX_SIDE or height > MAX_SIDE:
        raise InputError(f"image of {width}x{height} pixels: imgcodec files hold at most {MAX_SIDE} pixels a side")
    if width * height > MAX_INPUT_PIXELS:
        raise InputError(f"image of {width}x{height} has more than {MAX_INPUT_PIXELS} pixels")


def canonicalize(img: Image.Image, metadata: str = "all", to_srgb: bool = False) -> CanonicalImage:
    """The codec's view of ``img``; ``metadata``, ``to_srgb``: see the module's docstring."""
    if metadata not in METADATA:
        raise InputError(f"metadata must be one of {', '.join(METADATA)}, not {metadata!r}")
    check_size(*img.size)
    info = dict(img.info)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        img, icc = _colour_managed(img, info.get("icc_profile") or None, to_srgb or metadata == "none")
        c = _canonical_pixels(img)
    if metadata == "none":
        return c
    c = replace(c, icc=icc)
    if metadata == "all":
        c = replace(c, exif=_exif_bytes(img, info), xmp=_xmp_bytes(info))
    for name, value in c.metadata.items():
        if len(value) > MAX_METADATA_BYTES:
            raise InputError(f"the image's {name.upper()} block is larger than {MAX_METADATA_BYTES} bytes")
    return c


def _profile_space(icc: bytes) -> str | None:
    """The colour space of an ICC profile (header bytes 16–19: 'RGB ', 'GRAY', 'CMYK' …)."""
    return icc[16:20].decode("ascii", "replace").strip() if len(icc) >= 128 else None


def _colour_managed(img: Image.Image, icc: bytes | None, to_srgb: bool) -> tuple[Image.Image, bytes | None]:
    """``(img, profile to keep)``: the profile stays with pixels of its own colour space; otherwise
    (or with ``to_srgb``) the pixels are converted to sRGB with it and no profile is kept."""
    if icc is None:
        return img, None
    gray = img.mode in ("L", "LA", "1", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
    fits = _profile_space(icc) == ("GRAY" if gray else "RGB") and img.mode not in ("CMYK", "YCbCr", "LAB", "HSV")
    if fits and not to_srgb:
        return img, icc
    if gray:
        return img, None  # a grey profile's tone curve has no one-channel sRGB counterpart: dropped
    try:
        # deferred: littlecms: only a colour-managed image needs it
        from PIL import ImageCms

        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        alpha = img.getchannel("A") if "A" in img.getbands() else None
        base = img if img.mode in ("RGB", "CMYK", "LAB") else img.convert("RGB")
        converted = ImageCms.profileToProfile(base, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
        if alpha is not None:
            converted.putalpha(alpha)
        return converted, None
    except Exception:  # an unreadable profile: the pixels as they are, untagged
        return img, None


def _exif_bytes(img: Image.Image, info: dict) -> bytes | None:
    exif = info.get("exif")
    if not exif:
        return None
    try:
        e = img.getexif()
        if e.get(0x0112, 1) != 1:  # the orientation was applied to the pixels
            e[0x0112] = 1
            exif = e.tobytes()
    except Exception:
        pass
    return bytes(exif)


def _xmp_bytes(info: dict) -> bytes | None:
    xmp = info.get("xmp") or info.get("XML:com.adobe.xmp")
    if not xmp:
        return None
    return xmp.encode("utf-8") if isinstance(xmp, str) else bytes(xmp)


def _canonical_pixels(img: Image.Image) -> CanonicalImage:
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
    if mode == "F":
        lum = scale_to_8bit(np.asarray(img))
    elif mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
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


def read_image(source, metadata: str = "all", to_srgb: bool = False) -> CanonicalImage:
    """Any encoder input (or a ``CanonicalImage``, returned as it is) as the codec sees it."""
    if isinstance(source, CanonicalImage):
        return source
    return canonicalize(open_image(source), metadata, to_srgb)


def load_rgb_array(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file (for training and evaluation)."""
    return read_image(path).rgb


def to_pil(rgb: np.ndarray, alpha: np.ndarray | None, gray: bool, metadata: dict | None = None) -> Image.Image:
    """The decoded image; ``metadata`` ({"icc", "exif", "xmp"} → bytes) goes into ``img.info``
    as Pillow names it (``icc_profile``, ``exif``, ``xmp``), so ``save`` writes it where it can."""
    if gray:
        img = Image.fromarray(rgb[:, :, 0].copy(), "L")
    else:
        img = Image.fromarray(rgb, "RGB")
    if alpha is not None:
        img.putalpha(Image.fromarray(alpha, "L"))
    for key, value in (metadata or {}).items():
        img.info[{"icc": "icc_profile"}.get(key, key)] = value
    return img


def output_format(path: Path) -> str:
    fmt = OUTPUT_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise OutputError(
            f"cannot tell the output format of {path} (use one of: {', '.join(sorted(OUTPUT_FORMATS))})"
        )
    return fmt


# What each output format can carry of the decoded image's metadata (Pillow's save arguments).
_SAVE_METADATA = MappingProxyType({"PNG": ("icc_profile", "exif"), "WEBP": ("icc_profile", "exif", "xmp"),
                                   "TIFF": ("icc_profile", "exif"), "BMP": ()})


def _png_limit() -> int:
    """The largest compressed text or profile chunk Pillow reads back from a PNG."""
    # deferred: Pillow's PNG plugin: only a PNG output with metadata needs it
    from PIL import PngImagePlugin

    return PngImagePlugin.MAX_TEXT_CHUNK


def image_bytes(img: Image.Image, path: Path | None = None, fmt: str | None = None,
                notes: list[str] | None = None) -> bytes:
    """``img`` in the file format named by the extension of ``path`` (or ``fmt``: PNG, WEBP, TIFF,
    BMP; WebP lossless), with the ICC profile, EXIF and XMP of ``img.info`` where the format holds
    them, so that Pillow (and ``imgcodec encode``) reads the file back: in a PNG, an XMP larger
    than Pillow inflates (``PngImagePlugin.MAX_TEXT_CHUNK``, 1 MiB) is stored uncompressed, and an
    ICC profile that large (a PNG must compress it) is refused (``OutputError``: WebP and TIFF hold
    it). A malformed EXIF block, which a TIFF cannot hold (it parses EXIF into its own tags), is left
    out of a TIFF; what was left out is said in ``notes``, where given."""
    fmt = fmt or output_format(path)
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    for key in _SAVE_METADATA.get(fmt, ()):
        if img.info.get(key):
            kwargs[key] = img.info[key]
    if fmt == "PNG" and len(kwargs.get("icc_profile", b"")) > _png_limit():
        raise OutputError(f"{path or 'the output'}: the image's ICC profile of {len(kwargs['icc_profile'])} bytes "
                          f"is larger than a PNG that Pillow reads holds ({_png_limit()}): write .tiff or .webp")
    if fmt == "PNG" and img.info.get("xmp"):
        # deferred: Pillow's PNG text chunks: only a PNG output with metadata needs them
        from PIL import PngImagePlugin

        chunks = PngImagePlugin.PngInfo()
        xmp = img.info["xmp"].decode("utf-8", "replace")
        chunks.add_itxt("XML:com.adobe.xmp", xmp, zip=len(xmp.encode("utf-8")) <= _png_limit())
        kwargs["pnginfo"] = chunks
    try:
        return _saved(img, fmt, kwargs)
    except (SyntaxError, ValueError, KeyError, TypeError, struct_error) as exc:
        if "exif" not in kwargs:
            raise OutputError(f"cannot write {path or 'the output'} as {fmt}: {exc}") from None
        del kwargs["exif"]  # a malformed EXIF block: TIFF cannot hold it
        if notes is not None:
            notes.append(f"the image's EXIF block is malformed ({exc}) and a {fmt} cannot hold it: left out")
        return _saved(img, fmt, kwargs)


def _saved(img: Image.Image, fmt: str, kwargs: dict) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def save_image(img: Image.Image, path: Path, force: bool = False) -> None:
    """Write ``img`` atomically in the format named by the extension."""
    data = image_bytes(img, path)
    write_atomic(Path(path), lambda f: f.write(data), force=force)


def file_bytes(source, max_pixels: int | None = None) -> bytes:
    """The bytes of an imgcodec file given as bytes, a path (``str`` or ``Path``) or a binary file
    object.  A path or a seekable file object is read as ``Image.open`` reads it
    (``bitstream.read_bytes``): its header first, checked against the file's length (and against
    ``max_pixels``, where given), then its payload; a lying header costs no more memory than itself.
    A file object is read from its position."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        with open_input(source) as f:
            return _read_file(f, source, max_pixels)
    if hasattr(source, "read"):
        return _read_file(source, _describe_source(source), max_pixels)
    raise InputError(f"cannot decode a {type(source).__name__}: give bytes, a path or a binary file object")


def _read_file(f, name, max_pixels: int | None) -> bytes:
    if isinstance(f, io.TextIOBase):
        raise InputError("the file object gives str, not bytes (open it in binary mode)")
    seekable = getattr(f, "seekable", None)
    try:
        data = bitstream.read_bytes(f, max_pixels) if seekable is not None and seekable() else f.read()
    except OSError as exc:
        raise InputError(f"cannot read {name}: {describe(exc)}") from None
    if not isinstance(data, (bytes, bytearray)):
        raise InputError(f"the file object gave {type(data).__name__}, not bytes (open it in binary mode)")
    return bytes(data)


def pack_alpha(alpha: np.ndarray) -> bytes:
    """The payload part of an alpha plane: its 8-bit values, zlib-compressed (docs/bitstream.md)."""
    return zlib.compress(alpha.tobytes(), 9)


def unpack_alpha(part: bytes, height: int, width: int) -> np.ndarray:
    """The (height, width) uint8 alpha plane of a payload part, inflated no further than its size."""
    try:
        raw = zlib.decompressobj().decompress(part, width * height + 1)
    except zlib.error:
        raise BitstreamError("corrupt alpha plane") from None
    if len(raw) != width * height:
        raise BitstreamError("corrupt alpha plane")
    return np.frombuffer(raw, dtype=np.uint8).reshape(height, width)
