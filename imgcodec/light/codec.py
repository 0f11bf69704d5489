"""Encode and decode with the light runtime: ``codec/api.py``'s path, without torch.

The image is read, padded and analysed (in overlapping tiles above ``TILE_THRESHOLD_PIXELS``, as
``codec/tiling.py`` does), the latents are coded by the model of ``light.models``, and the header,
parts and CRC are those ``codec/api.py`` writes: one format, two runtimes.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ..atomic import check_writable, write_bytes_atomic
from ..codec import ratecontrol
from ..codec.imageio import (
    CanonicalImage,
    file_bytes,
    image_bytes,
    output_format,
    pack_alpha,
    read_image,
    read_input_bytes,
    to_pil,
    unpack_alpha,
)
from ..errors import BitstreamError, CodecError, ModelError
from ..format import bitstream
from ..models.store import DEFAULT_MODEL, Store
from .models import LightModel
from .store import LightStore, light_store

DEFAULT_TILE = 64  # as codec/tiling.py
TILE_THRESHOLD_PIXELS = 1 << 21


def load(store: Store | LightStore | None, model: str | None, quality) -> tuple[LightModel, int | float]:
    """The light model of (model, quality) and the normalized quality (``Store.load_shipped``'s
    rule), from ``store``'s loader (``light_store``): a new model, the caller's, unless the store
    is cached."""
    return light_store(store).load(model, quality)


# -- images as arrays, padding and tiles (codec/tensors.py and codec/tiling.py, in numpy)


def pad_image(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pad (N, C, h, w) at the bottom/right to (height, width): reflect, then replicate."""
    dh, dw = height - x.shape[-2], width - x.shape[-1]
    if dh == 0 and dw == 0:
        return x
    rh, rw = min(dh, x.shape[-2] - 1), min(dw, x.shape[-1] - 1)
    if rh > 0 or rw > 0:
        x = np.pad(x, ((0, 0), (0, 0), (0, max(rh, 0)), (0, max(rw, 0))), mode="reflect")
    return np.pad(x, ((0, 0), (0, 0), (0, height - x.shape[-2]), (0, width - x.shape[-1])), mode="edge")


def array_to_input(rgb: np.ndarray) -> np.ndarray:
    return (rgb.transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255))


def to_pixels(x_hat: np.ndarray, out: np.ndarray) -> None:
    """``out`` (h, w, 3) uint8 = ``x_hat`` (1, 3, h, w) clipped to [0, 1], times 255, rounded:
    ``codec/tensors.tensor_to_array``'s numbers, computed in place of ``x_hat``."""
    if not x_hat.flags.writeable:
        x_hat = x_hat.copy()
    np.clip(x_hat, 0, 1, out=x_hat)
    np.multiply(x_hat, np.float32(255), out=x_hat)
    np.rint(x_hat, out=x_hat)
    np.copyto(out, x_hat[0].transpose(1, 2, 0), casting="unsafe")


def tile_size(lh: int, lw: int, model: LightModel, tile: int | None = None) -> int:
    whole = max(lh, lw)
    if model.footprint is None:
        return whole
    if tile is None:
        tile = DEFAULT_TILE if lh * lw * model.stride**2 > TILE_THRESHOLD_PIXELS else 0
    return whole if tile == 0 else min(int(tile), whole)


def tiles(lh: int, lw: int, tile: int, halo: int):
    for r0 in range(0, lh, tile):
        r1 = min(r0 + tile, lh)
        a0, a1 = max(r0 - halo, 0), min(r1 + halo, lh)
        for c0 in range(0, lw, tile):
            c1 = min(c0 + tile, lw)
            b0, b1 = max(c0 - halo, 0), min(c1 + halo, lw)
            yield slice(r0, r1), slice(c0, c1), slice(a0, a1), slice(b0, b1)


def _halo(model: LightModel) -> int:
    return -(-(model.footprint or 0) // model.stride)


def analysis(model: LightModel, rgb: np.ndarray, tile: int | None = None) -> np.ndarray:
    """``y = g_a(x)`` of an (H, W, 3) uint8 image padded to the stride: (1, M, ⌈H/16⌉, ⌈W/16⌉)."""
    h, w, _ = rgb.shape
    s = model.stride
    lh, lw = -(-h // s), -(-w // s)
    y = None
    for rows, cols, cr, cc in tiles(lh, lw, tile_size(lh, lw, model, tile), _halo(model)):
        p0, p1, q0, q1 = cr.start * s, cr.stop * s, cc.start * s, cc.stop * s
        x = pad_image(array_to_input(rgb[p0:min(p1, h), q0:min(q1, w)]), p1 - p0, q1 - q0)
        part = model.g_a(x)
        if y is None:
            y = np.empty((1, part.shape[1], lh, lw), np.float32)
        y[..., rows, cols] = part[..., rows.start - cr.start: rows.stop - cr.start,
                                  cols.start - cc.start: cols.stop - cc.start]
    return y


def synthesis(model: LightModel, y_hat: np.ndarray, height: int, width: int, tile: int | None = None) -> np.ndarray:
    """``x̂ = g_s(ŷ)`` clamped, rounded to 8 bits and cropped: (height, width, 3) uint8."""
    s = model.stride
    lh, lw = y_hat.shape[-2:]
    out = np.empty((height, width, 3), np.uint8)
    for rows, cols, cr, cc in tiles(lh, lw, tile_size(lh, lw, model, tile), _halo(model)):
        x_hat = model.g_s(y_hat[..., cr, cc])
        p0, p1 = rows.start * s, min(rows.stop * s, height)
        q0, q1 = cols.start * s, min(cols.stop * s, width)
        r, c = cr.start * s, cc.start * s
        to_pixels(x_hat[..., p0 - r: p1 - r, q0 - c: q1 - c], out[p0:p1, q0:q1])
    return out


# -- the codec


def compress_latents(model: LightModel, rgb: np.ndarray, quality=None, y=None) -> list[bytes]:
    if y is None:
        y = analysis(model, rgb)
    return model.compress_coded(model.coded_latents(y, quality))


def latent_shape(model: LightModel, height: int, width: int) -> tuple[int, int]:
    return -(-height // model.stride), -(-width // model.stride)


def decompress_latents(model: LightModel, parts, height: int, width: int, quality=None) -> np.ndarray:
    y_hat = model.decompress_latents(parts, latent_shape(model, height, width), quality)
    return synthesis(model, y_hat, height, width)


def encode_canonical(img: CanonicalImage, model: LightModel, quality, y=None) -> bytes:
    parts = compress_latents(model, img.rgb, quality, y)
    latent = len(parts)
    if img.alpha is not None:
        parts.append(pack_alpha(img.alpha))
    meta = img.metadata
    parts += [bitstream.pack_metadata(v) for v in meta.values()]
    header = bitstream.Header(
        model=model.config.name,
        weights=bytes.fromhex(model.weights.sha256)[: bitstream.HASH_PREFIX_BYTES],
        quality=model.config.stored(quality),
        width=img.size[0],
        height=img.size[1],
        mode=img.mode,
        latent_parts=latent,
        metadata=sum(1 << bitstream.METADATA.index(k) for k in meta),
    )
    return bitstream.pack(header, parts)


def encode(image, quality=None, model: str | None = None, target_size: int | None = None,
           target_bpp: float | None = None, metadata: str = "all", to_srgb: bool = False,
           store: Store | LightStore | None = None) -> bytes:
    """``codec.api.encode`` with the light runtime (no refinement, the CPU).  ``store``: a
    ``Store`` (default: ``default_store()``) or the ``LightStore`` to load from; a plain store's
    model is built for this call alone."""
    img = read_image(image, metadata, to_srgb)
    if target_size is not None or target_bpp is not None:
        if quality is not None:
            raise ModelError("give a quality or a target size, not both")
        return encode_to_target(img, model, size=target_size, bpp=target_bpp, store=store).data
    m, q = load(store, model, quality)
    return encode_canonical(img, m, q)


def encode_to_target(img: CanonicalImage, model: str | None = None, size: int | None = None,
                     bpp: float | None = None, tolerance: float = ratecontrol.TOLERANCE,
                     store: Store | LightStore | None = None) -> ratecontrol.Fit:
    """The highest quality whose file fits (``codec.api.encode_to_target``); the search holds its
    store cached (``LightStore.cached``): each set of weights loads once."""
    limit = ratecontrol.target_limit(*img.size, size=size, bpp=bpp)
    lights = light_store(store).cached()
    grid = lights.store.quality_grid(model)
    if not grid:
        raise CodecError(f"model {model or DEFAULT_MODEL!r} has no shipped weights (see `imgcodec models`)")
    analyses: dict[str, np.ndarray] = {}

    def encode_at(q) -> bytes:
        m, q = lights.load(model, q)
        if m.weights.sha256 not in analyses:
            analyses[m.weights.sha256] = analysis(m, img.rgb)
        return encode_canonical(img, m, q, y=analyses[m.weights.sha256])

    return ratecontrol.search(grid, encode_at, limit, tolerance)


def _model_for(header: bitstream.Header, lights: LightStore) -> tuple[LightModel, int | float]:
    """The model a header names and the file's quality on the common scale (the header holds its
    position on the model's ladder)."""
    try:
        config = lights.store.load_config(header.model)
    except ModelError as exc:
        raise ModelError(f"this file needs model {header.model!r} (weights {header.weights.hex()}): {exc}") from None
    quality = header.quality
    try:
        quality = config.from_stored(header.quality)
        model, quality = lights.load(header.model, quality)
    except ModelError as exc:
        raise ModelError(f"this file needs model {header.model!r} quality {quality} "
                         f"(weights {header.weights.hex()}): {exc}") from None
    if bytes.fromhex(model.weights.sha256)[: bitstream.HASH_PREFIX_BYTES] != header.weights:
        raise ModelError(
            f"this file was made with other weights of {header.model!r} quality {quality} "
            f"(weights {header.weights.hex()}, installed {model.config.name} {model.weights.sha256[:16]})")
    return model, quality


def parse(data, max_pixels=bitstream.DEFAULT_MAX_PIXELS, store: Store | LightStore | None = None):
    """``(stream, model)`` of an imgcodec file: the header checked and the model it names loaded
    (from ``store``'s loader, ``light_store``); the stream's header carries the quality on the
    common scale."""
    stream = bitstream.unpack(file_bytes(data), max_pixels=max_pixels)
    model, quality = _model_for(stream.header, light_store(store))
    stream = replace(stream, header=replace(stream.header, quality=quality))
    h = stream.header
    if h.latent_parts != model.latent_parts:
        raise BitstreamError(f"corrupt header: {h.latent_parts} latent parts, but model {h.model!r} "
                             f"writes {model.latent_parts}")
    return stream, model


def decode(data, max_pixels: int | None = bitstream.DEFAULT_MAX_PIXELS, store: Store | LightStore | None = None):
    """``codec.api.decode`` with the light runtime: a ``PIL.Image`` of the original size and mode.
    ``store``: as ``encode``'s."""
    stream, model = parse(data, max_pixels, store)
    h = stream.header
    k = model.latent_parts
    try:
        rgb = decompress_latents(model, stream.parts[:k], h.height, h.width, h.quality)
    except (CodecError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - the rANS decoder rejects a damaged payload in its own words
        raise BitstreamError(f"corrupt payload: {exc}") from None
    alpha = unpack_alpha(stream.parts[k], h.height, h.width) if h.has_alpha else None
    return to_pil(rgb, alpha, gray=h.mode.startswith("L"), metadata=bitstream.unpack_metadata(stream))


def encode_file(src: Path, dst: Path, quality=None, model=None, force=False, metadata: str = "all",
                to_srgb: bool = False, **targets) -> bytes:
    img = read_image(src, metadata, to_srgb)
    check_writable(Path(dst), force, inputs=[src])
    data = encode(img, quality=quality, model=model, metadata=metadata, to_srgb=to_srgb, **targets)
    write_bytes_atomic(Path(dst), data, force, inputs=[src])
    return data


def decode_file(src: Path, dst: Path, force=False, max_pixels=bitstream.DEFAULT_MAX_PIXELS):
    output_format(Path(dst))
    data = read_input_bytes(src)
    check_writable(Path(dst), force, inputs=[src])
    img = decode(data, max_pixels=max_pixels)
    write_bytes_atomic(Path(dst), image_bytes(img, Path(dst)), force, inputs=[src])
    return img
