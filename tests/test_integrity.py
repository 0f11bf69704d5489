"""Integrity: damage to a file is detected and reported as corruption, never decoded to a wrong image.

Every single-bit flip of whole small files is tried (the CRC32 rejects them before any model
work, so this is fast), every truncation, and — on the header/CRC parser alone — every pair of bit
flips: CRC-32 has Hamming distance ≥ 4 for messages up to 11 KiB, so any 1, 2 or 3 flipped bits
are detected there.
"""

from __future__ import annotations

import itertools

import pytest
from PIL import Image

import imgcodec
from imgcodec.errors import BitstreamError
from imgcodec.format import bitstream

from conftest import natural_image


@pytest.fixture(scope="module")
def small_files() -> dict[str, bytes]:
    rgb = natural_image(16, 16, seed=5)
    rgba = Image.fromarray(natural_image(32, 32, seed=6), "RGB")
    rgba.putalpha(Image.fromarray(natural_image(32, 32, seed=7)[..., 0], "L"))
    return {"rgb16": imgcodec.encode(Image.fromarray(rgb, "RGB")), "rgba32": imgcodec.encode(rgba)}


def _flip(data: bytes, bit: int) -> bytes:
    b = bytearray(data)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


@pytest.mark.parametrize("name", ["rgb16", "rgba32"])
def test_every_single_bit_flip_is_reported_as_corruption(small_files, name):
    data = small_files[name]
    imgcodec.decode(data)  # the pristine file decodes
    reasons = set()
    for bit in range(8 * len(data)):
        with pytest.raises(BitstreamError) as info:
            imgcodec.decode(_flip(data, bit))
        reasons.add(str(info.value).split(" (")[0])
    # Named as damage: the CRC32 mismatch, or the magic / version / length check that comes first.
    assert reasons <= {
        "corrupt file: CRC32 mismatch",
        "not an imgcodec file",
        "truncated file",
    } | {r for r in reasons if r.startswith("unsupported format version")}, reasons


def test_every_truncation_and_extension_is_reported(small_files):
    data = small_files["rgba32"]
    for n in range(len(data)):
        with pytest.raises(BitstreamError):
            imgcodec.decode(data[:n])
    for tail in (b"\0", b"\xff" * 4, data[-4:], data):
        with pytest.raises(BitstreamError):
            imgcodec.decode(data + tail)


def test_every_double_bit_flip_fails_the_crc(small_files):
    """All pairs of flipped bits of the 16×16 file (the parser alone, ~10^5 cases, ~1 s)."""
    data = small_files["rgb16"]
    bitstream.unpack(data)
    nbits = 8 * len(data)
    undetected = 0
    for a, b in itertools.combinations(range(nbits), 2):
        damaged = bytearray(data)
        damaged[a // 8] ^= 1 << (a % 8)
        damaged[b // 8] ^= 1 << (b % 8)
        try:
            bitstream.unpack(bytes(damaged))
        except BitstreamError:
            continue
        undetected += 1
    assert undetected == 0


@pytest.mark.parametrize("model", [None, "factorized-gdn"], ids=["default", "factorized-gdn"])
def test_damaged_payload_with_a_recomputed_crc_is_still_refused(small_files, model):
    """Past the CRC (a forger recomputes it), the entropy decoder's end check refuses a payload with
    a flipped bit, in every latent part — all but flips inside the raw 4-bit groups of an escaped
    value, which carry no redundancy (the 16×16 file may have none; the CRC is what protects those
    bits)."""
    from imgcodec.studies.fuzz import Layout, reseal

    data = small_files["rgb16"] if model is None else imgcodec.encode(
        Image.fromarray(natural_image(16, 16, seed=5), "RGB"), model=model)
    layout = Layout.of(data)
    assert layout.latent == bitstream.unpack(data).header.latent_parts == len(layout.parts)
    assert layout.parts[0][1] > 0
    for pos, n in layout.parts:  # (a checkerboard file of a 1×1 latent has an empty last part)
        refused = 0
        for bit in range(8 * pos, 8 * (pos + n)):
            try:
                imgcodec.decode(reseal(_flip(data, bit)))
            except BitstreamError as exc:
                assert "corrupt payload" in str(exc)
                refused += 1
        assert refused >= 0.9 * 8 * n, (pos, n, refused)


def test_format_doc_quotes_the_parser_constants():
    """docs/bitstream.md states the limits the parser enforces."""
    from conftest import ROOT

    doc = (ROOT / "docs" / "bitstream.md").read_text(encoding="utf-8")
    assert f"{bitstream.DEFAULT_MAX_PIXELS:,}" in doc
    assert f"1 … {bitstream.MAX_SIDE}" in doc
    assert f"1 … {bitstream.MAX_MODEL_ID}" in doc
    assert f"first {bitstream.HASH_PREFIX_BYTES} bytes of the sha256" in doc
    assert f"magic `{' '.join(f'{b:02X}' for b in bitstream.MAGIC)}`" in doc
    for version in getattr(bitstream, "VERSIONS", (bitstream.VERSION,)):
        assert f"`{version}`" in doc
    if hasattr(bitstream, "MAX_LATENT_PARTS"):
        assert f"`K` = 1 … {bitstream.MAX_LATENT_PARTS}" in doc


@pytest.mark.parametrize("failure", [MemoryError("Unable to allocate 192. MiB for an array"),
                                     RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to "
                                                  "allocate 201326592 bytes")], ids=["numpy", "torch"])
def test_out_of_memory_is_not_reported_as_corruption(monkeypatch, capsys, tmp_path, small_files, failure):
    """An allocation that fails while a sound file decodes is a ``MemoryError`` (the command line:
    'out of memory'), never 'corrupt payload': the file is not damaged, and a fuzzer must see it."""
    from imgcodec.codec import tiling

    from conftest import run_main

    def synthesis(*args, **kwargs):
        raise failure

    monkeypatch.setattr(tiling, "synthesis", synthesis)
    with pytest.raises(MemoryError):
        imgcodec.decode(small_files["rgb16"])
    (tmp_path / "a.bin").write_bytes(small_files["rgb16"])
    code, _, err = run_main(capsys, "decode", tmp_path / "a.bin", tmp_path / "a.png")
    assert (code, err) == (1, "imgcodec: error: out of memory\n")
    assert not (tmp_path / "a.png").exists()
