"""imgcodec files in Pillow (``codec/pillow_plugin.py``): round trips, Pillow's own exceptions for
bad files, bounded memory at ``Image.open``, the metadata on ``im.info``, and the application's
``Image.MAX_IMAGE_PIXELS`` left as it set it."""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms, UnidentifiedImageError

import imgcodec
from imgcodec.errors import BitstreamError, CodecError, ModelError
from imgcodec.format import bitstream
from imgcodec.models.store import DEFAULT_MODEL, default_store

from conftest import SAMPLE, natural_image, peak_python_bytes, run_main

XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
MODEL = "factorized-gdn"  # a small model for the files of these tests


@pytest.fixture(scope="module")
def small_file() -> bytes:
    return imgcodec.encode(natural_image(16, 24, seed=3), model=MODEL, quality=2)


def _resealed(data: bytes, header: bitstream.Header | None = None, parts=None) -> bytes:
    """``data`` repacked with another header or parts, with a correct CRC32 (a forgery, not damage)."""
    s = bitstream.unpack(data)
    return bitstream.pack(header or s.header, list(parts or s.parts))


def test_pillow_round_trip(tmp_path):
    photo = Image.open(SAMPLE).convert("RGB").crop((0, 0, 80, 48))
    path = tmp_path / "x.bin"
    path.write_bytes(imgcodec.encode(photo, quality=3))
    with Image.open(path) as im:  # by its magic bytes
        assert (im.format, im.size, im.mode) == ("IMGCODEC", (80, 48), "RGB")
        assert im.info["quality"] == 3 and im.info["model"] == DEFAULT_MODEL
        assert np.array_equal(np.asarray(im), np.asarray(imgcodec.decode(path.read_bytes())))
    photo.save(tmp_path / "x.imgc", format="IMGCODEC", quality=4)
    data = (tmp_path / "x.imgc").read_bytes()
    assert data == imgcodec.encode(photo, quality=4)
    photo.convert("LA").save(tmp_path / "gray.bin", quality=2)  # the format from the extension
    with Image.open(tmp_path / "gray.bin") as im:
        assert (im.format, im.mode, im.info["quality"]) == ("IMGCODEC", "LA", 2)
        im.load()
        assert np.array_equal(np.asarray(im)[:, :, 1], np.asarray(photo.convert("LA"))[:, :, 1])  # alpha: lossless
    buf = io.BytesIO()
    photo.save(buf, format="IMGCODEC", target_size=len(data))
    assert len(buf.getvalue()) <= len(data)
    if default_store().load_config(DEFAULT_MODEL).continuous:  # a fractional quality, in hundredths
        photo.save(tmp_path / "f.imgc", quality=4.25)
        with Image.open(tmp_path / "f.imgc") as im:
            assert im.info["quality"] == 4.25
        assert (tmp_path / "f.imgc").read_bytes() == imgcodec.encode(photo, quality=4.25)


def test_bad_files_raise_what_pillow_callers_catch(tmp_path, small_file):
    """Not a sound file: ``UnidentifiedImageError`` (an ``OSError``) at open; a damaged payload or
    weights that are not installed: ``OSError`` at load; the ``CodecError`` saying why is the cause."""
    damaged = bytearray(small_file)
    damaged[-1] ^= 0xFF
    cases = {"truncated": small_file[:-9], "crc": bytes(damaged), "huge": None}
    header = bitstream.unpack(small_file).header
    cases["huge"] = _resealed(small_file, dataclasses.replace(header, width=16384, height=16384))  # over the cap
    for name, data in cases.items():
        (tmp_path / f"{name}.bin").write_bytes(data)
        with pytest.raises(UnidentifiedImageError) as info:
            Image.open(tmp_path / f"{name}.bin")
        assert isinstance(info.value.__cause__, BitstreamError), name
    parts = bitstream.unpack(small_file).parts
    payload = bytes([parts[0][0] ^ 0x40]) + parts[0][1:]
    loads = {"payload": _resealed(small_file, parts=[payload, *parts[1:]]),
             "model": _resealed(small_file, dataclasses.replace(header, model="no-such-model"))}
    for name, data in loads.items():
        (tmp_path / f"{name}.bin").write_bytes(data)
        with Image.open(tmp_path / f"{name}.bin") as im:  # the header is sound
            assert im.size == (24, 16)
            with pytest.raises(OSError) as info:
                im.load()
        assert not isinstance(info.value, CodecError) and isinstance(info.value.__cause__, CodecError), name
    with pytest.raises(ValueError) as info:  # a bad save option is a ValueError, as Pillow's own
        Image.new("RGB", (8, 8)).save(io.BytesIO(), format="IMGCODEC", model=MODEL, quality=99)
    assert isinstance(info.value.__cause__, ModelError)
    Image.fromarray(natural_image(8, 8)).save(tmp_path / "ok.png")
    assert Image.open(tmp_path / "ok.png").format == "PNG"  # other formats are untouched


def test_open_and_info_read_a_padded_file_in_bounded_memory(capsys, tmp_path, small_file):
    """A sound header padded to 256 MiB (a sparse file): refused by ``Image.open``, ``imgcodec info``
    and ``imgcodec decode`` for its length, without reading it (a whole read would cost 256 MiB)."""
    path = tmp_path / "padded.bin"
    path.write_bytes(small_file)
    os.truncate(path, 256 << 20)

    def pillow():
        with pytest.raises(UnidentifiedImageError, match="lengths do not match the file size"):
            Image.open(path)

    assert peak_python_bytes(pillow) < 4 << 20
    for command in ("info", "decode"):
        out = [path] + ([tmp_path / "o.png"] if command == "decode" else [])
        codes = []
        assert peak_python_bytes(lambda: codes.append(run_main(capsys, command, *out))) < 4 << 20
        code, _, err = codes[0]
        assert code == 1 and err.count("\n") == 1 and "lengths do not match the file size" in err, err
    assert not (tmp_path / "o.png").exists()


def test_decode_reads_a_padded_file_in_bounded_memory(tmp_path, small_file):
    """``imgcodec.decode`` of a path or a file object reads as ``Image.open`` does: a sound header
    padded to 1 GiB (a sparse file) is refused for its length, the padding unread; the sound file
    decodes from a path and from a file object to the pixels of its bytes."""
    path = tmp_path / "padded.bin"
    path.write_bytes(small_file)
    expected = np.asarray(imgcodec.decode(small_file))
    assert np.array_equal(np.asarray(imgcodec.decode(path)), expected)
    with open(path, "rb") as f:
        assert np.array_equal(np.asarray(imgcodec.decode(f)), expected)
    os.truncate(path, 1 << 30)
    for source in (path, str(path), "file object"):
        def padded():
            with pytest.raises(BitstreamError, match="lengths do not match the file size"):
                if source == "file object":
                    with open(path, "rb") as f:
                        imgcodec.decode(f)
                else:
                    imgcodec.decode(source)

        assert peak_python_bytes(padded) < 4 << 20, source


def test_open_checks_the_crc_of_a_large_file_in_blocks(tmp_path, small_file):
    """A CRC-valid file whose XMP part is 64 MiB of zeros (a forgery: no metadata part is that long):
    ``Image.open`` reads the CRC32 in blocks and refuses the part by its length, without holding it."""
    s = bitstream.unpack(small_file)
    path = tmp_path / "big.bin"
    path.write_bytes(bitstream.pack(dataclasses.replace(s.header, metadata=0b100), [*s.parts, bytes(64 << 20)]))

    def pillow():
        with pytest.raises(UnidentifiedImageError, match="corrupt xmp metadata"):
            Image.open(path)

    assert peak_python_bytes(pillow) < 4 << 20


def test_open_gives_the_metadata_decode_gives(tmp_path):
    """``im.info`` after ``Image.open`` holds the ICC profile, EXIF and XMP of ``imgcodec.decode``,
    so saving the opened image as PNG keeps the profile (Pillow takes it from ``info``)."""
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    src = tmp_path / "p.jpg"
    Image.fromarray(natural_image(24, 32, seed=2)).save(src, icc_profile=icc, exif=exif.tobytes(), xmp=XMP)
    path = tmp_path / "p.bin"
    path.write_bytes(imgcodec.encode(src, model=MODEL))
    decoded = imgcodec.decode(path)
    with Image.open(path) as im:
        for key in ("icc_profile", "exif", "xmp"):
            assert im.info[key] == decoded.info[key], key
        im.load()
        im.save(tmp_path / "y.png")
    with Image.open(tmp_path / "y.png") as back:
        assert back.info["icc_profile"] == icc


def test_the_applications_pixel_limit_is_kept(tmp_path, small_file):
    """Loading imgcodec files neither raises nor lowers ``Image.MAX_IMAGE_PIXELS``; the encoder
    refuses inputs above the lower of the application's limit and its own."""
    import struct

    (tmp_path / "x.bin").write_bytes(small_file)
    ihdr = struct.pack(">IIBBBBB", 3000, 3000, 8, 2, 0, 0, 0)  # a 9 MP PNG header, no pixels

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    (tmp_path / "big.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    code = (
        "import sys\n"
        "from PIL import Image\n"
        "Image.MAX_IMAGE_PIXELS = 1_000_000\n"
        "import imgcodec\n"
        "from imgcodec.codec import imageio\n"
        "Image.open('x.bin').load()\n"
        "print(Image.MAX_IMAGE_PIXELS)\n"
        "try:\n"
        "    Image.open('big.png')\n"
        "except Image.DecompressionBombError:\n"
        "    print('refused by Pillow')\n"
        "try:\n"
        "    imgcodec.encode('big.png')\n"
        "except imgcodec.CodecError as exc:\n"
        "    print(exc)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.stdout.splitlines() == ["1000000", "refused by Pillow",
                                     "big.png has more than 1000000 pixels (decompression bomb guard)"], r.stderr


def test_registration_imports_neither_pillow_nor_torch():
    code = (
        "import sys\n"
        "import imgcodec\n"
        "print('PIL' in sys.modules, 'torch' in sys.modules)\n"
        "from PIL import Image\n"
        "print('IMGCODEC' in Image.OPEN, Image.registered_extensions()['.imgc'], 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "False", "True", "IMGCODEC", "False"], out.stderr
    code = "from PIL import Image\nimport imgcodec\nprint('IMGCODEC' in Image.OPEN)\n"  # Pillow first
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True"], out.stderr
