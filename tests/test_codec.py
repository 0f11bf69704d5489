"""End-to-end coding through the Python API with the shipped weights."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

import imgcodec
from imgcodec.codec import api as codec
from imgcodec.codec import tensors
from imgcodec.errors import BitstreamError, InputError, ModelError
from imgcodec.format import bitstream
from imgcodec.models import store

from conftest import natural_image

MODEL = codec.DEFAULT_MODEL


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * math.log10(255**2 / max(mse, 1e-12))


@pytest.fixture(scope="module")
def default_quality() -> int:
    return store.default_store().load_config(MODEL).default_quality


def test_default_quality_is_shipped(default_quality):
    assert default_quality in store.default_store().shipped_qualities(MODEL)


@pytest.mark.parametrize("h,w", [(1, 1), (7, 13), (129, 257), (16, 16), (17, 33)])
def test_round_trip_sizes(h, w):
    arr = natural_image(h, w, seed=h + w)
    data = imgcodec.encode(Image.fromarray(arr))
    out = imgcodec.decode(data)
    assert out.size == (w, h) and out.mode == "RGB"
    if h * w >= 64 * 64:
        assert psnr(np.asarray(out), arr) > 20


def test_decoder_output_is_exactly_the_encoders_reconstruction(default_quality):
    """The bitstream decodes to exactly what the encoder reconstructed (lossless latents)."""
    arr = natural_image(70, 90, seed=3)
    loaded = store.default_store().load_shipped(MODEL, default_quality)
    parts = codec.compress_latents(loaded.model, arr)
    decoded = codec.decompress_latents(loaded.model, parts, 70, 90)
    with torch.inference_mode():
        x = tensors.pad_image(tensors.array_to_tensor(arr), 80, 96)
        expected = tensors.tensor_to_array(loaded.model.reconstruct(x)[..., :70, :90])
    assert np.array_equal(decoded, expected)


def test_header_fields(default_quality):
    arr = natural_image(33, 47)
    data = imgcodec.encode(Image.fromarray(arr))
    s = bitstream.unpack(data)
    loaded = store.default_store().load_shipped(MODEL, default_quality)  # the checkpoint the manifest names, verified
    assert s.header.model == MODEL
    assert s.header.quality == default_quality
    assert s.header.weights == bytes.fromhex(loaded.sha256)[:8]
    assert (s.header.width, s.header.height, s.header.mode) == (47, 33, "RGB")
    assert len(s.parts) == s.header.latent_parts == loaded.model.latent_parts and s.size == len(data)


def test_header_fields_of_the_factorized_model():
    """One checkpoint per quality, one latent part: a version-1 file.  Quality 4 is λ 0.0067 of the
    common scale, the third λ of factorized-gdn's ladder: the header holds that position, 3, and the
    weights are those of the manifest's entry 3 (factorized-gdn-q3.safetensors)."""
    data = imgcodec.encode(Image.fromarray(natural_image(33, 47)), model="factorized-gdn", quality=4)
    s = bitstream.unpack(data)
    entry = store.default_store().manifest_entry("factorized-gdn", 4)
    assert (entry["quality"], entry["file"]) == (3, "factorized-gdn-q3.safetensors")
    assert data[4] == 1 and s.header.model == "factorized-gdn" and s.header.quality == 3
    assert s.header.weights == bytes.fromhex(entry["sha256"])[:8]
    assert len(s.parts) == 1 and s.size == len(data)


def test_deterministic_bytes():
    img = Image.fromarray(natural_image(64, 80, seed=5))
    assert imgcodec.encode(img) == imgcodec.encode(img)


@pytest.mark.parametrize("mode", ["L", "RGBA", "LA", "P", "CMYK", "I;16", "1"])
def test_input_modes(mode):
    arr = natural_image(40, 56, seed=7)
    base = Image.fromarray(arr)
    alpha = Image.fromarray(np.tile(np.arange(56, dtype=np.uint8) * 4, (40, 1)), "L")
    if mode == "RGBA":
        img = base.copy()
        img.putalpha(alpha)
    elif mode == "LA":
        img = base.convert("L")
        img.putalpha(alpha)
    elif mode == "I;16":
        img = Image.fromarray(np.asarray(base.convert("L")).astype(np.uint16) * 257)
    else:
        img = base.convert(mode)
    out = imgcodec.decode(imgcodec.encode(img))
    expected_mode = {"L": "L", "1": "L", "I;16": "L", "RGBA": "RGBA", "LA": "LA"}.get(mode, "RGB")
    assert out.mode == expected_mode and out.size == img.size
    if mode in ("RGBA", "LA"):
        assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(alpha))


@pytest.mark.parametrize("fmt,ext", [("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp"), ("TIFF", "tiff"), ("BMP", "bmp")])
def test_file_formats(tmp_path, fmt, ext):
    path = tmp_path / f"in.{ext}"
    Image.fromarray(natural_image(48, 64)).save(path, format=fmt)
    out = imgcodec.decode(imgcodec.encode(path))
    assert out.size == (64, 48)


def test_errors():
    img = Image.fromarray(natural_image(16, 16))
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        imgcodec.encode(img, model="nope")
    with pytest.raises(ModelError, match="quality 99 is out of range"):
        imgcodec.encode(img, quality=99)
    top = store.default_store().load_config(MODEL).qualities.stop - 1
    with pytest.raises(ModelError, match=f"valid: 1..{top}"):
        imgcodec.encode(img, quality=top + 1)
    with pytest.raises(ModelError, match="integer"):  # a model with a checkpoint per quality
        imgcodec.encode(img, model="factorized-gdn", quality=2.5)
    if store.default_store().load_config(MODEL).continuous:
        with pytest.raises(ModelError, match=f"valid: 1..{top}"):
            imgcodec.encode(img, quality=top + 0.01)
        with pytest.raises(ModelError, match="at most two decimals"):
            imgcodec.encode(img, quality=2.555)
        assert bitstream.unpack(imgcodec.encode(img, quality=2.5)).header.quality == 2.5
    with pytest.raises(InputError):
        imgcodec.encode("/nonexistent/x.png")
    with pytest.raises(BitstreamError):
        imgcodec.decode(b"not a codec file")


def test_file_made_with_other_weights_is_refused():
    data = bytearray(imgcodec.encode(Image.fromarray(natural_image(16, 16)))[:-4])
    L = data[5]
    data[6 + L] ^= 0xFF  # another checkpoint's hash prefix
    import struct
    import zlib

    data += struct.pack(">I", zlib.crc32(bytes(data)))
    with pytest.raises(ModelError, match="other weights"):
        imgcodec.decode(bytes(data))


def test_kodak_default_quality_beats_png(kodak_dir, tmp_path):
    """The issue's acceptance check: smaller than PNG and well above 25 dB at the default quality."""
    path = kodak_dir / "kodim23.png"
    data = imgcodec.encode(path)
    out = np.asarray(imgcodec.decode(data))
    ref = np.asarray(Image.open(path).convert("RGB"))
    assert len(data) < path.stat().st_size
    assert psnr(out, ref) > 25
