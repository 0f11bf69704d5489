"""Analysis and synthesis in overlapping tiles, so that huge images code in bounded memory.

The latent is still coded once, as a whole: tiling is internal to the transforms and leaves the
bitstream unchanged.  Both transforms are stacks of 5×5 stride-2 (transposed) convolutions with
pointwise normalisations between them, so every value has a finite footprint:

* ``g_a``: latent ``j`` (one per 16 pixels) depends on pixels ``16j-30 … 16j+30``;
* ``g_s``: pixel ``p`` depends on latents ``ceil((p-30)/16) … floor((p+30)/16)``.

A tile is a block of ``tile × tile`` latents grown by a halo of ``halo_of(model)`` latents (2, i.e.
32 pixels, for the 30-pixel footprint) on every side that is not the frame's edge.  The analysis
keeps the tile's core latents, the synthesis its core pixels, and a halo of two latents covers both
footprints: each kept value is computed from exactly the data the whole-frame transform uses, the
frame's own zero padding included.  Tiled and whole-frame coding therefore agree up to
floating-point rounding (convolutions of other sizes may sum in another order), with no seams;
``tests/test_tiling.py`` checks it and ``docs/reliability.md`` gives the measured difference.

Tiling starts automatically when the padded frame has more than ``TILE_THRESHOLD_PIXELS`` pixels,
for a model whose ``footprint`` is bounded (``CodecModel.footprint``); other models run on the
whole frame.
"""

from __future__ import annotations

import numpy as np
import torch

from . import fastpath
from .tensors import array_to_tensor, pad_image, tensor_to_array

DEFAULT_TILE = 64  # latents per tile side (1024 pixels)
TILE_THRESHOLD_PIXELS = 1 << 21  # tile frames above ~2 MP


def tile_size(latent_h: int, latent_w: int, tile: int | None, model) -> int:
    """The tile side in latents: ``tile`` if given (0 = whole frame), else by the pixel threshold;
    the whole frame for a model whose transforms have no bounded footprint."""
    whole = max(latent_h, latent_w)
    footprint = model.footprint
    if footprint is None:
        return whole
    if tile is None:
        tile = DEFAULT_TILE if latent_h * latent_w * model.stride**2 > TILE_THRESHOLD_PIXELS else 0
    if tile < 0:
        raise ValueError("tile must be >= 0")
    return whole if tile == 0 else min(int(tile), whole)


def halo_of(model) -> int:
    """Latents of context on each inner side of a tile: the footprint rounded up to whole latents
    (2 latents, 32 pixels, for the 30-pixel footprint of the shipped transforms)."""
    return -(-(model.footprint or 0) // model.stride)


def tiles(latent_h: int, latent_w: int, tile: int, halo: int):
    """Yield (core rows, core cols, context rows, context cols) as latent ``slice`` objects."""
    for r0 in range(0, latent_h, tile):
        r1 = min(r0 + tile, latent_h)
        a0, a1 = max(r0 - halo, 0), min(r1 + halo, latent_h)
        for c0 in range(0, latent_w, tile):
            c1 = min(c0 + tile, latent_w)
            b0, b1 = max(c0 - halo, 0), min(c1 + halo, latent_w)
            yield slice(r0, r1), slice(c0, c1), slice(a0, a1), slice(b0, b1)


def analysis(model, rgb: np.ndarray, device: str = "cpu", tile: int | None = None) -> torch.Tensor:
    """``y = g_a(x)`` of an (H, W, 3) uint8 image padded to the stride: (1, M, ⌈H/16⌉, ⌈W/16⌉)."""
    h, w, _ = rgb.shape
    stride = model.stride
    lh, lw = -(-h // stride), -(-w // stride)
    t = tile_size(lh, lw, tile, model)
    y = None
    for rows, cols, ctx_r, ctx_c in tiles(lh, lw, t, halo_of(model)):
        # The context block in pixels, cut from the image and padded as the whole frame is.
        p0, p1 = ctx_r.start * stride, ctx_r.stop * stride
        q0, q1 = ctx_c.start * stride, ctx_c.stop * stride
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
    stride = model.stride
    lh, lw = y_hat.shape[-2:]
    t = tile_size(lh, lw, tile, model)
    out = np.empty((height, width, 3), dtype=np.uint8)
    for rows, cols, ctx_r, ctx_c in tiles(lh, lw, t, halo_of(model)):
        x_hat = fastpath.run(model.g_s, y_hat[..., ctx_r, ctx_c].to(device)).clamp_(0, 1)
        p0, p1 = rows.start * stride, min(rows.stop * stride, height)
        q0, q1 = cols.start * stride, min(cols.stop * stride, width)
        r, c = ctx_r.start * stride, ctx_c.start * stride
        out[p0:p1, q0:q1] = tensor_to_array(x_hat[..., p0 - r : p1 - r, q0 - c : q1 - c])
    return out
