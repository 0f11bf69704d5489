"""The rANS encoder of the latent payload: the bytes of compressai's
``RangeEncoder.encode_with_indexes``, without compressai or torch (compiled with numba, or in Python).

The stream is the one ``rans.py`` decodes (docs/bitstream.md): 64-bit rANS after F. Giesen's
``rans64.h``, 16-bit quantized CDFs, 32-bit words written little-endian.  For each symbol, with
table ``t`` (CDF ``cdf[t]`` of length ``n``, escape symbol ``n − 2``, offset ``o``), the value
``v = symbol − o`` is coded as itself when ``0 ≤ v < n − 2``, else as the escape symbol followed
by ``r`` (``−2v − 1`` for ``v < 0``, ``2(v − (n − 2))`` above) in 4-bit groups: first their count,
then the groups, least significant first.  The encoder pushes the symbols in reverse order from
the state ``2**31`` and flushes the final state as two words, so that the decoder reads them
forwards.

The compiled kernel (numba) runs where numba is installed and the payload is large, or numba is
already loaded (``rans_jit``'s rule and ``$IMGCODEC_RANS``); otherwise the same algorithm runs in
Python, about 1 µs a symbol.  ``tests/test_rans_encode.py`` checks byte equality of both with
compressai's encoder on random symbols (escapes included) and on the latents of the shipped
models.  Values must lie within ±``MAX_LATENT`` (``stream.MAX_LATENT``): the codec refuses larger
latents before coding.
"""

from __future__ import annotations

import numpy as np

from . import rans_jit
from .rans_stream import BYPASS_BITS, MAX_BYPASS, MAX_LATENT, PRECISION, RANS64_L

_kernel = None


def _build():
    # deferred: numba costs about 0.7 s to import: only when a payload is encoded
    from numba import njit

    @njit(cache=True, nogil=True)
    def rans_encode(symbols, index, plane, cdf, lengths, offsets, rans_l, precision, bypass_bits, max_bypass,
                    out):  # pragma: no cover
        n = symbols.shape[0]
        by_index = index.shape[0] > 0
        # Forward: every coded unit as (start, freq-or-bits, kind): kind 0 a CDF symbol, 1 a bypass group.
        starts = np.empty(n * 10, np.uint64)
        ranges = np.empty(n * 10, np.uint64)
        kinds = np.empty(n * 10, np.uint8)
        k = 0
        for i in range(n):
            t = index[i] if by_index else i // plane
            m = lengths[t]
            max_value = m - 2
            value = np.int64(symbols[i]) - offsets[t]
            raw = np.int64(0)
            if value < 0:
                raw = -2 * value - 1
                value = max_value
            elif value >= max_value:
                raw = 2 * (value - max_value)
                value = max_value
            starts[k] = cdf[t, value]
            ranges[k] = cdf[t, value + 1] - cdf[t, value]
            kinds[k] = 0
            k += 1
            if value == max_value:
                groups = 0
                while (raw >> (groups * bypass_bits)) != 0:
                    groups += 1
                val = groups
                while val >= max_bypass:
                    starts[k] = max_bypass
                    kinds[k] = 1
                    k += 1
                    val -= max_bypass
                starts[k] = val
                kinds[k] = 1
                k += 1
                for j in range(groups):
                    starts[k] = (raw >> (j * bypass_bits)) & max_bypass
                    kinds[k] = 1
                    k += 1
        # Backward: push every unit from the last, renormalising into the words from the end.
        L = np.uint64(rans_l)
        x = L
        p = out.shape[0]
        prec = np.uint64(precision)
        nb = np.uint64(bypass_bits)
        for u in range(k - 1, -1, -1):
            if kinds[u] == 0:
                freq = ranges[u]
                x_max = ((L >> prec) << np.uint64(32)) * freq
                if x >= x_max:
                    p -= 1
                    out[p] = np.uint32(x & np.uint64(0xFFFFFFFF))
                    x >>= np.uint64(32)
                x = ((x // freq) << prec) + (x % freq) + starts[u]
            else:
                x_max = ((L >> prec) << np.uint64(32)) << (prec - nb)  # rans64's PutBits: freq 2**(16 - bits)
                if x >= x_max:
                    p -= 1
                    out[p] = np.uint32(x & np.uint64(0xFFFFFFFF))
                    x >>= np.uint64(32)
                x = (x << nb) | starts[u]
        p -= 2
        out[p] = np.uint32(x & np.uint64(0xFFFFFFFF))
        out[p + 1] = np.uint32(x >> np.uint64(32))
        return p

    return rans_encode


def load():
    """The compiled encoder (compiled once, then loaded from numba's disk cache)."""
    global _kernel
    if _kernel is None:
        _kernel = _build()
    return _kernel


def _table_arrays(cdf, lengths, offsets):
    cdf = np.ascontiguousarray(cdf, dtype=np.uint64)
    lengths = np.ascontiguousarray(np.asarray(lengths).reshape(-1), dtype=np.int64)
    offsets = np.ascontiguousarray(np.asarray(offsets).reshape(-1), dtype=np.int64)
    if cdf.ndim != 2 or len(lengths) != cdf.shape[0] or len(offsets) != cdf.shape[0]:
        raise ValueError("malformed entropy tables")
    if ((lengths < 3) | (lengths > cdf.shape[1])).any():
        raise ValueError("malformed entropy tables")
    return cdf, lengths, offsets


def wanted(symbols: int, coder: str | None = None) -> bool:
    """Whether to encode with the compiled kernel: ``coder`` (``"jit"``, ``"python"``) where given,
    else ``rans_jit``'s rule (``$IMGCODEC_RANS``; numba already loaded, or a payload of
    ``JIT_MIN_SYMBOLS`` or more), and only where numba is installed."""
    global _unavailable
    m = coder or rans_jit.mode()
    if m == "python" or _unavailable:
        return False
    if m == "jit" or _kernel is not None or rans_jit._kernel is not None or symbols >= rans_jit.JIT_MIN_SYMBOLS:
        try:
            load()
        except ImportError:
            _unavailable = True
            return False
        return True
    return False


_unavailable = False


def _units(symbols: np.ndarray, tables: np.ndarray, cdf, lengths, offsets):
    """The coded units in order, vectorized: per symbol its CDF interval, then for an escape its
    4-bit groups (count first, then the value's groups, least significant first)."""
    max_value = lengths[tables] - 2
    value = symbols - offsets[tables]
    raw = np.where(value < 0, -2 * value - 1, np.where(value >= max_value, 2 * (value - max_value), 0))
    value = np.where((value < 0) | (value >= max_value), max_value, value)
    start = cdf[tables, value].astype(np.int64)
    freq = cdf[tables, value + 1].astype(np.int64) - start
    escapes = np.flatnonzero(value == max_value)
    groups = {}
    for i in escapes.tolist():
        r = int(raw[i])
        n = 0
        while r >> (n * BYPASS_BITS):
            n += 1
        groups[i] = [n] + [(r >> (j * BYPASS_BITS)) & MAX_BYPASS for j in range(n)]
    return start.tolist(), freq.tolist(), groups


def _encode_python(symbols: np.ndarray, index: np.ndarray, plane: int, cdf, lengths, offsets) -> bytes:
    """The same stream in Python (numba absent, or a payload too small to be worth its import)."""
    tables = index if index.size else np.repeat(np.arange(len(lengths)), max(int(plane), 1))[: symbols.size]
    start, freq, groups = _units(symbols, tables, cdf, lengths, offsets)
    L = RANS64_L
    x = L
    words: list[int] = []
    emit = words.append
    mask32 = 0xFFFFFFFF
    sym_bound = (L >> PRECISION) << 32
    bits_max = ((L >> PRECISION) << 32) << (PRECISION - BYPASS_BITS)
    for i in range(len(start) - 1, -1, -1):
        g = groups.get(i)
        if g is not None:
            for v in reversed(g):
                if x >= bits_max:
                    emit(x & mask32)
                    x >>= 32
                x = (x << BYPASS_BITS) | v
        f = freq[i]
        if x >= sym_bound * f:
            emit(x & mask32)
            x >>= 32
        x = ((x // f) << PRECISION) + (x % f) + start[i]
    emit(x >> 32)
    emit(x & mask32)
    return np.array(words[::-1], dtype="<u4").tobytes()


def _encode(symbols: np.ndarray, index: np.ndarray, plane: int, cdf, lengths, offsets,
            coder: str | None = None) -> bytes:
    symbols = np.ascontiguousarray(np.asarray(symbols).reshape(-1), dtype=np.int64)
    if symbols.size and int(np.abs(symbols).max()) >= MAX_LATENT:
        raise ValueError("latent values out of the coder's range")
    if not wanted(symbols.size, coder):
        return _encode_python(symbols, index, plane, cdf.astype(np.int64), lengths, offsets)
    out = np.zeros(symbols.size * 10 + 2, np.uint32)
    p = load()(symbols, index, max(int(plane), 1), cdf, lengths, offsets, RANS64_L, PRECISION, BYPASS_BITS,
               MAX_BYPASS, out)
    return out[p:].astype("<u4").tobytes()


def encode_indexed(symbols, indexes, cdf, lengths, offsets, coder: str | None = None) -> bytes:
    """The stream of ``symbols`` (int), symbol ``i`` with table ``indexes[i]``: compressai's
    ``GaussianConditional.compress`` of ``symbols`` (already rounded, means subtracted).

    ``cdf`` (tables × width), ``lengths`` and ``offsets``: the checkpoint's ``_quantized_cdf``,
    ``_cdf_length`` and ``_offset``."""
    cdf, lengths, offsets = _table_arrays(cdf, lengths, offsets)
    index = np.ascontiguousarray(np.asarray(indexes).reshape(-1), dtype=np.int64)
    if index.size != np.asarray(symbols).size:
        raise ValueError("one table index per symbol")
    if index.size and not (0 <= int(index.min()) and int(index.max()) < len(lengths)):
        raise ValueError("table indexes out of range")
    if index.size == 0:
        return _encode(np.zeros(0, np.int64), np.zeros(0, np.int64), 1, cdf, lengths, offsets, coder)
    return _encode(symbols, index, 0, cdf, lengths, offsets, coder)


def encode_channels(symbols, cdf, lengths, offsets, coder: str | None = None) -> bytes:
    """The stream of ``symbols`` (C, …) channel-major, channel ``c`` with table ``c``: compressai's
    ``EntropyBottleneck.compress`` of the symbols ``round(y − median)``."""
    cdf, lengths, offsets = _table_arrays(cdf, lengths, offsets)
    symbols = np.asarray(symbols)
    if symbols.shape[0] != len(lengths):
        raise ValueError("one table per channel")
    plane = symbols.size // max(symbols.shape[0], 1)
    return _encode(symbols, np.zeros(0, np.int64), plane, cdf, lengths, offsets, coder)
