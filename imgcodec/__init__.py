"""imgcodec — a learned image codec (Ballé factorized prior with GDN) that writes a real bitstream.

    >>> import imgcodec
    >>> data = imgcodec.encode("photo.png", quality=4)
    >>> imgcodec.decode(data).save("photo-decoded.png")

Importing this package does not import torch; the first ``encode``/``decode`` does.
"""

from .errors import BitstreamError, CodecError, InputError, ModelError, OutputError
from . import pillow_plugin as _pillow_plugin  # noqa: F401 - Image.open/save of imgcodec files (no Pillow import yet)

__version__ = "0.1.0"

__all__ = [
    "encode",
    "decode",
    "CodecError",
    "BitstreamError",
    "InputError",
    "ModelError",
    "OutputError",
    "__version__",
]


def encode(image, quality=None, model=None, device="cpu", target_size=None, target_bpp=None, refine=0) -> bytes:
    """Compress an image (path or ``PIL.Image``) to the bytes of an imgcodec file.

    ``target_size`` (bytes) or ``target_bpp`` instead of ``quality``: the highest quality whose file fits.
    ``refine``: steps of encoder-side refinement (a smaller file for its quality, a slower encode).
    """
    from .codec import encode as _encode

    return _encode(image, quality=quality, model=model, device=device, target_size=target_size, target_bpp=target_bpp,
                   refine=refine)


def decode(data: bytes, device="cpu", **kwargs):
    """Decode the bytes of an imgcodec file to a ``PIL.Image`` (original size and mode)."""
    from .codec import decode as _decode

    return _decode(data, device=device, **kwargs)
