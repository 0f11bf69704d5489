"""Encode and decode: image ↔ model ↔ bitstream.

The path of one encode: read and canonicalize the image (``codec.imageio``), resolve model + quality
to verified weights and a normalized quality (``models.store.Store.load_shipped``), pad to the model's
stride and analyse in tiles (``codec.tiling``), entropy-code through the model contract
(``models.base.CodecModel``: ``coded_latents``, ``compress_coded``), pack header + parts + CRC
(``format.bitstream``).  Decoding starts from the header, which alone names the model, the weights,
the size and the colour mode to restore, and runs ``decompress_latents`` and the tiled synthesis.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import BitstreamError, CodecError, ModelError
from ..format import bitstream
from ..models.base import RatePoint
from ..models.store import DEFAULT_MODEL, LoadedModel, Store, default_store
from . import files, ratecontrol, tiling
from .imageio import CanonicalImage, file_bytes, pack_alpha, read_image, to_pil, unpack_alpha
from .refine import refine_latents
from .tensors import padded_size

__all__ = ["DEFAULT_MODEL", "code_array", "compress_latents", "decode", "decompress_latents", "encode",
           "encode_canonical", "encode_to_target"]


def rate_point(model, quality=None) -> RatePoint:
    """``model.rate_point(quality)`` for coding, without gradients: the rate point of ``quality``
    (``None``: the config's default; a ``RatePoint`` is taken as it is)."""
    with torch.no_grad():
        return model.rate_point(quality)


def compress_latents(model, rgb: np.ndarray, device: str = "cpu", quality=None, y=None, refine: int = 0) -> list[bytes]:
    """The latent payload parts of an (H, W, 3) uint8 image at ``quality`` (``None``: the config's
    default; or a ``RatePoint`` of ``model``), resolved once here.

    ``y``: the analysis ``tiling.analysis(model, rgb)``, if already computed (rate control analyses
    once for every quality of the same weights). ``refine``: steps of encoder-side
    refinement of the latents (``refine.py``; 0: none).
    """
    point = rate_point(model, quality)
    if refine:
        latents = refine_latents(model, rgb, point, refine, device=device, y=y)
        with torch.inference_mode():
            return model.compress_coded(latents)
    return _compress_latents(model, rgb, device, point, y)


@torch.inference_mode()
def _compress_latents(model, rgb: np.ndarray, device: str, point: RatePoint, y) -> list[bytes]:
    if y is None:
        y = tiling.analysis(model, rgb, device)  # in overlapping tiles above a size: see tiling.py
    # compress_coded refuses latents the rANS coder cannot take (NaN, or 2**27 and above).
    return model.compress_coded(model.coded_latents(y, point))


def decompress_latents(model, parts, height: int, width: int, device: str = "cpu", quality=None) -> np.ndarray:
    """The (height, width, 3) uint8 image of the latent payload parts ``model.compress_coded`` wrote
    at ``quality`` (``None``: the config's default; or a ``RatePoint`` of ``model``)."""
    return _decompress_latents(model, parts, height, width, device, rate_point(model, quality))


@torch.inference_mode()
def _decompress_latents(model, parts, height: int, width: int, device: str, point: RatePoint) -> np.ndarray:
    ph, pw = padded_size(height, width, model.stride)
    y_hat = model.decompress_latents(parts, (ph // model.stride, pw // model.stride), point)
    return tiling.synthesis(model, y_hat, height, width, device)


def code_array(model, rgb: np.ndarray, device: str = "cpu", quality=None) -> tuple[int, np.ndarray]:
    """Round trip through the real entropy coder: (payload bytes, decoded image)."""
    point = rate_point(model, quality)
    parts = compress_latents(model, rgb, device, point)
    return sum(map(len, parts)), decompress_latents(model, parts, rgb.shape[0], rgb.shape[1], device, point)


def encode_canonical(img: CanonicalImage, loaded: LoadedModel, device: str = "cpu", y=None,
                     refine: int = 0) -> bytes:
    """The file of ``img`` coded with ``loaded`` at its quality (``Store.load_shipped`` resolved and
    normalized it); ``y``, ``refine``: see ``compress_latents``.  The model is moved to ``device``:
    ``loaded`` is the caller's."""
    config = loaded.config
    q = loaded.quality
    model = loaded.model.to(device)
    parts = compress_latents(model, img.rgb, device, q, y, refine)
    latent = len(parts)
    if img.alpha is not None:
        parts.append(pack_alpha(img.alpha))
    meta = img.metadata
    parts += [bitstream.pack_metadata(v) for v in meta.values()]
    header = bitstream.Header(
        model=config.name,
        weights=bytes.fromhex(loaded.sha256)[: bitstream.HASH_PREFIX_BYTES],
        quality=config.stored(q),  # the position on the model's ladder (docs/bitstream.md)
        width=img.size[0],
        height=img.size[1],
        mode=img.mode,
        latent_parts=latent,
        metadata=sum(1 << bitstream.METADATA.index(k) for k in meta),
    )
    return bitstream.pack(header, parts)


def encode(image, quality=None, model: str | None = None, device: str = "cpu", target_size: int | None = None,
           target_bpp: float | None = None, refine: int = 0, metadata: str = "all", to_srgb: bool = False,
           store: Store | None = None) -> bytes:
    """Compress an image to the bytes of an imgcodec file.

    ``image``: a path, a ``PIL.Image``, a numpy array, the bytes of an image file or a binary file
    object (``imageio``). ``target_size`` (bytes) or ``target_bpp``: instead of a quality, the
    highest quality whose file fits (``ratecontrol``). ``refine``: steps of encoder-side refinement
    (``refine.py``): a smaller file for the same quality, for a slower encode; the decoder is the
    same. ``metadata``: ``"all"`` (ICC profile, EXIF, XMP), ``"icc"`` or ``"none"``; ``to_srgb``:
    convert a tagged image's pixels to sRGB and keep no profile. ``store``: where the model's config
    and weights are (default: ``default_store()``).
    """
    img = read_image(image, metadata, to_srgb)  # input errors first, before any weights load
    if target_size is not None or target_bpp is not None:
        if quality is not None:
            raise ModelError("give a quality or a target size, not both")
        return encode_to_target(img, model, size=target_size, bpp=target_bpp, device=device,
                                refine=refine, store=store).data
    return encode_canonical(img, (store or default_store()).load_shipped(model, quality), device, refine=refine)


def encode_to_target(img: CanonicalImage, model: str | None = None, size: int | None = None,
                     bpp: float | None = None, device: str = "cpu", tolerance: float = ratecontrol.TOLERANCE,
                     refine: int = 0, store: Store | None = None) -> ratecontrol.Fit:
    """Encode ``img`` at the highest quality of ``model`` whose file has at most ``size`` bytes, or
    at most ``bpp`` bits per pixel of the image (``ratecontrol``).

    ``refine``: steps of encoder-side refinement for every file the search encodes (so the size
    it checks is the size it writes).  The weights of the qualities it tries are loaded once for
    the search (``Store.cached``)."""
    limit = ratecontrol.target_limit(*img.size, size=size, bpp=bpp)
    store = (store or default_store()).cached()
    grid = store.quality_grid(model)
    if not grid:
        raise CodecError(f"model {model or DEFAULT_MODEL!r} has no shipped weights (see `imgcodec models`)")
    analyses: dict[str, torch.Tensor] = {}  # g_a of each set of weights, shared by its qualities

    def encode_at(q) -> bytes:
        loaded = store.load_shipped(model, q)
        if loaded.sha256 not in analyses:
            with torch.inference_mode():
                analyses[loaded.sha256] = tiling.analysis(loaded.model.to(device), img.rgb, device)
        return encode_canonical(img, loaded, device, y=analyses[loaded.sha256], refine=refine)

    return ratecontrol.search(grid, encode_at, limit, tolerance)


def _model_for(header: bitstream.Header, loaded: LoadedModel | None, store: Store) -> tuple[LoadedModel, int | float]:
    """The weights a file needs: the shipped ones it names, or ``loaded`` if it is those weights;
    and the file's quality on the common scale (the header holds its position on the model's ladder)."""
    quality = header.quality
    if loaded is None:
        try:
            config = store.load_config(header.model)
        except ModelError as exc:
            raise ModelError(f"this file needs model {header.model!r} (weights {header.weights.hex()}): {exc}") from None
        try:
            quality = config.from_stored(header.quality)
            loaded = store.load_shipped(header.model, quality)
        except ModelError as exc:
            raise ModelError(
                f"this file needs model {header.model!r} quality {quality} "
                f"(weights {header.weights.hex()}): {exc}"
            ) from None
    if loaded.config.name != header.model or bytes.fromhex(loaded.sha256)[: bitstream.HASH_PREFIX_BYTES] != header.weights:
        raise ModelError(
            f"this file was made with other weights of {header.model!r} "
            f"(weights {header.weights.hex()}, installed {loaded.config.name} {loaded.sha256[:16]})"
        )
    return loaded, loaded.config.from_stored(header.quality)


def _out_of_memory(exc: Exception) -> bool:
    """Torch's ways of saying that an allocation failed (a ``RuntimeError``, not a ``MemoryError``)."""
    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc))


def decode(
    data,
    device: str = "cpu",
    max_pixels: int | None = bitstream.DEFAULT_MAX_PIXELS,
    loaded: LoadedModel | None = None,
    store: Store | None = None,
) -> Image.Image:
    """Decode an imgcodec file (bytes, a path or a binary file object) to a ``PIL.Image`` of the
    original size and mode, with its ICC profile, EXIF and XMP in ``img.info`` (``icc_profile``,
    ``exif``, ``xmp``) where the file has them.

    ``loaded``: decode with these weights (e.g. a fresh training result not in the manifest);
    the file must name exactly them.  ``store``: where the shipped weights are (default:
    ``default_store()``).  A path or file object is read as ``Image.open`` reads it: the header
    first, checked against the file's length and ``max_pixels``, then the payload
    (``imageio.file_bytes``).
    """
    stream = bitstream.unpack(file_bytes(data, max_pixels), max_pixels=max_pixels)
    h = stream.header
    loaded, quality = _model_for(h, loaded, store or default_store())
    k = loaded.model.latent_parts
    if h.latent_parts != k:
        raise BitstreamError(f"corrupt header: {h.latent_parts} latent parts, but model {h.model!r} writes {k}")
    try:
        rgb = decompress_latents(loaded.model.to(device), stream.parts[:k], h.height, h.width, device, quality)
    except (CodecError, MemoryError):  # out of memory is not damage: it stays a MemoryError
        raise
    except Exception as exc:  # the rANS decoder rejects a damaged payload in its own words
        if _out_of_memory(exc):
            raise MemoryError(str(exc)) from exc
        raise BitstreamError(f"corrupt payload: {exc}") from None
    alpha = unpack_alpha(stream.parts[k], h.height, h.width) if h.has_alpha else None
    return to_pil(rgb, alpha, gray=h.mode.startswith("L"), metadata=bitstream.unpack_metadata(stream))


def read_info(data: bytes) -> bitstream.Bitstream:
    return bitstream.unpack(data, max_pixels=None)


def encode_file(src: Path, dst: Path, quality=None, model=None, device="cpu", force=False, refine: int = 0,
                metadata: str = "all", to_srgb: bool = False, store: Store | None = None, **targets) -> bytes:
    """Encode the image file ``src`` into ``dst`` (``files.encode_file``: the input is read and the
    output checked before any weights load; the output is never the input file, even with ``force``).

    ``targets``: ``target_size`` or ``target_bpp`` of ``encode``; ``refine``, ``metadata``,
    ``to_srgb``, ``store``: see ``encode``."""
    return files.encode_file(
        src, dst, lambda img: encode(img, quality=quality, model=model, device=device, refine=refine, store=store,
                                     **targets),
        force, metadata, to_srgb)


def decode_file(src: Path, dst: Path, device="cpu", force=False, max_pixels=bitstream.DEFAULT_MAX_PIXELS,
                store: Store | None = None) -> Image.Image:
    """Decode the imgcodec file ``src`` into an image file ``dst`` (format from its extension,
    metadata kept where the format holds it; ``files.decode_file``); the output is never the input file."""
    img, _ = files.decode_file(src, dst, lambda data: decode(data, device=device, max_pixels=max_pixels, store=store),
                               force, max_pixels, store=store)
    return img
