"""Decoder fuzzing: a short seeded campaign, crafted hostile files, and the rANS decoder.

The long campaign (≥ 100,000 inputs) is run by hand, ``python -m imgcodec.studies.fuzz``; its command and
outcome are in docs/reliability.md.  Here a few hundred inputs of a fixed seed run through the same
harness: a worker subprocess with an address-space limit and a watchdog, so a crash or a hang is a
failed test, not a dead test run.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import imgcodec
from imgcodec.errors import BitstreamError, CodecError
from imgcodec.format import bitstream, rans
from imgcodec.models import compressai_parts, store
from imgcodec.studies import fuzz


@pytest.fixture(scope="module")
def seeds():
    return fuzz.make_seeds()


@pytest.fixture(scope="module")
def entropy_bottleneck():
    return store.default_store().load_shipped("factorized-gdn").model.entropy_bottleneck


def test_short_seeded_campaign():
    report = fuzz.campaign(600, seed=20240607, wall_limit=120)
    assert report.findings == [], report.findings
    assert report.inputs == 600
    # The campaign reaches every layer: refused headers, refused payloads, and real decodes.
    assert report.outcomes["BitstreamError"] > 300
    assert report.outcomes["decoded"] > 0 and report.outcomes["ModelError"] > 0
    assert set(report.by_mutation) == set(fuzz.MUTATIONS)
    assert report.max_cpu < 5


def _forge(data: bytes, payload: bytes | None = None, width=None, height=None, part: int = 0) -> bytes:
    """``data`` with latent part ``part`` replaced by ``payload`` and/or another size in its header."""
    s = bitstream.unpack(data, max_pixels=None)
    h = s.header
    header = dataclasses.replace(h, width=width or h.width, height=height or h.height)
    parts = list(s.parts)
    if payload is not None:
        parts[part] = payload
    return bitstream.pack(header, parts)


def test_crafted_files_with_a_correct_crc(seeds):
    """Files that pass every header check but carry a payload compressai's decoder would read
    past its buffer (a segfault) — run in the harness's worker so that a crash fails this test.
    Every latent part of the default model's file is forged in turn."""
    valid, foreign = seeds
    base = valid[1]  # 48×32 RGB
    k = bitstream.unpack(base).header.latent_parts
    hostile = []
    for part in range(k):
        payload = bitstream.unpack(base).parts[part]
        hostile += [
            _forge(base, b"", part=part),
            _forge(base, b"\x01\x02\x03", part=part),
            *([_forge(base, payload[:8], part=part)] if len(payload) > 8 else []),  # 8 bytes: the part itself
            _forge(base, payload[:-4], part=part),
            _forge(base, payload + b"\0\0\0\0", part=part),
            _forge(base, b"\xff" * 1000, part=part),
            _forge(base, b"\x00" * 1000, part=part),
            _forge(base, b"\xff" * 8, part=part),
        ]
    payload = bitstream.unpack(base).parts[0]
    hostile += [
        _forge(base, payload, width=11585, height=11585),  # just under the pixel cap
        _forge(base, b"\x00" * 8, width=6000, height=4000),
        _forge(base, payload, width=65535, height=1),
        *foreign,  # a latent coded with another model's entropy tables
    ]
    report = fuzz.campaign(0, inputs=hostile, wall_limit=120)
    assert report.findings == [], report.findings
    assert report.outcomes == {"BitstreamError": len(hostile)}
    assert report.max_cpu < 5


def test_foreign_files_are_refused_in_process(seeds):
    _, foreign = seeds
    for data in foreign:
        with pytest.raises(BitstreamError, match="corrupt payload"):
            imgcodec.decode(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(st.data())
def test_hypothesis_mutations_decode_or_raise_codec_error(seeds, data):
    """Hypothesis picks the seed, the positions and the values (and shrinks a failure)."""
    valid, foreign = seeds
    buf = bytearray(data.draw(st.sampled_from(valid + foreign)))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["set", "truncate", "insert", "u32"]))
        if op == "set" and buf:
            buf[data.draw(st.integers(0, len(buf) - 1))] = data.draw(st.integers(0, 255))
        elif op == "truncate":
            del buf[data.draw(st.integers(0, len(buf))):]
        elif op == "insert":
            i = data.draw(st.integers(0, len(buf)))
            buf[i:i] = data.draw(st.binary(min_size=1, max_size=16))
        elif op == "u32" and len(buf) >= 4:
            i = data.draw(st.integers(0, len(buf) - 4))
            buf[i:i + 4] = struct.pack(">I", data.draw(st.sampled_from([0, 1, 65535, 65536, 2**31, 2**32 - 1])))
    if data.draw(st.booleans()):
        buf = bytearray(fuzz.reseal(bytes(buf)))
    try:
        img = imgcodec.decode(bytes(buf))
    except CodecError as exc:
        assert str(exc)
    else:
        h = bitstream.unpack(bytes(buf)).header
        assert img.size == (h.width, h.height)


# ---------------------------------------------------------------------------------------------
# The bounds-checked rANS decoder


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 6), w=st.integers(1, 6),
    scale=st.sampled_from([0.3, 1.0, 4.0, 40.0, 1e4, 3e5]),
    seed=st.integers(0, 2**16),
)
def test_rans_decoder_matches_compressai_bit_for_bit(entropy_bottleneck, h, w, scale, seed):
    """On every stream compressai's encoder writes — escapes (bypass coding) included."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(1, entropy_bottleneck.channels, h, w, generator=g) * scale
    payload = entropy_bottleneck.compress(y)[0]
    expected = entropy_bottleneck.decompress([payload], (h, w))
    assert torch.equal(compressai_parts.decode_factorized(entropy_bottleneck, payload, (h, w)), expected)


def test_rans_decoder_refuses_damaged_streams(entropy_bottleneck):
    y = torch.randn(1, entropy_bottleneck.channels, 3, 4, generator=torch.Generator().manual_seed(3)) * 3
    payload = entropy_bottleneck.compress(y)[0]
    tables = compressai_parts.coder_tables(entropy_bottleneck)
    rans.decode_symbols(payload, tables, 12)
    for bad, why in [
        (b"", "not a whole rANS stream"),
        (payload[:-1], "not a whole rANS stream"),
        (payload[:8], "ends too early"),
        (payload + b"\0" * 4, "does not end where it should"),
    ]:
        with pytest.raises(BitstreamError, match=why):
            rans.decode_symbols(bad, tables, 12)
    with pytest.raises(BitstreamError):
        rans.decode_symbols(payload, tables, 13)  # more symbols than were coded
    # A stream whose first symbol is channel 0's escape, followed by a length group of 9..15
    # 4-bit groups (the encoder writes at most 8): refused, not looped on.
    cdf, max_value, _ = tables[0]
    start, freq = cdf[max_value], cdf[max_value + 1] - cdf[max_value]
    k = next(k for k in range(1 << 40, (1 << 40) + 4096) if (freq * k) & 15 >= 9)
    crafted = struct.pack("<Q", (k << 16) | start) + b"\xff" * 64
    with pytest.raises(BitstreamError, match="escaped value longer"):
        rans.decode_symbols(crafted, tables, 1)


def test_encoder_refuses_latents_compressai_cannot_code(monkeypatch):
    """NaN or huge latents (a diverged model) would hang compressai's encoder: a ModelError instead."""
    from imgcodec.codec import api as codec
    from imgcodec.errors import ModelError

    model = store.default_store().load_shipped("factorized-gdn").model
    rgb = np.zeros((16, 16, 3), np.uint8)
    for bad in (float("nan"), float(rans.MAX_LATENT)):
        monkeypatch.setattr(codec.tiling, "analysis", lambda *a, **k: torch.full((1, 96, 1, 1), bad))
        with pytest.raises(ModelError, match="out of range"):
            codec.compress_latents(model, rgb)


def test_alpha_bomb_is_bounded(seeds):
    """A zlib bomb in the alpha part is cut off after width×height+1 bytes, not inflated."""
    valid, _ = seeds
    rgba = next(d for d in valid if bitstream.unpack(d).header.mode == "RGBA")
    s = bitstream.unpack(rgba)
    k = s.header.latent_parts
    bomb = zlib.compress(b"\0" * (64 << 20), 9)
    with pytest.raises(BitstreamError, match="alpha"):
        imgcodec.decode(bitstream.pack(s.header, [*s.parts[:k], bomb]))


def test_seed_files_decode(seeds):
    valid, _ = seeds
    for data in valid:
        img = imgcodec.decode(data)
        h = bitstream.unpack(data).header
        assert img.size == (h.width, h.height) and img.mode == h.mode
