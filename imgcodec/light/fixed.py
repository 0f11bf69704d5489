"""The fixed-point convolutions of ``models/hyperprior.fixed_point`` in numpy, exactly.

Numbers are integers held in float64 with ``HS_ACT_BITS`` fraction bits, weights with
``HS_WEIGHT_BITS`` (the biases both); every input is clamped so that no partial sum can reach
2**53, so each output — a sum of float64 matrix products, one per tap of the kernel — is the same
exact integer whatever the order of the additions (BLAS, threads, CPU): the same numbers as the
torch path's ``F.conv2d`` in float64 (``tests/test_light.py``).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ModelError

HS_ACT_BITS = 12  # as models/hyperprior.py (tests/test_light.py checks they agree)
HS_WEIGHT_BITS = 16
_EXACT = float(2**53)


def layers(tensors: dict, prefix: str, kinds: tuple) -> list:
    """The layers of a ``Sequential`` from its tensors, prepared (``Layer``): ``kinds`` per index,
    ``"conv"`` (stride 1, "same" padding), ``"deconv"`` (5×5, stride 2, padding 2, output padding
    1), ``"relu"``."""
    out = []
    for i, kind in enumerate(kinds):
        if kind == "relu":
            out.append(("relu", None, None))
        else:
            name = f"{prefix}.{i}" if prefix else ""
            w = tensors[f"{name}.weight" if name else "weight"]
            b = tensors[f"{name}.bias" if name else "bias"]
            out.append((kind, w, b))
    return prepared(out)


def _conv(x: np.ndarray, taps: np.ndarray, b: np.ndarray, pad: int) -> np.ndarray:
    """The stride-1 ``conv2d`` of ``x`` (C, H, W) with "same" padding ``pad``: (O, H, W).

    ``taps`` (k·k, C, O) holds the weights tap by tap.  The padded input is one (rows × columns,
    C) matrix; a tap's product is a contiguous slice of it times the tap's (C, O) weights, all
    products of one output row land at the same offsets, and the columns that wrap into the next row
    are dropped at the end.  No input is copied per tap, and every partial sum is an exact integer,
    so the order of the additions cannot change the result."""
    kk, c, o = taps.shape
    k = math.isqrt(kk)
    _, h, w = x.shape
    wp = w + 2 * pad
    xp = np.zeros((h + 2 * pad + 1, wp, c), np.float64)  # one spare row: the last tap's slice ends past the image
    xp[pad:pad + h, pad:pad + w] = x.transpose(1, 2, 0)
    flat = xp.reshape(-1, c)
    n = h * wp
    acc = np.empty((n, o), np.float64)
    part = np.empty((n, o), np.float64)
    for t in range(kk):
        i, j = divmod(t, k)
        start = i * wp + j
        np.matmul(flat[start:start + n], taps[t], out=acc if t == 0 else part)
        if t:
            acc += part
    acc += b
    return acc.reshape(h, wp, o)[:, :w].transpose(2, 0, 1)


def tap_matrices(w: np.ndarray) -> np.ndarray:
    """(O, C, k, k) weights as (k·k, C, O): one (C, O) matrix per tap, row-major over the taps."""
    o, c, kh, kw = w.shape
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(kh * kw, c, o))


# A 5×5 stride-2 transposed convolution (padding 2, output padding 1) is four 3×3 convolutions, one
# per output phase (row parity, column parity), whose outputs interleave: output 2i + a reads input
# i + d through tap PHASE_TAPS[a][d + 1] (None: no tap).
PHASE_TAPS = ((4, 2, 0), (None, 3, 1))


def phase_weights(w: np.ndarray) -> np.ndarray:
    """The (4·out, in, 3, 3) weights of the phase convolutions of a transposed convolution's
    (in, out, 5, 5) ``w``; output channel ``4c + 2a + b`` is phase (a, b) of channel ``c``."""
    cin, cout = w.shape[:2]
    out = np.zeros((cout, 2, 2, cin, 3, 3), w.dtype)
    for a in range(2):
        for b in range(2):
            for dr, kr in enumerate(PHASE_TAPS[a]):
                for dc, kc in enumerate(PHASE_TAPS[b]):
                    if kr is not None and kc is not None:
                        out[:, a, b, :, dr, dc] = w[:, :, kr, kc].T
    return out.reshape(cout * 4, cin, 3, 3)


def pixel_shuffle(x: np.ndarray) -> np.ndarray:
    """(4C, H, W) → (C, 2H, 2W), channel ``4c + 2a + b`` to the positions (2i + a, 2j + b)."""
    c4, h, w = x.shape
    return x.reshape(c4 // 4, 2, 2, h, w).transpose(0, 3, 1, 4, 2).reshape(c4 // 4, 2 * h, 2 * w)


class Layer:
    """One fixed-point layer, prepared once: the integer weights as the products take them (one
    (C, O) matrix per kernel tap), the integer bias, the kernel size and the clamp that keeps every
    partial sum exact."""

    __slots__ = ("kind", "taps", "b", "k", "limit")

    def __init__(self, kind: str, w32: np.ndarray | None, b32: np.ndarray | None):
        self.kind = kind
        if kind == "relu":
            self.taps = self.b = self.k = self.limit = None
            return
        # float16 weights (a half checkpoint) widen exactly, as torch widens them: the products below
        # must not run in float16, where 2**HS_WEIGHT_BITS itself overflows (numpy 2 keeps the array's type)
        w32 = np.asarray(w32, np.float32)
        b = np.round(b32.astype(np.float64) * 2.0 ** (HS_ACT_BITS + HS_WEIGHT_BITS))
        if kind == "deconv":  # 5×5, stride 2, padding 2, output padding 1: four 3×3 phase convolutions
            w = np.round(w32.astype(np.float64) * 2.0**HS_WEIGHT_BITS)
            reach = float(np.abs(w).sum(axis=(0, 2, 3)).max())
            taps, b, self.k = tap_matrices(phase_weights(w)), np.repeat(b, 4), 3
        else:  # the tap matrices straight from the float32 weights: one float64 array, rounded in place
            o, c, kh, kw = w32.shape
            taps = np.empty((kh * kw, c, o), np.float64)
            np.multiply(w32.transpose(2, 3, 1, 0), 2.0**HS_WEIGHT_BITS, out=taps.reshape(kh, kw, c, o))
            np.round(taps, out=taps)
            # Σ|w| into each output, tap by tap: integers far below 2**53, so the same sum in any order
            reach = float(sum(np.abs(t).sum(axis=0) for t in taps).max())
            self.k = kh
        room = _EXACT - 1 - float(np.abs(b).max())
        if not (math.isfinite(reach) and room > 0):
            raise ModelError("the hyper-synthesis weights are out of range: broken weights?")
        self.limit = math.floor(room / max(reach, 1.0))
        self.taps, self.b = taps, b


def prepared(layer_list) -> list:
    """``layer_list`` (``layers``' tuples, or ``Layer``s) as ``Layer``s."""
    return [x if isinstance(x, Layer) else Layer(*x) for x in layer_list]


def fixed_point(layer_list, x: np.ndarray) -> np.ndarray:
    """The layers on ``x`` ((C, H, W) float64 integers, ``HS_ACT_BITS`` fraction bits), exactly."""
    x = np.array(x, dtype=np.float64, copy=True)
    for layer in prepared(layer_list):
        if layer.kind == "relu":
            np.maximum(x, 0, out=x)
            continue
        np.clip(x, -layer.limit, layer.limit, out=x)
        acc = _conv(x, layer.taps, layer.b, layer.k // 2)
        if layer.kind == "deconv":
            acc = pixel_shuffle(acc)
        x = np.round(acc * 2.0**-HS_WEIGHT_BITS)
    return x


def fixed_point_at(layer_list, x: np.ndarray, where: np.ndarray, support: np.ndarray) -> np.ndarray:
    """``fixed_point(layer_list, x)[:, where]`` ((O, K), K the positions of ``where`` in row-major
    order), computing those positions only: the first layer a "same" convolution, the others 1×1
    convolutions and ReLUs (the checkerboard's context and entropy parameters).

    ``x`` is zero outside ``support`` (a boolean (H, W) mask); the taps of the first convolution
    that read only such zeros (or the padding) at every position of ``where`` are left out.  Every
    product left out is an exact zero, every sum an exact integer: the same numbers as
    ``fixed_point``."""
    layer_list = prepared(layer_list)
    first, rest = layer_list[0], layer_list[1:]
    if first.kind != "conv":
        raise ValueError("fixed_point_at: a convolution first")
    _, c, o = first.taps.shape
    kh = kw = first.k
    ph, pw = kh // 2, kw // 2
    h, w = x.shape[1:]
    xp = np.zeros((h + 2 * ph, w + 2 * pw, c), np.float64)
    xp[ph:ph + h, pw:pw + w] = np.clip(np.asarray(x, dtype=np.float64), -first.limit, first.limit).transpose(1, 2, 0)
    flat = xp.reshape(-1, c)
    sp = np.pad(np.asarray(support, bool), ((ph, ph), (pw, pw)))
    rows, cols = np.nonzero(where)
    acc = np.zeros((len(rows), o))
    at = rows * xp.shape[1] + cols  # each position's top-left tap in ``flat``
    for t in range(kh * kw):
        i, j = divmod(t, kw)
        if sp[rows + i, cols + j].any():
            acc += flat[at + (i * xp.shape[1] + j)] @ first.taps[t]
    acc += first.b
    acc *= 2.0**-HS_WEIGHT_BITS
    return pointwise(rest, np.round(acc, out=acc).T)


def pointwise(layer_list, x: np.ndarray) -> np.ndarray:
    """1×1 convolutions and ReLUs on ``x`` ((C, K) float64 integers: K positions), exactly as
    ``fixed_point`` computes them at each position."""
    x = np.asarray(x, dtype=np.float64)
    for layer in prepared(layer_list):
        if layer.kind == "relu":
            x = np.maximum(x, 0)
            continue
        if layer.kind != "conv" or layer.k != 1:
            raise ValueError("pointwise: 1×1 convolutions and ReLUs only")
        acc = np.clip(x, -layer.limit, layer.limit).T @ layer.taps[0]
        acc += layer.b
        acc *= 2.0**-HS_WEIGHT_BITS
        x = np.round(acc, out=acc).T
    return np.ascontiguousarray(x)


def to_fixed(t: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(t, dtype=np.float64) * 2.0**HS_ACT_BITS)


def scale_indexes(scale_table: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """The table index of every fixed-point scale (``ScaleHyperprior.fixed_scale_indexes``)."""
    table = np.round(scale_table.astype(np.float64) * 2.0**HS_ACT_BITS)
    return np.searchsorted(table[:-1], scales, side="left").astype(np.int64)
