"""imgcodec — a learned image codec that writes a real, documented bitstream: the factorized-prior,
scale-hyperprior (with gain units for a continuous quality) and mean-scale-hyperprior models of Ballé
et al. and Minnen et al., and the mean-scale hyperprior with a checkerboard context model of He et
al., with a registry of normalization layers (GDN by default).

    >>> import imgcodec
    >>> data = imgcodec.encode("photo.png", quality=4)
    >>> imgcodec.decode(data).save("photo-decoded.png")

Importing this package does not import torch; the first ``encode``/``decode`` does where the
torch runtime serves it (``runtime=``: ``"torch"``, ``"onnx"``; by default torch where installed,
else ONNX Runtime: ``imgcodec.light.dispatch``).
"""

from .codec import pillow_plugin as _pillow_plugin  # noqa: F401 - Image.open/save of imgcodec files (no Pillow import yet)
from .errors import BitstreamError, CodecError, InputError, ModelError, OutputError

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


def encode(image, quality=None, model=None, device="cpu", target_size=None, target_bpp=None, refine=0,
           metadata="all", to_srgb=False, store=None, runtime=None) -> bytes:
    """Compress an image to the bytes of an imgcodec file.

    ``image``: a path, a ``PIL.Image``, a numpy array, the bytes of an image file or a binary file
    object; anything else raises ``InputError`` (a ``CodecError``).
    ``target_size`` (bytes) or ``target_bpp`` instead of ``quality``: the highest quality whose file fits.
    ``refine``: steps of encoder-side refinement (a smaller file for its quality, a slower encode).
    ``metadata``: what the file keeps, ``"all"`` (ICC profile, EXIF, XMP), ``"icc"`` or ``"none"``;
    ``to_srgb``: convert a colour-managed image's pixels to sRGB and keep no profile.
    ``store``: a ``models.store.Store`` to take the model from (default: this installation's, or
    ``$IMGCODEC_HOME``).  ``runtime``: ``"torch"`` or ``"onnx"`` (``imgcodec.light.dispatch``).
    """
    from .codec.imageio import read_image  # deferred: Pillow and numpy (``import imgcodec`` stays light)

    img = read_image(image, metadata, to_srgb)  # a bad input is refused before torch is imported
    # deferred: torch (or ONNX Runtime) loads here, once the input is known to be good
    from .light.dispatch import encode as _encode

    return _encode(img, quality=quality, model=model, device=device, target_size=target_size, target_bpp=target_bpp,
                   refine=refine, store=store, runtime=runtime)


def decode(data, device="cpu", **kwargs):
    """Decode an imgcodec file — its bytes, a path or a binary file object — to a ``PIL.Image``
    (original size and mode; its ICC profile, EXIF and XMP in ``img.info`` when the file has them).
    ``store=``, ``runtime=``: as for ``encode``."""
    # deferred: torch (or ONNX Runtime) loads here
    from .light.dispatch import decode as _decode

    return _decode(data, device=device, **kwargs)
