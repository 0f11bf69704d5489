"""A bounds-checked decoder for the latent payload (compressai's 64-bit rANS stream).

The payload of an imgcodec file is written by compressai's ``RangeEncoder.encode_with_indexes``
(``EntropyBottleneck.compress``).  compressai's own decoder reads that stream through a raw
pointer and never checks where the stream ends: a truncated, foreign or crafted payload — one
that an attacker wraps in a correct CRC32 — makes it read past its buffer (a segmentation fault, or
heap memory decoded into the picture), and its bypass (escape) loop runs as long as the bytes it
reads say.  This module decodes the same stream bit-exactly, in Python, with every read checked:

* a read past the end of the payload, an escape longer than any the encoder writes (more than
  ``MAX_BYPASS_NIBBLES`` 4-bit groups: the encoder codes 32-bit values), a payload that is not a
  whole number of 32-bit words, or a stream that does not end exactly where the encoder's would
  (every word consumed and the coder back in its initial state ``2**31``) is a ``BitstreamError``;
* the work is linear in the number of latent symbols (which the header's dimensions fix and the
  pixel cap bounds) and in the payload's length.

The last check rejects CRC-valid garbage before any synthesis runs: a random payload passes it
with odds of about 2**-32.  The stream layout: little-endian 32-bit words; the first two words are
the coder's 64-bit state (low word first), then the renormalisation words in the order the
decoder consumes them.  See docs/bitstream.md.
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np

from ..errors import BitstreamError
from . import rans_jit
from .rans_stream import BYPASS_BITS, MAX_BYPASS, MAX_BYPASS_NIBBLES, MAX_LATENT, PRECISION, RANS64_L

__all__ = ["MAX_LATENT", "cdf_tables", "decode_indexed", "decode_symbols"]



def _words(payload: bytes) -> list[int]:
    if len(payload) < 8 or len(payload) % 4:
        raise BitstreamError(
            f"corrupt payload: {len(payload)} bytes is not a whole rANS stream (8 or more, a multiple of 4)"
        )
    return np.frombuffer(payload, dtype="<u4").tolist()


def _truncated() -> BitstreamError:
    return BitstreamError("corrupt payload: the entropy-coded stream ends too early")


def cdf_tables(cdf, lengths, offsets) -> list[tuple[list[int], int, int]]:
    """Per table: (CDF up to its length, max_value = escape symbol, offset), checked for sanity.

    ``cdf`` (tables, width) quantized CDFs, ``lengths`` and ``offsets`` one per table: arrays (numpy
    or anything with ``tolist``) as an entropy model holds them (``models.compressai_parts``
    reads a model's; ``light.models`` a checkpoint's)."""
    tables = []
    for row, n, off in zip(cdf.tolist(), lengths.reshape(-1).tolist(), offsets.reshape(-1).tolist()):
        row = row[:n]
        if n < 3 or row[0] != 0 or row[-1] != 1 << PRECISION or any(b <= a for a, b in zip(row, row[1:])):
            raise BitstreamError("the model's entropy tables are invalid")
        tables.append((row, n - 2, off))
    return tables


def decode_symbols(payload: bytes, tables, plane: int, decoder: str | None = None) -> np.ndarray:
    """Decode ``len(tables) * plane`` symbols (channel-major) into an int32 array (C, plane).

    Bit-exact with compressai's ``decode_with_indexes`` on every stream its encoder writes; raises
    ``BitstreamError`` on anything else.  ``decoder``: ``"python"`` or ``"jit"`` to force one
    decoder, ``None`` for ``rans_jit``'s rule (``$IMGCODEC_RANS``, then the symbol count).
    """
    return _decode(payload, tables, plane, None, decoder).reshape(len(tables), plane)


def decode_indexed(payload: bytes, tables, indexes: np.ndarray, decoder: str | None = None) -> np.ndarray:
    """Decode ``len(indexes)`` symbols, symbol ``i`` with table ``indexes[i]``, into an int32 array.

    The stream of ``GaussianConditional.compress`` (compressai's ``encode_with_indexes`` with one
    table per symbol: the hyperprior's ``ŷ``), with the checks of ``decode_symbols``.  ``indexes``
    must lie in ``range(len(tables))``: the caller computes them from data it has already decoded.
    """
    indexes = np.asarray(indexes).reshape(-1)
    if indexes.size and not (0 <= int(indexes.min()) and int(indexes.max()) < len(tables)):
        raise ValueError("table indexes out of range")
    return _decode(payload, tables, 0, indexes, decoder)


def _decode(payload: bytes, tables, plane: int, index: np.ndarray | None, decoder: str | None) -> np.ndarray:
    """The one decoding loop: symbol ``i`` with table ``index[i]``, or with table ``i // plane``
    (channel-major) without an index; in numba (``rans_jit``) or in Python, the same checks."""
    count = len(tables) * plane if index is None else index.size
    words = _words(payload)  # the length check, before either loop
    if rans_jit.wanted(count, decoder):
        return rans_jit.decode(payload, tables, plane, index)
    table_of = (t for t in range(len(tables)) for _ in range(plane)) if index is None else index.tolist()
    nwords = len(words)
    x = words[0] | (words[1] << 32)
    p = 2
    mask = (1 << PRECISION) - 1
    L = RANS64_L
    freqs = [[b - a for a, b in zip(cdf, cdf[1:])] for cdf, _, _ in tables]
    out: list[int] = []
    append = out.append
    for t in table_of:
        cdf, max_value, offset = tables[t]
        cum = x & mask
        s = bisect_right(cdf, cum) - 1
        x = freqs[t][s] * (x >> PRECISION) + cum - cdf[s]
        if x < L:
            if p >= nwords:
                raise _truncated()
            x = (x << 32) | words[p]
            p += 1
        if s == max_value:  # escape: the value follows in 4-bit groups
            x, p, s = _bypass(x, p, words, max_value)
        append(s + offset)
    if p != nwords or x != L:
        raise BitstreamError("corrupt payload: the entropy-coded stream does not end where it should")
    return np.array(out, dtype=np.int32)


def _bypass(x: int, p: int, words: list[int], max_value: int) -> tuple[int, int, int]:
    nwords = len(words)

    def get(x: int, p: int) -> tuple[int, int, int]:
        val = x & MAX_BYPASS
        x >>= BYPASS_BITS
        if x < RANS64_L:
            if p >= nwords:
                raise _truncated()
            x = (x << 32) | words[p]
            p += 1
        return val, x, p

    n, x, p = get(x, p)
    if n > MAX_BYPASS_NIBBLES:  # the encoder never writes a longer escape (nor a continuation group)
        raise BitstreamError("corrupt payload: an escaped value longer than the encoder writes")
    raw = 0
    for j in range(n):
        val, x, p = get(x, p)
        raw |= val << (j * BYPASS_BITS)
    if raw >= 1 << 31:
        raise BitstreamError("corrupt payload: an escaped value out of range")
    value = raw >> 1
    value = -value - 1 if raw & 1 else value + max_value
    return x, p, value
