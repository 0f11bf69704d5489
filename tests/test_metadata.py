"""Colour profiles and metadata: the ICC profile, EXIF and XMP travel in the file (format version 3)
and come back on the decoded image; files without metadata keep the older versions, byte for byte."""

from __future__ import annotations

import functools
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

import imgcodec
from imgcodec.codec import imageio
from imgcodec.format import bitstream
from imgcodec.models import store

from conftest import natural_image
from conftest import run_main as run

DATA = Path(__file__).parent / "data"
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'


@functools.lru_cache(maxsize=1)  # once: a created profile carries its creation time
def swapped_profile() -> bytes:
    """A valid RGB profile whose red and blue primaries are swapped: a wide-apart 'other' colour
    space (no Display P3 profile ships with Pillow), so that tagging and converting visibly differ."""
    icc = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    count = struct.unpack_from(">I", icc, 128)[0]
    tags = {bytes(icc[132 + 12 * i: 136 + 12 * i]): 132 + 12 * i for i in range(count)}
    r, b = tags[b"rXYZ"], tags[b"bXYZ"]
    icc[r + 4: r + 12], icc[b + 4: b + 12] = icc[b + 4: b + 12], icc[r + 4: r + 12]
    return bytes(icc)


def photo_with_metadata(tmp_path, fmt="JPEG") -> Path:
    img = Image.fromarray(natural_image(32, 48, seed=9))
    exif = Image.Exif()
    exif[0x010F] = "TestCam"  # Make
    exif[0x8298] = "(c) someone"  # Copyright
    exif[0x0112] = 6  # orientation: rotate 90° on display
    path = tmp_path / ("p.jpg" if fmt == "JPEG" else "p.png")
    img.save(path, format=fmt, icc_profile=swapped_profile(), exif=exif.tobytes(), **({"xmp": XMP} if fmt == "JPEG" else {}))
    return path


def test_icc_exif_xmp_round_trip_through_the_cli(capsys, tmp_path):
    src = photo_with_metadata(tmp_path)
    binf, png, webp = tmp_path / "o.bin", tmp_path / "o.png", tmp_path / "o.webp"
    assert run(capsys, "encode", src, binf)[0] == 0
    s = bitstream.unpack(binf.read_bytes())
    assert binf.read_bytes()[4] == 3 and s.header.metadata_names == ("icc", "exif", "xmp")
    code, out, _ = run(capsys, "info", binf)
    assert "metadata  icc, exif, xmp" in out
    assert run(capsys, "decode", binf, png)[0] == 0 and run(capsys, "decode", binf, webp)[0] == 0
    for path in (png, webp):
        out_img = Image.open(path)
        assert out_img.info["icc_profile"] == swapped_profile()
        exif = out_img.getexif()
        assert exif[0x010F] == "TestCam" and exif[0x8298] == "(c) someone"
        assert exif.get(0x0112, 1) == 1  # the rotation is in the pixels now
        assert out_img.size == (32, 48)  # rotated upright
    assert XMP in Image.open(webp).info["xmp"]
    assert XMP.decode() in Image.open(png).info["XML:com.adobe.xmp"]


def test_api_attaches_the_metadata_to_the_decoded_image(tmp_path):
    src = photo_with_metadata(tmp_path, "PNG")
    img = imgcodec.decode(imgcodec.encode(src))
    assert img.info["icc_profile"] == swapped_profile()
    assert img.getexif()[0x8298] == "(c) someone"


@pytest.mark.parametrize("choice, kept", [("all", ("icc", "exif", "xmp")), ("icc", ("icc",)), ("none", ())])
def test_metadata_option(capsys, tmp_path, choice, kept):
    src = photo_with_metadata(tmp_path)
    binf = tmp_path / "o.bin"
    assert run(capsys, "encode", src, binf, "--metadata", choice)[0] == 0
    assert bitstream.unpack(binf.read_bytes()).header.metadata_names == kept


def test_to_srgb_converts_the_pixels_and_keeps_no_profile(tmp_path):
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    path = tmp_path / "red.png"
    Image.fromarray(red).save(path, icc_profile=swapped_profile())
    tagged = imageio.read_image(path)
    assert tagged.icc == swapped_profile() and np.array_equal(tagged.rgb, red)  # pixels as stored, tagged
    converted = imageio.read_image(path, to_srgb=True)
    assert converted.icc is None
    r, g, b = converted.rgb[8, 8].astype(int)
    assert b > 200 and r < 60  # 'red' in a profile whose red primary is sRGB's blue
    data = imgcodec.encode(path, to_srgb=True)
    h = bitstream.unpack(data).header
    assert h.metadata == 0 and data[4] == h.version < 3  # no metadata part: the version without one


def test_a_cmyk_profile_is_applied_not_attached(tmp_path):
    img = Image.fromarray(natural_image(16, 16, seed=1)).convert("CMYK")
    c = imageio.canonicalize(img)
    assert c.icc is None


@pytest.mark.parametrize("model, version", [("factorized-gdn", 1),  # one latent part, a whole quality
                                            ("checkerboard-gdn", 2)])  # three latent parts
def test_files_without_metadata_keep_the_old_versions(tmp_path, model, version):
    img = Image.fromarray(natural_image(24, 40, seed=11))
    assert imgcodec.encode(img, model=model)[4] == version
    tagged = img.copy()
    tagged.info["icc_profile"] = swapped_profile()
    assert imgcodec.encode(tagged, model=model)[4] == 3
    assert imgcodec.encode(tagged, model=model, metadata="none")[4] == version


@pytest.mark.parametrize("name, version, model", [("v1-factorized-gdn-40x24.bin", 1, "factorized-gdn"),
                                                  ("v2-hyperprior-gdn-40x24.bin", 2, "hyperprior-gdn")])
def test_files_of_the_older_versions_still_decode(name, version, model):
    """Files written before version 3 existed (kept in tests/data) parse and decode unchanged."""
    data = (DATA / name).read_bytes()
    h = bitstream.unpack(data).header
    assert data[4] == version and h.model == model and (h.width, h.height) == (40, 24) and h.metadata == 0
    loaded = store.default_store().load_shipped(model, store.default_store().load_config(model).from_stored(h.quality))
    if bytes.fromhex(loaded.sha256)[:8] != h.weights:
        pytest.skip(f"the installed weights of {model} are not the ones this file was made with")
    img = imgcodec.decode(data)
    assert img.size == (40, 24) and img.mode == "RGB" and "icc_profile" not in img.info
    assert imgcodec.encode(Image.fromarray(natural_image(24, 40, seed=11)), model=model) == data


def test_corrupt_metadata_is_a_bitstream_error():
    img = Image.fromarray(natural_image(16, 16, seed=2))
    img.info["icc_profile"] = swapped_profile()
    s = bitstream.unpack(imgcodec.encode(img))
    parts = list(s.parts)
    parts[-1] = b"not zlib"
    forged = bitstream.pack(s.header, parts)
    with pytest.raises(imgcodec.BitstreamError, match="corrupt icc metadata"):
        imgcodec.decode(forged)
    bomb = bitstream.pack(s.header, parts[:-1] + [__import__("zlib").compress(bytes(bitstream.MAX_METADATA_BYTES + 10))])
    with pytest.raises(imgcodec.BitstreamError, match="corrupt icc metadata"):
        imgcodec.decode(bomb)


def test_large_xmp_and_icc_in_a_png_output_read_back(capsys, tmp_path):
    """Pillow inflates at most 1 MiB of a PNG text or profile chunk: a 2 MB XMP goes into a decoded
    PNG uncompressed, so Pillow and ``imgcodec encode`` read the PNG back; a 4 MB ICC profile, which
    a PNG must compress, is refused for .png in one line (no file) and kept by .tiff."""
    xmp = XMP[:-len(b"</x:xmpmeta>")] + b"<!--" + b"a" * (2 << 20) + b"--></x:xmpmeta>"
    img = Image.fromarray(natural_image(16, 24, seed=4))
    img.info["xmp"] = xmp
    (tmp_path / "x.bin").write_bytes(imgcodec.encode(img, model="factorized-gdn"))
    assert run(capsys, "decode", tmp_path / "x.bin", tmp_path / "x.png")[0] == 0
    with Image.open(tmp_path / "x.png") as back:
        back.load()
        assert back.info["xmp"] == xmp
    assert run(capsys, "encode", tmp_path / "x.png", tmp_path / "again.bin")[0] == 0
    assert imgcodec.decode(tmp_path / "again.bin").info["xmp"] == xmp

    icc = swapped_profile() + bytes(4 << 20)  # an RGB profile of 4 MB, kept as it is
    img = Image.fromarray(natural_image(16, 24, seed=4))
    img.info["icc_profile"] = icc
    (tmp_path / "i.bin").write_bytes(imgcodec.encode(img, model="factorized-gdn"))
    code, _, err = run(capsys, "decode", tmp_path / "i.bin", tmp_path / "i.png")
    assert code == 1 and err.count("\n") == 1 and "ICC profile of" in err and ".tiff" in err, err
    assert not (tmp_path / "i.png").exists()
    assert run(capsys, "decode", tmp_path / "i.bin", tmp_path / "i.tif")[0] == 0
    with Image.open(tmp_path / "i.tif") as back:
        assert back.info["icc_profile"] == icc


def test_a_malformed_exif_block_is_left_out_of_a_tiff(capsys, tmp_path):
    """TIFF parses EXIF into its own tags and cannot hold a malformed block: the TIFF is written
    without it and a note says so; a PNG keeps the block as it is."""
    src = tmp_path / "b.jpg"
    exif = b"Exif\0\0" + b"\0" * 16
    Image.new("RGB", (16, 16)).save(src, exif=exif)
    assert run(capsys, "encode", src, tmp_path / "b.bin")[0] == 0
    code, _, err = run(capsys, "decode", tmp_path / "b.bin", tmp_path / "b.tif")
    assert code == 0 and err.count("\n") == 1 and err.startswith(f"imgcodec: note: {tmp_path / 'b.tif'}: ")
    assert "EXIF block is malformed" in err and "left out" in err
    with Image.open(tmp_path / "b.tif") as back:
        back.load()
        assert back.size == (16, 16) and "exif" not in back.info
    assert run(capsys, "decode", tmp_path / "b.bin", tmp_path / "b.png")[0] == 0
    assert Image.open(tmp_path / "b.png").info["exif"] == exif
