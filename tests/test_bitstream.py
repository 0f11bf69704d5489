"""The file format, byte by byte (docs/bitstream.md)."""

import struct
import zlib

import pytest

from imgcodec.errors import BitstreamError, CodecError
from imgcodec.format import bitstream
from imgcodec.format.bitstream import Header, pack, unpack

HDR = Header(model="factorized-gdn", weights=bytes(range(8)), quality=4, width=257, height=129, mode="RGB")


def test_exact_layout():
    data = pack(HDR, [b"\x01\x02\x03"])
    L = len("factorized-gdn")
    assert data[:4] == b"IMGC"
    assert data[4] == 1  # format version
    assert data[5] == L
    assert data[6 : 6 + L] == b"factorized-gdn"
    assert data[6 + L : 14 + L] == bytes(range(8))
    assert data[14 + L] == 4  # quality
    assert struct.unpack(">II", data[15 + L : 23 + L]) == (257, 129)
    assert data[23 + L] == 0  # RGB
    assert data[24 + L] == 1  # one part
    assert struct.unpack(">I", data[25 + L : 29 + L]) == (3,)
    assert data[29 + L : 32 + L] == b"\x01\x02\x03"
    assert struct.unpack(">I", data[-4:])[0] == zlib.crc32(data[:-4])
    assert len(data) == 32 + L + 4


@pytest.mark.parametrize("mode,parts", [("RGB", [b"abc"]), ("L", [b""]), ("RGBA", [b"y", b"alpha"]), ("LA", [b"y", b"a"])])
def test_round_trip(mode, parts):
    h = Header("m", b"\xff" * 8, 255, 1, 65536, mode)
    s = unpack(pack(h, parts), max_pixels=None)
    assert s.header == h
    assert list(s.parts) == parts
    assert s.size == len(pack(h, parts))
    assert s.bpp == pytest.approx(8 * s.size / 65536)


def _recrc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


def test_errors_are_codec_errors():
    assert issubclass(BitstreamError, CodecError)


@pytest.mark.parametrize(
    "data,message",
    [
        (b"", "not an imgcodec file"),
        (b"PNG\x89" + b"\0" * 40, "not an imgcodec file"),
        (b"IMGC", "truncated"),
        (b"IMGC\x04" + b"\0" * 40, "unsupported format version 4"),
        (b"IMGC\x00" + b"\0" * 40, "unsupported format version 0"),
    ],
)
def test_refuses_foreign_and_truncated(data, message):
    with pytest.raises(BitstreamError, match=message):
        unpack(data)


def test_truncated_valid_file():
    data = pack(HDR, [b"payload"])
    for n in range(len(data)):
        with pytest.raises(BitstreamError):
            unpack(data[:n])


def test_crc_mismatch_is_refused():
    data = bytearray(pack(HDR, [b"payload"]))
    data[-5] ^= 0x01
    with pytest.raises(BitstreamError, match="CRC32"):
        unpack(bytes(data))


def test_lengths_must_match_file():
    data = pack(HDR, [b"payload"])
    L = len(HDR.model)
    body = bytearray(data[:-4])
    body[25 + L : 29 + L] = struct.pack(">I", 1000)  # claims more payload than the file has
    with pytest.raises(BitstreamError, match="truncated|lengths"):
        unpack(_recrc(bytes(body)))


@pytest.mark.parametrize("width,height", [(0, 10), (10, 0), (bitstream.MAX_SIDE + 1, 10)])
def test_bad_dimensions(width, height):
    body = bytearray(pack(HDR, [b"p"])[:-4])
    L = len(HDR.model)
    body[15 + L : 23 + L] = struct.pack(">II", width, height)
    with pytest.raises(BitstreamError, match="image size"):
        unpack(_recrc(bytes(body)))


def test_pixel_cap_before_allocation():
    h = Header("m", b"\0" * 8, 1, 60000, 60000, "RGB")
    data = pack(h, [b"x"])
    with pytest.raises(BitstreamError, match="exceeds the decoder's cap"):
        unpack(data)
    assert unpack(data, max_pixels=None).header.width == 60000


def test_bad_mode_and_part_count():
    L = len(HDR.model)
    body = bytearray(pack(HDR, [b"p"])[:-4])
    body[23 + L] = 9
    with pytest.raises(BitstreamError, match="colour mode"):
        unpack(_recrc(bytes(body)))
    body = bytearray(pack(HDR, [b"p"])[:-4])
    body[23 + L] = 2  # RGBA needs two parts, the file has one
    with pytest.raises(BitstreamError, match="payload parts"):
        unpack(_recrc(bytes(body)))


def test_version_2_layout():
    """A fractional quality or two latent parts: version 2, quality as a u16 in hundredths."""
    h = Header("hyperprior-gdn", bytes(range(8)), 3.45, 257, 129, "RGBA", latent_parts=2)
    data = pack(h, [b"zz", b"yyy", b"a"])
    L = len(h.model)
    assert data[4] == 2
    assert data[6 + L : 14 + L] == bytes(range(8))
    assert struct.unpack(">H", data[14 + L : 16 + L]) == (345,)
    assert struct.unpack(">II", data[16 + L : 24 + L]) == (257, 129)
    assert data[24 + L] == 2  # RGBA
    assert data[25 + L] == 3  # two latent parts + alpha
    assert struct.unpack(">III", data[26 + L : 38 + L]) == (2, 3, 1)
    assert data[38 + L : -4] == b"zzyyya"
    assert struct.unpack(">I", data[-4:])[0] == zlib.crc32(data[:-4])
    s = unpack(data)
    assert s.header == h and s.parts == (b"zz", b"yyy", b"a")


@pytest.mark.parametrize("quality,latent,version", [(4, 1, 1), (255, 1, 1), (4, 2, 2), (3.4, 1, 2), (1.01, 2, 2), (255.0, 1, 1)])
def test_writer_uses_the_oldest_version_that_fits(quality, latent, version):
    h = Header("m", b"\0" * 8, quality, 3, 2, "L", latent_parts=latent)
    data = pack(h, [b"p"] * latent)
    assert data[4] == version
    back = unpack(data).header
    assert back == h and type(back.quality) is (int if quality == int(quality) else float)


def test_version_1_allows_one_latent_part_only():
    body = bytearray(pack(HDR, [b"p"])[:-4])
    L = len(HDR.model)
    body[24 + L] = 2  # RGB with two parts: a version-2 layout only
    body[29 + L : 29 + L] = struct.pack(">I", 0)
    with pytest.raises(BitstreamError, match="payload parts"):
        unpack(_recrc(bytes(body)))


@pytest.mark.parametrize("centi", [0, 99, 25501, 65535])
def test_version_2_quality_range(centi):
    h = Header("m", b"\0" * 8, 2.5, 4, 4, "RGB")
    body = bytearray(pack(h, [b"p"])[:-4])
    body[15:17] = struct.pack(">H", centi)  # L = 1
    with pytest.raises(BitstreamError, match="quality"):
        unpack(_recrc(bytes(body)))


@pytest.mark.parametrize("latent", [0, bitstream.MAX_LATENT_PARTS + 1])
def test_version_2_latent_part_count(latent):
    with pytest.raises(BitstreamError, match="latent parts"):
        pack(Header("m", b"\0" * 8, 2, 4, 4, "RGB", latent_parts=latent), [b"p"] * latent)
    body = bytearray(pack(Header("m", b"\0" * 8, 2.5, 4, 4, "RGB"), [b"p"])[:-4])
    body[26] = latent  # P
    body[27:31] = b""
    body[27:27] = struct.pack(f">{latent}I", *[1] * latent)
    body[27 + 4 * latent :] = b"p" * latent
    with pytest.raises(BitstreamError, match="payload parts|truncated"):
        unpack(_recrc(bytes(body)))


@pytest.mark.parametrize("quality", [0, 0.99, 255.01, 2.345, True, "4"])
def test_pack_refuses_bad_qualities(quality):
    with pytest.raises(BitstreamError, match="quality"):
        pack(Header("m", b"\0" * 8, quality, 4, 4, "RGB"), [b"p"])


def test_pack_validates():
    with pytest.raises(BitstreamError):
        pack(Header("", b"\0" * 8, 1, 1, 1, "RGB"), [b""])
    with pytest.raises(BitstreamError):
        pack(HDR, [b"a", b"b"])
