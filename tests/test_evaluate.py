"""Evaluation: metrics against hand-computed values, the measuring loop, the learned codec on real
bitstreams (shipped weights and a checkpoint file), and the `eval` command's errors."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from PIL import Image

from imgcodec import InputError, ModelError
from imgcodec.eval import evaluate as ev
from imgcodec.eval.results import load

from conftest import SAMPLE, natural_image, run_cli, run_main


def test_psnr_of_a_known_perturbation():
    a = natural_image(20, 30, seed=1)
    a = np.clip(a, 10, 245)
    b = a + np.uint8(4)  # every sample off by 4: MSE 16
    assert ev.mse(a, b) == 16.0
    assert ev.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 16))  # 36.0886 dB
    c = a.copy()
    c[0, 0, 0] += 30  # one of 1800 samples off by 30: MSE 900 / 1800 = 0.5
    assert ev.psnr(a, c) == pytest.approx(10 * math.log10(255**2 / 0.5))
    assert ev.psnr(a, a) == math.inf


def test_bpp_of_a_known_byte_count():
    assert ev.bpp(1000, 100, 80) == 1.0
    assert ev.bpp(3, 4, 6) == 1.0
    assert ev.bpp(768 * 512 // 8, 768, 512) == 1.0


def test_ms_ssim_range_and_small_images():
    a = natural_image(168, 170, seed=2)
    assert ev.ms_ssim(a, a) == pytest.approx(1.0)
    noisy = np.clip(a.astype(int) + np.random.default_rng(0).integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    assert 0.5 < ev.ms_ssim(a, noisy) < 0.999
    small = natural_image(160, 300)  # below the 161-pixel minimum of 5-scale MS-SSIM
    assert ev.ms_ssim(small, small) is None


def test_measure_with_a_known_codec():
    img = ev.EvalImage("x.png", np.clip(natural_image(8, 10), 10, 245), "0" * 64)

    def encode(rgb, q):
        return b"\0" * 25  # 25 bytes over 80 pixels: 2.5 bpp

    def decode(data):
        return img.rgb + np.uint8(2)  # MSE 4

    row = ev.measure(img, 7, encode, decode)
    assert row["bytes"] == 25 and row["bpp"] == 2.5 and row["quality"] == 7
    assert row["psnr-rgb"] == pytest.approx(10 * math.log10(255**2 / 4))
    assert row["ms-ssim-rgb"] is None and row["encoding_time"] >= 0 and row["decoding_time"] >= 0
    with pytest.raises(InputError, match="decoded"):
        ev.measure(img, 7, encode, lambda d: img.rgb[:4])


def test_parse_qualities():
    assert ev.parse_qualities(()) is None
    assert ev.parse_qualities(("all",)) is None
    assert ev.parse_qualities(("4", "2,6")) == [2, 4, 6]
    with pytest.raises(ModelError, match="integer"):
        ev.parse_qualities(("high",))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A 176×168 crop of the bundled sample (MS-SSIM defined) and a tiny image (MS-SSIM undefined)."""
    d = tmp_path_factory.mktemp("images")
    with Image.open(SAMPLE) as im:
        im.crop((0, 0, 176, 168)).save(d / "a-sample.png")
    Image.fromarray(natural_image(40, 56, seed=3)).save(d / "b-tiny.png")
    return d


def test_load_images(images, tmp_path):
    ims = ev.load_images(images)
    assert [i.name for i in ims] == ["a-sample.png", "b-tiny.png"]
    assert [i.name for i in ev.load_images(images, limit=1)] == ["a-sample.png"]
    info = ev.dataset_info(images, ims)
    assert info["images"] == 2 and info["pixels"] == 176 * 168 + 40 * 56 and len(info["sha256"]) == 64
    with pytest.raises(InputError, match="no images"):
        ev.load_images(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(InputError, match="broken.png"):
        ev.load_images(tmp_path)


@pytest.fixture(scope="module")
def shipped():
    from imgcodec.models import store

    qualities = store.default_store().shipped_qualities("factorized-gdn")
    if not qualities:
        pytest.skip("no shipped weights")
    return qualities


@pytest.fixture(scope="module")
def shipped_result(images, shipped):
    return ev.evaluate_model(images, model="factorized-gdn", qualities=shipped[:1], progress=False)


def test_eval_learned_model_uses_real_bitstreams(images, shipped, shipped_result):
    import imgcodec
    from imgcodec.codec.imageio import load_rgb_array

    q = shipped[0]
    res = shipped_result
    assert res.kind == "learned" and res.results["quality"] == [q]
    assert res.settings["weights"][str(q)]["sha256"]
    row = res.images[0]
    assert row["image"] == "a-sample.png"
    # The bytes are those of the real file the codec writes, and the PSNR that of decoding it.
    data = imgcodec.encode(images / "a-sample.png", quality=q, model="factorized-gdn")
    assert row["bytes"] == len(data) and row["bpp"] == pytest.approx(8 * len(data) / (176 * 168))
    decoded = np.asarray(imgcodec.decode(data).convert("RGB"))
    assert row["psnr-rgb"] == pytest.approx(ev.psnr(load_rgb_array(images / "a-sample.png"), decoded))
    assert 0 < row["ms-ssim-rgb"] < 1 and row["ms-ssim-rgb-db"] > 0
    assert res.images[1]["ms-ssim-rgb"] is None and res.results["ms-ssim-rgb"] == [None]
    assert res.results["bpp"][0] == pytest.approx((row["bpp"] + res.images[1]["bpp"]) / 2)


def test_eval_checkpoint_file_matches_shipped(images, shipped, shipped_result, tmp_path):
    from imgcodec.models import store

    entry = store.default_store().manifest_entry("factorized-gdn", shipped[0])
    ckpt = tmp_path / "final.safetensors"
    shutil.copy(store.default_store().checkpoints / entry["file"], ckpt)
    a = shipped_result
    b = ev.evaluate_model(images, checkpoint=ckpt, limit=1, progress=False)
    assert b.settings["checkpoint"] == str(ckpt) and b.name.endswith("(final)")
    assert b.images[0]["bytes"] == a.images[0]["bytes"]
    assert b.images[0]["psnr-rgb"] == pytest.approx(a.images[0]["psnr-rgb"])
    with pytest.raises(ModelError, match="one rate point"):
        ev.evaluate_model(images, checkpoint=ckpt, qualities=[1, 2])
    with pytest.raises(ModelError, match="one of them"):
        ev.evaluate_model(images)


def test_eval_command(images, shipped, tmp_path):
    out = tmp_path / "m.json"
    r = run_cli("eval", "--model", "factorized-gdn", "--data", str(images), "--limit", "1", "-o", str(out))
    assert r.returncode == 0, r.stderr
    res = load(out)
    assert res.results["quality"] == shipped and res.dataset["images"] == 1
    assert "| quality | bpp |" in r.stdout


def cli_error(capsys, tmp_path, command, args, data, message):
    """Run a results-writing command in-process on a bad input: exit 1, one line naming the problem,
    no output file (not even a temporary one).  ``data``: a folder, or 'empty', 'broken', 'missing'."""
    out = tmp_path / "out.json"
    if data in ("empty", "broken", "missing"):
        folder = tmp_path / data
        if data != "missing":
            folder.mkdir()
        if data == "broken":
            (folder / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))  # cut short
        data = folder
    code, _, err = run_main(capsys, command, *args, "--data", data, "-o", out)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("imgcodec: error:") and message in lines[0], err
    assert not out.exists() and list(tmp_path.glob(".out.json*")) == []


@pytest.mark.parametrize("args, data, message", [
    (["--model", "no-such-model"], None, "unknown model"),
    (["--model", "factorized-gdn", "-q", "99"], None, "out of range"),
    (["--model", "factorized-gdn", "-q", "best"], None, "integer or 'all'"),
    (["--checkpoint", "missing.safetensors"], None, "cannot read checkpoint"),
    (["--model", "factorized-gdn", "--checkpoint", "x"], None, "one of them"),
    (["--model", "factorized-gdn"], "empty", "no images"),
    (["--model", "factorized-gdn"], "broken", "x.png"),
    (["--model", "factorized-gdn"], "missing", "is not a folder"),
])
def test_eval_errors(capsys, tmp_path, images, args, data, message):
    cli_error(capsys, tmp_path, "eval", args, data or images, message)


def test_eval_refuses_existing_output_before_work(capsys, tmp_path, images):
    out = tmp_path / "out.json"
    out.write_text("keep")
    code, _, err = run_main(capsys, "eval", "--model", "factorized-gdn", "--data", images, "-o", out)
    assert code == 1 and "exists" in err and out.read_text() == "keep"


def test_format_summary():
    from imgcodec.eval.results import Results

    res = Results("m", "d", "learned", {}, {"name": "k", "images": 1}, [
        {"image": "a", "width": 1, "height": 1, "quality": 3, "bytes": 1, "bpp": 8.0, "psnr-rgb": 30.0,
         "ms-ssim-rgb": None, "ms-ssim-rgb-db": None, "encoding_time": 0.1, "decoding_time": 0.2}])
    text = ev.format_summary(res)
    assert "| 3 | 8.0000 | 30.00 | – | – | 0.100 | 0.200 |" in text
    json.dumps(res.to_dict())
