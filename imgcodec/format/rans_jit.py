"""The checked rANS decoder of ``rans.py``, compiled with numba: the same checks at native speed.

``rans._decode`` is a bounds-checked decoder written in Python, one loop for the per-channel
(``decode_symbols``) and the per-symbol-table (``decode_indexed``) streams (compressai's own decoder reads
past its buffer on crafted payloads; see ``rans.py``).  It costs about 0.4 µs a symbol — 60 ms for a
Kodak image at quality 4, more than compressai's whole ``decompress`` wrapper.  This module runs
the very same algorithm as one numba function (about 0.04 µs a symbol):

* every read of the stream is guarded (``p < nwords``), every table index is validated before the
  call (channel ``i // plane`` or ``index[i]`` in range, CDF rows of at least 3 strictly increasing
  entries from 0 to 2**16, checked by ``rans.cdf_tables``), so no access leaves its array;
* the loops are bounded: one pass over the symbols, at most ``MAX_BYPASS_NIBBLES`` escape groups each;
* each failure returns a code that names the same ``BitstreamError`` as the Python decoder
  (``tests/test_bench.py`` checks both decoders against each other on valid and damaged streams).

The state is an unsigned 64-bit integer: with words of 32 bits and 16-bit CDFs, neither the Python
decoder's state nor this one ever reaches 2**64 (``freq·(x >> 16) + cum − start < 2**64`` for
``freq < 2**16``), so the two agree on every input, valid or not.

Compiling costs about a second once (numba caches the machine code on disk, next to this file or
in the user's cache folder); importing numba and loading the cached code about 0.7 s per process.
So that a one-image command line does not pay more than it saves, ``rans`` uses this decoder when
it is already loaded, or when the payload (or the symbols the process has decoded so far) reaches
``JIT_MIN_SYMBOLS`` (about what the Python loop decodes in the same 0.4 s).
``IMGCODEC_RANS=jit`` or ``=python`` forces one decoder.  Without numba installed, ``rans`` keeps
its Python loop.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import BitstreamError
from .rans_stream import MAX_BYPASS_NIBBLES, RANS64_L

JIT_MIN_SYMBOLS = 1_000_000
_OK, _TRUNCATED, _LONG_ESCAPE, _ESCAPE_RANGE, _BAD_END = range(5)
MESSAGES = {
    _TRUNCATED: "corrupt payload: the entropy-coded stream ends too early",
    _LONG_ESCAPE: "corrupt payload: an escaped value longer than the encoder writes",
    _ESCAPE_RANGE: "corrupt payload: an escaped value out of range",
    _BAD_END: "corrupt payload: the entropy-coded stream does not end where it should",
}

_kernel = None  # the compiled function, once loaded
_unavailable = False  # numba is not installed (or failed to compile): the Python loop stays
_decoded = 0  # symbols decoded by the Python loop in this process (the "auto" rule)


def mode() -> str:
    value = os.environ.get("IMGCODEC_RANS", "auto").strip().lower()
    return value if value in ("auto", "jit", "python") else "auto"


def wanted(symbols: int, decoder: str | None = None) -> bool:
    """Whether to decode ``symbols`` symbols with the compiled decoder: ``decoder`` (``"jit"``,
    ``"python"``) where given, else by the module's rule."""
    global _decoded
    m = decoder or mode()
    if m == "python" or _unavailable:
        return False
    if m == "jit" or _kernel is not None or symbols >= JIT_MIN_SYMBOLS or _decoded + symbols >= JIT_MIN_SYMBOLS:
        return load() is not None
    _decoded += symbols
    return False


def load():
    """Import numba and compile (or load from the disk cache) the decoder; None without numba."""
    global _kernel, _unavailable
    if _kernel is None and not _unavailable:
        try:
            _kernel = _build()
            _run(np.array([RANS64_L, 0], np.uint32), [([0, 1, 1 << 16], 1, 0)], np.zeros(0, np.int64), 0)
        except Exception:  # noqa: BLE001 - no numba, or it cannot compile here: keep the Python loop
            _kernel, _unavailable = None, True
    return _kernel


def decode(payload: bytes, tables, plane: int = 0, index: np.ndarray | None = None) -> np.ndarray:
    """Decode ``len(tables) * plane`` symbols channel-major, or one per entry of ``index`` (symbol
    ``i`` with table ``index[i]``), into an int32 array; raise ``BitstreamError`` like ``rans``.

    The payload has passed ``rans``'s length check (8 bytes or more, whole 32-bit words).
    """
    # Fresh writable native arrays: the types of the one compiled specialization.
    words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
    if index is None:
        index = np.zeros(0, np.int64)
    else:
        index = np.array(index, dtype=np.int64).reshape(-1)
        if index.size and not (0 <= int(index.min()) and int(index.max()) < len(tables)):
            raise ValueError("table indexes out of range")
    return _run(words, tables, index, plane)


def _run(words: np.ndarray, tables, index: np.ndarray, plane: int) -> np.ndarray:
    width = max(len(cdf) for cdf, _, _ in tables)
    cdf = np.zeros((len(tables), width), np.uint64)
    lengths = np.empty(len(tables), np.int64)
    offsets = np.empty(len(tables), np.int64)
    for t, (row, max_value, offset) in enumerate(tables):
        if len(row) != max_value + 2 or len(row) < 3:
            raise ValueError("malformed entropy table")
        cdf[t, : len(row)] = row
        lengths[t], offsets[t] = len(row), offset
    n = index.size if index.size else len(tables) * int(plane)
    out = np.empty(n, np.int32)
    code = _kernel(words, cdf, lengths, offsets, index, max(int(plane), 1), out, MAX_BYPASS_NIBBLES, RANS64_L)
    if code != _OK:
        raise BitstreamError(MESSAGES[code])
    return out


def _build():
    # deferred: numba costs about 0.7 s to import: only when the compiled decoder is wanted
    from numba import njit

    # The constants are arguments, not globals: numba's disk cache is keyed on this file alone.
    @njit(cache=True, nogil=True)
    def rans_decode(words, cdf, lengths, offsets, index, plane, out, max_nibbles, rans_l):  # pragma: no cover
        L = np.uint64(rans_l)
        mask = np.uint64(0xFFFF)
        four = np.uint64(4)
        nwords = words.shape[0]
        x = np.uint64(words[0]) | (np.uint64(words[1]) << np.uint64(32))
        p = 2
        by_index = index.shape[0] > 0
        for i in range(out.shape[0]):
            t = index[i] if by_index else i // plane
            m = lengths[t]
            cum = x & mask
            lo, hi = 0, m - 1  # cdf[t, lo] <= cum < cdf[t, hi]: bisect for the symbol
            while hi - lo > 1:
                mid = (lo + hi) >> 1
                if cdf[t, mid] <= cum:
                    lo = mid
                else:
                    hi = mid
            start = cdf[t, lo]
            x = (cdf[t, lo + 1] - start) * (x >> np.uint64(16)) + cum - start
            if x < L:
                if p >= nwords:
                    return 1
                x = (x << np.uint64(32)) | np.uint64(words[p])
                p += 1
            value = np.int64(lo)
            if lo == m - 2:  # escape: the length, then the value, in 4-bit groups
                raw = np.int64(0)
                count = np.int64(-1)
                j = np.int64(0)
                while count < 0 or j < count:
                    v = np.int64(x & np.uint64(15))
                    x >>= four
                    if x < L:
                        if p >= nwords:
                            return 1
                        x = (x << np.uint64(32)) | np.uint64(words[p])
                        p += 1
                    if count < 0:
                        if v > max_nibbles:  # the encoder codes 32-bit values
                            return 2
                        count = v
                    else:
                        raw |= v << (4 * j)
                        j += 1
                if raw >= (1 << 31):
                    return 3
                value = raw >> 1
                value = -value - 1 if raw & 1 else value + m - 2
            out[i] = value + offsets[t]
        if p != nwords or x != L:
            return 4
        return 0

    return rans_decode
