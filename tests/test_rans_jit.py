"""The compiled rANS decoder (rans_jit.py) against the Python one (rans.py): the same symbols on
every stream compressai's encoder writes, the same error on every damaged one."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from imgcodec.errors import BitstreamError
from imgcodec.format import rans, rans_jit
from imgcodec.models import compressai_parts, store

pytest.importorskip("numba")


@pytest.fixture(scope="module")
def entropy_bottleneck():
    name = "factorized-gdn"
    return store.default_store().load_shipped(name).model.entropy_bottleneck


def _both(monkeypatch, payload: bytes, tables, plane: int):
    out = {}
    for mode in ("python", "jit"):
        monkeypatch.setenv("IMGCODEC_RANS", mode)
        try:
            out[mode] = ("symbols", rans.decode_symbols(payload, tables, plane).tobytes())
        except BitstreamError as exc:
            out[mode] = ("error", str(exc))
    return out["python"], out["jit"]


def test_same_symbols_and_errors_on_valid_and_damaged_streams(monkeypatch, entropy_bottleneck):
    eb = entropy_bottleneck
    tables = compressai_parts.coder_tables(eb)
    rng = random.Random(8)
    g = torch.Generator().manual_seed(8)
    outcomes = set()
    for _ in range(400):
        h, w = rng.randint(1, 4), rng.randint(1, 4)
        y = torch.randn(1, eb.channels, h, w, generator=g) * rng.choice([0.3, 1.0, 4.0, 40.0, 1e4, 3e5])
        p = bytearray(eb.compress(y)[0])
        op = rng.choice(["none", "none", "flip", "truncate", "random", "extend", "word"])
        if op == "flip":
            i = rng.randrange(len(p))
            p[i] ^= 1 << rng.randrange(8)
        elif op == "truncate":
            del p[rng.randrange(len(p) + 1):]
        elif op == "random":
            p = bytearray(rng.randbytes(4 * rng.randint(0, 64)))
        elif op == "extend":
            p += rng.randbytes(4 * rng.randint(1, 3))
        elif op == "word":
            i = rng.randrange(len(p) // 4)
            p[4 * i : 4 * i + 4] = rng.choice([b"\0\0\0\0", b"\xff\xff\xff\xff", b"\0\0\0\x80"])
        plane = max(h * w + rng.choice([0, 0, 0, 1, -1]), 0)
        py, jit = _both(monkeypatch, bytes(p), tables, plane)
        assert py == jit, (op, py[1][:80] if py[0] == "error" else "symbols", jit[1][:80] if jit[0] == "error" else "symbols")
        outcomes.add(py[0] if py[0] == "symbols" else next((k for k in KINDS if k in py[1]), py[1]))
    # Every way a stream can fail is reached (lengths aside, which rans.py checks before either loop).
    assert {"symbols", *KINDS} - {"escaped value out of range"} <= outcomes, outcomes


KINDS = ("ends too early", "longer than the encoder writes", "escaped value out of range",
         "does not end where it should", "not a whole rANS stream")


def test_escapes_decode_like_compressai(monkeypatch, entropy_bottleneck):
    eb = entropy_bottleneck
    y = torch.randn(1, eb.channels, 5, 7, generator=torch.Generator().manual_seed(1)) * 3e5  # every symbol escapes
    payload = eb.compress(y)[0]
    monkeypatch.setenv("IMGCODEC_RANS", "jit")
    assert torch.equal(compressai_parts.decode_factorized(eb, payload, (5, 7)), eb.decompress([payload], (5, 7)))


def test_indexed_streams_decode_alike_in_both_decoders():
    """The hyperprior's ŷ (one table per symbol): the compiled loop and the Python one give the same
    symbols, and the same error on a damaged stream."""
    model = store.default_store().load_shipped("hyperprior-gdn").model
    gc = model.gaussian_conditional
    tables = compressai_parts.coder_tables(gc)
    g = torch.Generator().manual_seed(3)
    rng = random.Random(3)
    for scale in (0.5, 4.0, 3e4):
        indexes = torch.randint(0, len(tables), (1, 8, 3, 5), generator=g)
        y = torch.randn(1, 8, 3, 5, generator=g) * scale
        payload = gc.compress(y, indexes)[0]
        expected = gc.decompress([payload], indexes).to(torch.int32).reshape(-1).numpy()
        damaged = bytearray(payload)
        damaged[rng.randrange(len(damaged))] ^= 0x10
        for data in (payload, bytes(damaged)):
            got = {}
            for decoder in ("python", "jit"):
                try:
                    got[decoder] = rans.decode_indexed(data, tables, indexes.numpy(), decoder=decoder).tobytes()
                except BitstreamError as exc:
                    got[decoder] = str(exc)
            assert got["python"] == got["jit"]
        assert np.array_equal(rans.decode_indexed(payload, tables, indexes.numpy(), decoder="jit"), expected)


def test_table_indexes_are_checked(entropy_bottleneck):
    tables = compressai_parts.coder_tables(entropy_bottleneck)
    rans_jit.load()
    with pytest.raises(ValueError, match="out of range"):
        rans_jit.decode(b"\0" * 8, tables, index=np.array([len(tables)]))


def test_auto_rule(monkeypatch):
    """Without a forced mode: the Python loop until the process has decoded JIT_MIN_SYMBOLS (or
    one payload is that large, or the compiled decoder is already loaded); Python without numba."""
    monkeypatch.delenv("IMGCODEC_RANS", raising=False)
    monkeypatch.setattr(rans_jit, "_kernel", None)
    monkeypatch.setattr(rans_jit, "_decoded", 0)
    monkeypatch.setattr(rans_jit, "load", lambda: "kernel")
    assert not rans_jit.wanted(1000)
    assert rans_jit.wanted(rans_jit.JIT_MIN_SYMBOLS)
    assert rans_jit.wanted(rans_jit.JIT_MIN_SYMBOLS - 1000)  # 1000 already counted
    monkeypatch.setenv("IMGCODEC_RANS", "python")
    assert not rans_jit.wanted(10 * rans_jit.JIT_MIN_SYMBOLS)
    monkeypatch.setenv("IMGCODEC_RANS", "jit")
    monkeypatch.setattr(rans_jit, "_unavailable", True)  # numba missing: the Python loop, whatever is asked
    assert not rans_jit.wanted(10)
