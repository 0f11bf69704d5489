"""Analysis and synthesis in overlapping tiles, so that huge images code in bounded memory.

The latent is still coded once, as a whole: tiling is internal to the transforms and leaves the
bitstream unchanged.  Both transforms are stacks of 5×5 stride-2 (transposed) convolutions with
pointwise normalisations between them, so every value has a finite footprint:

* ``g_a``: latent ``j`` (one per 16 pixels) depends on pixels ``16j-30 … 16j+30``;
* ``g_s``: pixel ``p`` depends on latents ``ceil((p-30)/16) … floor((p+30)/16)``.

A tile is a block of ``tile × tile`` latents grown by ``HALO = 2`` latents (32 pixels) on every
side that is not the frame's edge.  The analysis keeps the tile's core latents, the synthesis its
core pixels, and a halo of two latents covers both footprints: each kept value is computed from
exactly the data the whole-frame transform uses, the frame's own zero padding included.  Tiled
and whole-frame coding therefore agree up to floating-point rounding (convolutions of other sizes
may sum in another order), with no seams; ``tests/test_tiling.py`` checks it and
``docs/reliability.md`` gives the measured difference.

Tiling starts automatically when the padded frame has more than ``TILE_THRESHOLD_PIXELS`` pixels.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import _light, fastpath

_light.load()  # compressai without its package __init__ (its data sets): see _light.py
from compressai.layers import GDN  # noqa: E402

STRIDE = 16  # pixels per latent of the factorized model
HALO = 2  # latents of context on each inner side of a tile (32 pixels ≥ the 30-pixel footprint)
DEFAULT_TILE = 64  # latents per tile side (1024 pixels)
TILE_THRESHOLD_PIXELS = 1 << 21  # tile frames above ~2 MP


# Layers whose output at a position depends only on the input at that position (in inference).
_POINTWISE = (nn.ReLU, nn.LeakyReLU, nn.Identity, nn.BatchNorm2d, GDN)


def is_local(model) -> bool:
    """Whether g_a and g_s are convolutions and pointwise layers only, so tiles reproduce the whole.

    A norm with spatial statistics (GroupNorm, FRN, …) makes every output depend on the whole
    frame: such a model is never tiled.
    """
    def local(m) -> bool:
        if isinstance(m, nn.Sequential):
            return all(local(c) for c in m.children())
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            return m.kernel_size == (5, 5) and m.stride == (2, 2) and m.padding == (2, 2) and m.groups == 1
        if isinstance(m, nn.BatchNorm2d):
            return not m.training
        return isinstance(m, _POINTWISE)

    return (
        getattr(model, "stride", None) == STRIDE
        and all(len(net) == 7 and local(net) for net in (model.g_a, model.g_s))
    )


def tile_size(latent_h: int, latent_w: int, tile: int | None, model=None) -> int:
    """The tile side in latents: ``tile`` if given (0 = whole frame), else by the pixel threshold."""
    whole = max(latent_h, latent_w)
    if model is not None and not is_local(model):
        return whole
    if tile is None:
        tile = DEFAULT_TILE if latent_h * latent_w * STRIDE * STRIDE > TILE_THRESHOLD_PIXELS else 0
    if tile < 0:
        raise ValueError("tile must be >= 0")
    return whole if tile == 0 else min(int(tile), whole)


def tiles(latent_h: int, latent_w: int, tile: int):
    """Yield (core rows, core cols, context rows, context cols) as latent ``slice`` objects."""
    for r0 in range(0, latent_h, tile):
        r1 = min(r0 + tile, latent_h)
        a0, a1 = max(r0 - HALO, 0), min(r1 + HALO, latent_h)
        for c0 in range(0, latent_w, tile):
            c1 = min(c0 + tile, latent_w)
            b0, b1 = max(c0 - HALO, 0), min(c1 + HALO, latent_w)
            yield slice(r0, r1), slice(c0, c1), slice(a0, a1), slice(b0, b1)


def analysis(model, rgb: np.ndarray, device: str = "cpu", tile: int | None = None) -> torch.Tensor:
    """``y = g_a(x)`` of an (H, W, 3) uint8 image padded to the stride: (1, M, ⌈H/16⌉, ⌈W/16⌉)."""
    from .codec import array_to_tensor, pad_image

    h, w, _ = rgb.shape
    lh, lw = -(-h // STRIDE), -(-w // STRIDE)
    t = tile_size(lh, lw, tile, model)
    y = None
    for rows, cols, ctx_r, ctx_c in tiles(lh, lw, t):
        # The context block in pixels, cut from the image and padded as the whole frame is.
        p0, p1 = ctx_r.start * STRIDE, ctx_r.stop * STRIDE
        q0, q1 = ctx_c.start * STRIDE, ctx_c.stop * STRIDE
        x = array_to_tensor(rgb[p0:min(p1, h), q0:min(q1, w)], device)
        x = pad_image(x, p1 - p0, q1 - q0)
        part = fastpath.run(model.g_a, x)  # channels-last on the CPU (docs/performance.md)
        if y is None:
            y = torch.empty((1, part.shape[1], lh, lw), dtype=part.dtype, device=part.device)
        y[..., rows, cols] = part[
            ..., rows.start - ctx_r.start : rows.stop - ctx_r.start, cols.start - ctx_c.start : cols.stop - ctx_c.start
        ]
    return y


def synthesis(model, y_hat: torch.Tensor, height: int, width: int, device: str = "cpu",
              tile: int | None = None) -> np.ndarray:
    """``x̂ = g_s(ŷ)`` clamped, rounded to 8 bits and cropped: (height, width, 3) uint8."""
    from .codec import tensor_to_array

    lh, lw = y_hat.shape[-2:]
    t = tile_size(lh, lw, tile, model)
    out = np.empty((height, width, 3), dtype=np.uint8)
    for rows, cols, ctx_r, ctx_c in tiles(lh, lw, t):
        x_hat = fastpath.run(model.g_s, y_hat[..., ctx_r, ctx_c].to(device)).clamp_(0, 1)
        p0, p1 = rows.start * STRIDE, min(rows.stop * STRIDE, height)
        q0, q1 = cols.start * STRIDE, min(cols.stop * STRIDE, width)
        r, c = ctx_r.start * STRIDE, ctx_c.start * STRIDE
        out[p0:p1, q0:q1] = tensor_to_array(x_hat[..., p0 - r : p1 - r, q0 - c : q1 - c])
    return out
