"""Encoding to a target size or bpp: the highest quality whose file fits.

The continuous quality of a tiny gain-unit hyperprior and the discrete qualities of models with one
checkpoint per quality, in a private model store (``hyperprior_home.py``).
"""

from __future__ import annotations

import pytest
from PIL import Image

import imgcodec
from imgcodec.codec import api as codec
from imgcodec.codec.imageio import canonicalize
from imgcodec.codec.ratecontrol import parse_size, search
from imgcodec.errors import CodecError
from imgcodec.format import bitstream

from conftest import ROOT, natural_image, run_main
from hyperprior_home import hp_home, hp_store, one_thread  # noqa: F401 - fixtures

MODEL = "tinyhp"


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.fromarray(natural_image(96, 128, seed=3))


@pytest.mark.parametrize("text,size", [("100KB", 100_000), ("100kb", 100_000), ("1.5MB", 1_500_000),
                                       ("2KiB", 2048), ("1MiB", 1 << 20), ("20000", 20_000), (" 7 b ", 7),
                                       (".5k", 500), ("1G", 10**9)])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "KB", "-1", "1e3", "1XB", "0", "0.4", "one", "1 2"])
def test_parse_size_refuses(text):
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


def test_search_on_a_known_scale():
    grid = list(range(10, 1000, 7))  # the "file" of quality q has q bytes
    for limit in (10, 11, 100, 500, 996, 5000):
        fit = search(grid, lambda q: b"x" * q, limit)
        best = max(q for q in grid if q <= limit)
        assert len(fit.data) <= limit
        assert len(fit.data) >= 0.98 * limit or fit.quality == best
        assert fit.encodes <= 2 + len(grid).bit_length()
    with pytest.raises(CodecError, match="too small: even the lowest quality .10. makes a file of 10 bytes"):
        search(grid, lambda q: b"x" * q, 9)


def _size_at(hp_store, img, quality) -> int:
    return len(imgcodec.encode(img, model=MODEL, quality=quality, store=hp_store))


@pytest.mark.parametrize("fraction", [0.15, 0.3, 0.5, 0.8])
def test_target_size_on_the_continuous_scale(hp_store, photo, fraction):
    """Several targets between the smallest and the largest file: the file fits, within 2 % of the
    target or at the highest quality (in hundredths) that fits."""
    lo, hi = _size_at(hp_store, photo, 1), _size_at(hp_store, photo, 3)
    limit = int(lo + fraction * (hi - lo))
    data = imgcodec.encode(photo, model=MODEL, target_size=limit, store=hp_store)
    q = bitstream.unpack(data).header.quality
    assert len(data) <= limit
    assert len(data) >= 0.98 * limit or _size_at(hp_store, photo, round(q + 0.01, 2)) > limit, (limit, len(data), q)
    assert data == imgcodec.encode(photo, model=MODEL, quality=q, store=hp_store)  # an ordinary file of that quality
    assert imgcodec.decode(data, store=hp_store).size == photo.size


def test_target_bpp_and_the_ends_of_the_scale(hp_store, photo):
    pixels = photo.size[0] * photo.size[1]
    for bpp in (0.2, 0.35):
        data = imgcodec.encode(photo, model=MODEL, target_bpp=bpp, store=hp_store)
        assert 8 * len(data) / pixels <= bpp
    top = imgcodec.encode(photo, model=MODEL, target_size=10**9, store=hp_store)
    assert bitstream.unpack(top).header.quality == 3
    smallest = _size_at(hp_store, photo, 1)
    assert bitstream.unpack(imgcodec.encode(photo, model=MODEL, target_size=smallest, store=hp_store)).header.quality == 1
    with pytest.raises(CodecError, match=f"even the lowest quality .1. makes a file of {smallest} bytes"):
        imgcodec.encode(photo, model=MODEL, target_size=smallest - 1, store=hp_store)


def test_analysis_runs_once_per_search(hp_store, photo, monkeypatch):
    from imgcodec.codec import tiling

    calls = []
    real, limit = tiling.analysis, _size_at(hp_store, photo, 2)
    monkeypatch.setattr(tiling, "analysis", lambda *a, **k: calls.append(1) or real(*a, **k))
    fit = codec.encode_to_target(canonicalize(photo), MODEL, size=limit, store=hp_store)
    assert calls == [1] and fit.encodes >= 3


def test_discrete_qualities(hp_store, photo):
    """A model with one checkpoint per quality: the best shipped quality that fits."""
    sizes = {q: len(imgcodec.encode(photo, model="tinyhp-fixed", quality=q, store=hp_store)) for q in (1, 2)}
    assert sizes[1] < sizes[2]
    for limit, quality in [(sizes[2], 2), (sizes[2] - 1, 1), (sizes[1], 1)]:
        data = imgcodec.encode(photo, model="tinyhp-fixed", target_size=limit, store=hp_store)
        assert bitstream.unpack(data).header.quality == quality and len(data) <= limit
    with pytest.raises(CodecError, match="too small"):
        imgcodec.encode(photo, model="tinyhp-fixed", target_size=sizes[1] - 1, store=hp_store)


def test_target_errors(hp_store, photo):
    with pytest.raises(CodecError, match="not both"):
        imgcodec.encode(photo, model=MODEL, quality=2, target_size=1000, store=hp_store)
    with pytest.raises(CodecError, match="one target"):
        imgcodec.encode(photo, model=MODEL, target_size=1000, target_bpp=0.5, store=hp_store)
    for bpp in (0, -1.0, float("nan")):
        with pytest.raises(CodecError, match="positive"):
            imgcodec.encode(photo, model=MODEL, target_bpp=bpp, store=hp_store)


def test_command_line(hp_home, hp_store, photo, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("IMGCODEC_HOME", str(hp_home))  # the command line's store (run here in-process)
    src = tmp_path / "in.png"
    photo.save(src)
    limit = (_size_at(hp_store, photo, 1) + _size_at(hp_store, photo, 3)) // 2
    code, out, _ = run_main(capsys, "encode", src, tmp_path / "a.bin", "--model", MODEL, "--target-size", f"{limit}B")
    assert code == 0 and "quality" in out and "bytes" in out
    assert (tmp_path / "a.bin").stat().st_size <= limit
    other = tmp_path / "other.png"
    Image.fromarray(natural_image(64, 64, seed=8)).save(other)
    code, out, _ = run_main(capsys, "encode", src, other, "-o", tmp_path / "many", "--model", MODEL, "--target-bpp", "0.3")
    assert code == 0 and out.count("quality") == 2  # one line per file: the quality the search chose
    for name in ("in", "other"):
        data = (tmp_path / "many" / f"{name}.bin").read_bytes()
        h = bitstream.unpack(data).header
        assert 8 * len(data) / (h.width * h.height) <= 0.3
    for args, msg in [
        (("--target-size", "12XB"), "not a size"),
        (("--target-size", "1KB", "-q", "2"), "give one of"),
        (("--target-size", "10"), "too small"),
    ]:
        code, _, err = run_main(capsys, "encode", src, tmp_path / "b.bin", "--model", MODEL, *args)
        assert code != 0 and msg in err, err
    assert not (tmp_path / "b.bin").exists()


@pytest.mark.parametrize("model", [None, "checkerboard-gdn"], ids=["default", "checkerboard-gdn"])
@pytest.mark.parametrize("fraction", [0.25, 0.7])
def test_target_size_with_the_shipped_continuous_models(model, fraction):
    """The default model and the narrower one on the bundled photo: the file fits within 2 % of the
    target (or is of the highest quality, in hundredths, that fits), and decodes to the photo's size."""
    from imgcodec.models import store

    photo = Image.open(ROOT / "data" / "sample.png")
    lo, hi = (len(imgcodec.encode(photo, model=model, quality=q)) for q in (2, 6))
    limit = int(lo + fraction * (hi - lo))
    data = imgcodec.encode(photo, model=model, target_size=limit)
    header = bitstream.unpack(data).header
    assert header.model == (model or store.DEFAULT_MODEL)
    assert len(data) <= limit
    assert len(data) >= 0.98 * limit or len(
        imgcodec.encode(photo, model=model, quality=round(header.quality + 0.01, 2))) > limit
    assert imgcodec.decode(data).size == photo.size
