"""Reading every kind of Pillow input into the codec's canonical form, and writing outputs."""

import numpy as np
import pytest
from PIL import Image

from imgcodec.codec.imageio import canonicalize, open_image, read_image, save_image
from imgcodec.errors import InputError, OutputError

from conftest import natural_image


def test_rgb_passthrough():
    arr = natural_image(9, 11)
    c = canonicalize(Image.fromarray(arr))
    assert c.mode == "RGB" and c.alpha is None
    assert np.array_equal(c.rgb, arr)


def test_gray_is_replicated_and_restored_as_L():
    g = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    c = canonicalize(Image.fromarray(g, "L"))
    assert c.mode == "L" and c.gray
    assert np.array_equal(c.rgb[:, :, 0], g) and np.array_equal(c.rgb[:, :, 2], g)


def test_16bit_depth_is_reduced_to_8():
    g = (np.arange(6, dtype=np.uint16).reshape(2, 3) * 13000)
    c = canonicalize(Image.fromarray(g))  # mode I;16
    assert c.mode == "L"
    assert np.array_equal(c.rgb[:, :, 0], np.rint(g / 257).astype(np.uint8))


def test_alpha_is_kept_exactly():
    rgba = np.dstack([natural_image(5, 6), np.arange(30, dtype=np.uint8).reshape(5, 6) * 8])
    c = canonicalize(Image.fromarray(rgba, "RGBA"))
    assert c.mode == "RGBA"
    assert np.array_equal(c.alpha, rgba[:, :, 3])
    la = canonicalize(Image.fromarray(rgba[:, :, :2].copy(), "LA"))
    assert la.mode == "LA"


def test_palette_and_cmyk_become_rgb():
    p = Image.fromarray(natural_image(8, 8)).convert("P")
    assert canonicalize(p).mode == "RGB"
    p.info["transparency"] = 0
    assert canonicalize(p).mode == "RGBA"
    cmyk = Image.new("CMYK", (4, 3), (0, 255, 255, 0))  # pure red
    c = canonicalize(cmyk)
    assert c.mode == "RGB" and tuple(c.rgb[0, 0]) == (255, 0, 0)


def test_exif_orientation_applied(tmp_path):
    arr = natural_image(10, 20)
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif)
    c = read_image(path)
    assert c.size == (10, 20)


@pytest.mark.parametrize("content,message", [(None, "no such file"), (b"", "is empty"), (b"hello world", "not an image")])
def test_bad_inputs(tmp_path, content, message):
    path = tmp_path / "in.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        open_image(path)


def test_truncated_image(tmp_path):
    path = tmp_path / "t.png"
    Image.fromarray(natural_image(64, 64)).save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InputError, match="truncated or corrupt"):
        open_image(path)


@pytest.mark.parametrize("ext", [".png", ".webp", ".tiff", ".bmp"])
def test_save_formats_are_lossless(tmp_path, ext):
    arr = natural_image(7, 13)
    path = tmp_path / f"o{ext}"
    save_image(Image.fromarray(arr), path)
    assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), arr)


def test_save_refuses_unknown_extension_and_existing(tmp_path):
    img = Image.fromarray(natural_image(4, 4))
    with pytest.raises(OutputError, match="output format"):
        save_image(img, tmp_path / "o.xyz")
    (tmp_path / "o.png").write_bytes(b"keep")
    with pytest.raises(OutputError, match="exists"):
        save_image(img, tmp_path / "o.png")
    assert (tmp_path / "o.png").read_bytes() == b"keep"
    save_image(img, tmp_path / "o.png", force=True)
    assert (tmp_path / "o.png").read_bytes() != b"keep"
