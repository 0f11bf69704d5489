"""Classical baselines through Pillow: settings applied, real file sizes, the same schema, errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from test_evaluate import cli_error

from imgcodec import CodecError, InputError
from imgcodec.eval import baselines as bl
from imgcodec.eval.evaluate import psnr
from imgcodec.eval.results import load

from conftest import natural_image, run_cli


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    Image.fromarray(natural_image(40, 48, seed=1)).save(d / "a.png")
    Image.fromarray(natural_image(32, 56, seed=2)).convert("L").save(d / "b.png")  # gray is coded as RGB
    return d


def available(name: str) -> bl.Baseline:
    base = bl.BASELINES[name]
    try:
        base.check_available()
    except CodecError as exc:
        pytest.skip(str(exc))
    return base


@pytest.mark.parametrize("name", sorted(bl.BASELINES))
def test_every_codec_round_trips(name):
    base = available(name)
    rgb = natural_image(24, 40, seed=4)
    data = base.encode(rgb, base.qualities[len(base.qualities) // 2])
    out = base.decode(data)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert psnr(rgb, out) > 20
    settings = base.settings()
    assert settings["options"] == base.options and settings["pillow"] and settings["quality_knob"]


def test_settings_are_applied():
    rgb = natural_image(64, 64, seed=5)
    jpeg, jpeg444 = bl.get("jpeg"), bl.get("JPEG444")
    with Image.open(io.BytesIO(jpeg.encode(rgb, 75))) as im:
        assert im.layer[0][1:3] == (2, 2)  # luma sampled 2×2: chroma 4:2:0
    with Image.open(io.BytesIO(jpeg444.encode(rgb, 75))) as im:
        assert im.layer[0][1:3] == (1, 1)
    assert bl.get("webp").save_options(50) == {"method": 6, "lossless": False, "quality": 50}
    j2k = bl.get("jpeg2000")
    data = available("jpeg2000").encode(rgb, 24)
    assert data[:4] == b"\xff\x4f\xff\x51"  # a raw codestream, no JP2 boxes
    assert abs(8 * len(data) / rgb[..., 0].size - 1.0) < 0.2  # ratio 24 of 24-bit RGB ≈ 1 bpp
    assert j2k.save_options(24)["quality_layers"] == [24.0]


def test_baseline_on_two_tiny_images(folder):
    res = bl.evaluate_baseline("jpeg", folder, [30, 80], progress=False)
    assert res.kind == "classical" and res.name == "jpeg" and res.settings["options"]["subsampling"] == "4:2:0"
    assert res.results["quality"] == [30, 80] and len(res.images) == 4
    for row in res.images:
        rgb = np.asarray(Image.open(folder / row["image"]).convert("RGB"))
        data = bl.get("jpeg").encode(rgb, row["quality"])
        assert row["bytes"] == len(data)
        assert row["bpp"] == pytest.approx(8 * len(data) / (row["width"] * row["height"]))
        assert row["psnr-rgb"] == pytest.approx(psnr(rgb, bl.Baseline.decode(data)))
        assert row["ms-ssim-rgb"] is None  # smaller than MS-SSIM's 161 pixels
    assert res.results["bpp"][0] < res.results["bpp"][1]
    assert res.results["psnr-rgb"][0] < res.results["psnr-rgb"][1]


def test_unknown_codec_and_qualities():
    with pytest.raises(InputError, match="unknown codec 'bpg' .known: jpeg, jpeg444"):
        bl.get("bpg")
    assert bl.parse_qualities(()) is None
    assert bl.parse_qualities(("50,10", "90")) == [10, 50, 90]
    assert bl.parse_qualities(("12.5",)) == [12.5]
    for bad in ("x", "-5", "0"):
        with pytest.raises(InputError, match="quality"):
            bl.parse_qualities((bad,))


def test_baseline_command(tmp_path, folder):
    out = tmp_path / "webp.json"
    r = run_cli("baseline", "--codec", "webp", "--qualities", "20,60", "--data", str(folder), "-o", str(out))
    assert r.returncode == 0, r.stderr
    res = load(out)
    assert res.results["quality"] == [20, 60] and res.settings["options"]["method"] == 6
    assert "| 20 |" in r.stdout


@pytest.mark.parametrize("args, data, message", [
    (["--codec", "bpg"], None, "unknown codec 'bpg'"),
    (["--codec", "jpeg", "-q", "abc"], None, "quality must be a number"),
    (["--codec", "jpeg"], "empty", "no images"),
    (["--codec", "jpeg"], "broken", "x.png"),
])
def test_baseline_errors(capsys, tmp_path, folder, args, data, message):
    cli_error(capsys, tmp_path, "baseline", args, data or folder, message)


def test_baseline_error_is_one_line(tmp_path, folder):
    out = tmp_path / "out.json"
    r = run_cli("baseline", "--codec", "bpg", "--data", str(folder), "-o", str(out))
    assert r.returncode == 1 and not out.exists()
    assert r.stderr.strip().count("\n") == 0 and "unknown codec" in r.stderr
