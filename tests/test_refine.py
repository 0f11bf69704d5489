"""Encoder-side refinement (``--refine``): the latents optimized for one image, decoded unchanged.

Run on the shipped weights (a crop of the bundled sample photo): what matters is that the files the
real decoder reads cost less, in the models' own objective, than the unrefined ones.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import imgcodec
from imgcodec.codec import api as codec
from imgcodec.codec import refine, tensors, tiling
from imgcodec.errors import CodecError
from imgcodec.eval import report
from imgcodec.eval.evaluate import evaluate_model
from imgcodec.format import bitstream
from imgcodec.models import store

from conftest import SAMPLE, run_main

CASES = [("factorized-gdn", 5), ("hyperprior-gdn", 3), ("hyperprior-gdn", 5.5), ("meanscale-gdn", 4.5),
         (store.DEFAULT_MODEL, 6.5)]  # the default: the checkerboard model


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.asarray(Image.open(SAMPLE).convert("RGB"))[:128, :192].copy()


def _rd_cost(loaded, q, rgb, parts) -> tuple[float, float]:
    """(J, bpp) of payload parts as the real decoder reads them: bpp + λ·255²·MSE of the 8-bit output."""
    h, w, _ = rgb.shape
    decoded = codec.decompress_latents(loaded.model, parts, h, w, "cpu", q)
    mse = np.mean((decoded.astype(np.float64) - rgb) ** 2) / 255**2
    bpp = 8 * sum(map(len, parts)) / (h * w)
    return bpp + loaded.config.lmbda(q) * 255**2 * mse, bpp


@pytest.mark.parametrize("name,q", CASES)
def test_refinement_lowers_the_real_rd_cost(photo, name, q):
    loaded = store.default_store().load_shipped(name, q)
    plain, _ = _rd_cost(loaded, q, photo, codec.compress_latents(loaded.model, photo, quality=q))
    refined, _ = _rd_cost(loaded, q, photo, codec.compress_latents(loaded.model, photo, quality=q, refine=20))
    assert refined < 0.99 * plain, (plain, refined)


@pytest.mark.parametrize("name,q", CASES)
def test_rd_pass_estimates_what_the_coder_writes(photo, name, q):
    """The objective refinement minimizes is the real one: its bits are the payload's (within the
    coder's overhead and the scale table's rounding of σ), its x̂ the decoder's output."""
    loaded = store.default_store().load_shipped(name, q)
    model = loaded.model
    h, w, _ = photo.shape
    with torch.inference_mode():
        point = model.rate_point(q)
        latents = model.coded_latents(tiling.analysis(model, photo), point)
        bits, x_hat = model.rd_pass(latents, point)
        parts = model.compress_coded(latents)
    real = 8 * sum(map(len, parts))
    assert abs(float(bits) - real) < 0.04 * real + 64, (float(bits), real)
    decoded = codec.decompress_latents(model, parts, h, w, "cpu", q)
    estimate = tensors.tensor_to_array(x_hat[..., :h, :w].clamp(0, 1))
    # The coder computes the means in exact fixed point, the estimate in float: a latent at a
    # rounding tie can round the other way and move its patch by a few levels. The distortion the
    # objective sees is the decoder's all the same.
    off = np.abs(estimate.astype(int) - decoded)
    assert (off > 1).mean() < 0.01, (off > 1).mean()
    mse_estimate, mse_decoded = (np.mean((v.astype(np.float64) - photo) ** 2) for v in (estimate, decoded))
    assert abs(mse_estimate - mse_decoded) < 0.005 * mse_decoded, (mse_estimate, mse_decoded)


def test_one_objective_for_training_and_refinement():
    """``rd_loss`` is J = bpp + λ·255²·MSE (or bpp + λ·(1 − MS-SSIM)), and the trainer's step and
    refinement both call it."""
    from pytorch_msssim import ms_ssim

    from imgcodec.train import loop

    torch.manual_seed(0)
    x = torch.rand(1, 3, 176, 176)
    x_hat = x + 0.05 * torch.randn_like(x)
    bpp = torch.tensor(0.5)
    j, mse = refine.rd_loss(bpp, x_hat, x, 0.01)
    assert mse == torch.mean((x_hat - x) ** 2) and j == bpp + 0.01 * 255**2 * mse
    j, _ = refine.rd_loss(bpp, x_hat, x, 20.0, "ms-ssim")
    assert torch.allclose(j, bpp + 20.0 * (1 - ms_ssim(x_hat.clamp(0, 1), x, data_range=1.0)))
    assert loop.rd_loss is refine.rd_loss


@pytest.mark.parametrize("name,q", CASES)
def test_zero_steps_write_the_plain_file(photo, name, q):
    loaded = store.default_store().load_shipped(name, q)
    latents = refine.refine_latents(loaded.model, photo, q, steps=0)
    with torch.inference_mode():
        assert loaded.model.compress_coded(latents) == codec.compress_latents(loaded.model, photo, quality=q)


def test_a_refined_file_is_an_ordinary_file(photo, tmp_path, capsys):
    src, out, back = tmp_path / "in.png", tmp_path / "out.bin", tmp_path / "back.png"
    Image.fromarray(photo).save(src)
    code, _, err = run_main(capsys, "encode", src, out, "--model", "hyperprior-gdn", "-q", "4.4", "--refine", "5")
    assert code == 0, err
    header = bitstream.unpack(out.read_bytes()).header
    # quality 4.4 is the position 3.4 on hyperprior-gdn's ladder, which starts at quality 2
    assert (header.model, header.quality, header.width, header.height) == ("hyperprior-gdn", 3.4, 192, 128)
    code, _, err = run_main(capsys, "decode", out, back)
    assert code == 0, err
    assert Image.open(back).size == (192, 128)


def test_refinement_is_refused_above_its_pixel_cap(photo, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(refine, "MAX_PIXELS", 10_000)
    src, out = tmp_path / "in.png", tmp_path / "out.bin"
    Image.fromarray(photo).save(src)
    with pytest.raises(CodecError, match="megapixels"):
        imgcodec.encode(Image.fromarray(photo), model="hyperprior-gdn", refine=3)
    code, _, err = run_main(capsys, "encode", src, out, "--model", "hyperprior-gdn", "--refine", "3")
    assert code != 0 and "megapixels" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_negative_steps_are_a_usage_error(photo, tmp_path, capsys):
    src = tmp_path / "in.png"
    Image.fromarray(photo).save(src)
    code, _, err = run_main(capsys, "encode", src, tmp_path / "out.bin", "--refine", "-1")
    assert code == 2 and "--refine" in err
    with pytest.raises(CodecError, match="whole number"):
        refine.refine_latents(store.default_store().load_shipped("factorized-gdn", 4).model, photo, 4, steps=-1)


def test_target_size_measures_the_refined_files(photo):
    img = Image.fromarray(photo)
    limit = int(0.6 * len(imgcodec.encode(img, model="hyperprior-gdn", quality=5)))
    data = imgcodec.encode(img, model="hyperprior-gdn", target_size=limit, refine=3)
    assert len(data) <= limit
    q = store.default_store().load_config("hyperprior-gdn").from_stored(bitstream.unpack(data).header.quality)
    assert data == imgcodec.encode(img, model="hyperprior-gdn", quality=q, refine=3)


def test_eval_records_refinement_and_the_report_keeps_it_apart(photo, tmp_path):
    data = tmp_path / "images"
    data.mkdir()
    Image.fromarray(photo).save(data / "a.png")
    res = evaluate_model(data, model="hyperprior-gdn", refine=2, progress=False)
    assert res.settings["refine_steps"] == 2 and res.name == "hyperprior-gdn refine 2"
    path = tmp_path / "hyperprior-gdn-refine2.json"
    res.save(path)
    assert report._reusable_model(path, res.dataset, store.default_store(), "hyperprior-gdn", refine=2) is not None
    # Never mistaken for the plain curve, or for another number of steps.
    assert report._reusable_model(path, res.dataset, store.default_store(), "hyperprior-gdn") is None
    assert report._reusable_model(path, res.dataset, store.default_store(), "hyperprior-gdn", refine=3) is None


@pytest.mark.parametrize("spec", ["hyperprior-gdn", "hyperprior-gdn:", "hyperprior-gdn:x", ":5", "hyperprior-gdn:0"])
def test_report_refine_spec_errors(spec):
    with pytest.raises(CodecError, match="MODEL:STEPS"):
        report.parse_refined([spec])
    assert report.parse_refined(["hyperprior-gdn:60"]) == [("hyperprior-gdn", 60)]
