"""The file path of encoding and decoding, whichever runtime codes: read and check the input, check
the output, code, write the output atomically (never over an input, never over an existing file
without ``force``: ``atomic``).

The coding itself is a function the caller gives (``codec.api``'s for the torch runtime,
``light.dispatch``'s for the runtime chosen at run time), so this module imports neither torch nor
ONNX Runtime: every input error is found before either loads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from PIL import Image

from ..atomic import check_writable, write_bytes_atomic
from ..errors import CodecError
from ..format import bitstream
from ..models.store import Store, default_store
from .imageio import CanonicalImage, file_bytes, image_bytes, output_format, read_image


def _files(src) -> list:
    """The input files among ``src`` (a path, or bytes that are no file)."""
    return [src] if isinstance(src, (str, os.PathLike)) else []


def encode_file(src, dst: Path | None, encode: Callable[[CanonicalImage], bytes], force: bool = False,
                metadata: str = "all", to_srgb: bool = False) -> bytes:
    """The imgcodec file of the image ``src`` (a path, or an image file's bytes) coded by
    ``encode``, written to ``dst`` (``None``: written nowhere, the caller takes the bytes); the
    image is read and the output checked before ``encode`` runs.  ``metadata``, ``to_srgb``: see
    ``api.encode``."""
    img = read_image(src, metadata, to_srgb)
    if dst is not None:
        check_writable(Path(dst), force, inputs=_files(src))
    data = encode(img)
    if dst is not None:
        write_bytes_atomic(Path(dst), data, force, inputs=_files(src))
    return data


def decode_file(src, dst: Path | None, decode: Callable[[bytes], Image.Image], force: bool = False,
                max_pixels: int | None = bitstream.DEFAULT_MAX_PIXELS, fmt: str | None = None,
                notes: list[str] | None = None, store: Store | None = None) -> tuple[Image.Image, bytes]:
    """``(image, image file bytes)`` of the imgcodec file ``src`` (a path, or the file's bytes)
    decoded by ``decode``, written to ``dst`` (``None``: written nowhere).

    Before ``decode`` runs: the output format (``fmt``, else ``dst``'s extension), the file's
    header (a path's payload is read only once the header and the file's length agree), that
    ``store`` (default: ``default_store()``) has the model the file names, and the output.
    ``notes``: told what the output format could not keep (``imageio.image_bytes``)."""
    image_format = fmt.upper() if fmt else output_format(Path(dst))
    data = file_bytes(src, max_pixels)
    header = bitstream.unpack(data, max_pixels=max_pixels).header
    try:
        (store or default_store()).load_config(header.model)
    except CodecError as exc:
        raise type(exc)(f"this file needs model {header.model!r}: {exc}") from None
    if dst is not None:
        check_writable(Path(dst), force, inputs=_files(src))
    img = decode(data)
    out = image_bytes(img, fmt=image_format, notes=notes)
    if dst is not None:
        write_bytes_atomic(Path(dst), out, force, inputs=_files(src))
    return img, out
