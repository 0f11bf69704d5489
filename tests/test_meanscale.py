"""The mean-scale hyperprior (``architecture = "meanscale"``): the coder codes ``round(y − μ)`` and
the decoder adds the same μ back; a model grown from a scale hyperprior codes exactly as it did; the
trainer grows one from a scale-hyperprior checkpoint.

Tiny models with random weights (the means made non-zero on purpose, so that a decoder that ignored
them would fail); nothing here needs shipped weights.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imgcodec.codec import tiling
from imgcodec.codec.api import compress_latents, decompress_latents
from imgcodec.models import compressai_parts, store
from imgcodec.models.config import ModelConfig
from imgcodec.models.hyperprior import MeanScaleHyperprior, hyper_shape
from imgcodec.models.norms import NORMS
from imgcodec.models.registry import build_model
from imgcodec.train import TrainOptions, train

from conftest import natural_image
from hyperprior_home import TINY_HP, tiny_home

QUALITIES = [1, 2.37, 3]


def tiny_config(architecture: str = "meanscale", norm: str = "gdn", gain_units: bool = True) -> ModelConfig:
    return ModelConfig.from_dict(dict(
        name="t", architecture=architecture, norm=norm, N=32, M=16, lambdas=[0.002, 0.01, 0.05],
        default_quality=2, gain_units=gain_units,
    ))


def settled(model):
    """A few training-mode passes (running statistics move off their init), then ready to code."""
    with torch.no_grad():
        for seed in range(3):
            model(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed)), model.rate_point(1))
    model.eval()
    model.update(force=True)
    return model


def with_means(model: MeanScaleHyperprior) -> MeanScaleHyperprior:
    """Random weights where a fresh model has zeros: the means are far from 0 and from integers."""
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        last = model.h_m[-1]
        last.weight.copy_(torch.randn(last.weight.shape, generator=gen) * 0.2)
        last.bias.copy_(torch.rand(last.bias.shape, generator=gen) * 4 - 2)
    return model


def encoder_latent(model, rgb: np.ndarray, parts, quality) -> torch.Tensor:
    """ŷ as the encoder quantized it, round(y·gain − μ) + μ with μ from the coded ẑ, scaled back."""
    with torch.inference_mode():
        y = tiling.analysis(model, rgb)
        point = model.rate_point(quality)
        gain, inverse = point.gain, point.inverse
        y = y if gain is None else y * gain
        z_hat = compressai_parts.decode_factorized(model.entropy_bottleneck, parts[0], hyper_shape(tuple(y.shape[-2:])))
        mu = model.means(z_hat, y.shape[-2:])
        y_hat = torch.round(y - mu) + mu
        return y_hat if inverse is None else y_hat * inverse


@pytest.mark.parametrize("norm", sorted(NORMS))
@pytest.mark.parametrize("gain_units,quality", [(True, 2.37), (False, None)])
def test_decoder_adds_the_encoders_means(norm, gain_units, quality):
    torch.manual_seed(0)
    model = settled(with_means(build_model(tiny_config(norm=norm, gain_units=gain_units))))
    rgb = natural_image(40, 72, seed=1)  # not a multiple of 16 (nor of the hyper-latent's 64)
    parts = compress_latents(model, rgb, quality=quality)
    expected = encoder_latent(model, rgb, parts, quality)
    with torch.inference_mode():
        decoded_latent = model.decompress_latents(parts, (3, 5), model.rate_point(quality))
    assert torch.equal(decoded_latent, expected)
    with torch.inference_mode():
        point = model.rate_point(quality)
        _, inverse = point.gain, point.inverse
        unscaled = expected if inverse is None else expected / inverse
        assert (unscaled - torch.round(unscaled)).abs().max() > 0.1  # the means are really there
        want = tiling.synthesis(model, expected, 40, 72)
    np.testing.assert_array_equal(decompress_latents(model, parts, 40, 72, quality=quality), want)


def test_means_lower_the_rate_estimate_of_a_shifted_latent():
    """The likelihood is that of N(μ, σ²) convolved with U(−½, ½): the right mean costs fewer bits
    than zero for a latent that sits at it, as the formula says."""
    model = settled(build_model(tiny_config()))
    gc = model.gaussian_conditional
    scales = torch.full((1, 16, 2, 2), 0.5)
    mu = torch.full_like(scales, 3.0)
    y = mu.clone()
    with_mean = gc._likelihood(y, scales, mu)
    without = gc._likelihood(y, scales, None)
    normal = torch.distributions.Normal(0.0, 0.5)
    expected = normal.cdf(torch.tensor(0.5)) - normal.cdf(torch.tensor(-0.5))
    assert torch.allclose(with_mean, expected.expand_as(with_mean))
    assert (without < 1e-6).all()


@pytest.mark.parametrize("gain_units", [True, False])
def test_grown_model_codes_exactly_as_its_source(gain_units):
    torch.manual_seed(1)
    source = settled(build_model(tiny_config("hyperprior", gain_units=gain_units)))
    grown = build_model(tiny_config(gain_units=gain_units))
    grown.grow_from(source)
    grown.eval()
    grown.update(force=True)
    rgb = natural_image(48, 80, seed=2)
    for q in QUALITIES if gain_units else [None]:
        assert compress_latents(grown, rgb, quality=q) == compress_latents(source, rgb, quality=q)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.manual_seed(4)
        a = source(x, source.rate_point(2))
        torch.manual_seed(4)
        b = grown(x, grown.rate_point(2))
    assert torch.equal(a["x_hat"], b["x_hat"])
    assert all(torch.equal(a["likelihoods"][k], b["likelihoods"][k]) for k in ("y", "z"))


def test_refine_works_through_the_means():
    from imgcodec.codec import refine

    torch.manual_seed(2)
    model = settled(with_means(build_model(tiny_config())))
    rgb = natural_image(64, 64, seed=3)
    q = 2

    def cost(parts):
        decoded = decompress_latents(model, parts, 64, 64, quality=q)
        mse = np.mean((decoded.astype(np.float64) - rgb) ** 2) / 255**2
        return 8 * sum(map(len, parts)) / rgb[..., 0].size + model.config.lmbda(q) * 255**2 * mse

    plain = cost(compress_latents(model, rgb, quality=q))
    refined = cost(model.compress_coded(refine.refine_latents(model, rgb, q, steps=15)))
    assert refined < plain




def test_trainer_grows_a_meanscale_model_from_a_scale_hyperprior(tmp_path):
    meanscale = TINY_HP.replace('architecture = "hyperprior"', 'architecture = "meanscale"')
    common = tiny_home(tmp_path, {
        "tinyhp": TINY_HP, "tinyms": meanscale, "tinyms-narrow": meanscale.replace("N = 16", "N = 8"),
    })
    hp = train(TrainOptions(model="tinyhp", out=tmp_path / "hp", steps=4, **common))
    same = train(TrainOptions(model="tinyms", out=tmp_path / "ms0", steps=0, init=Path(hp["checkpoint"]), **common))
    moved = train(TrainOptions(model="tinyms", out=tmp_path / "ms3", steps=3, init=Path(hp["checkpoint"]), **common))
    source = store.load_checkpoint_file(Path(hp["checkpoint"]))
    grown = store.load_checkpoint_file(Path(same["checkpoint"]))
    assert grown.config.architecture == "meanscale" and grown.meta["init"] == source.sha256
    rgb = natural_image(48, 64, seed=7)
    for q in (1, 2.5):
        assert compress_latents(grown.model, rgb, quality=q) == compress_latents(source.model, rgb, quality=q)
    trained = store.load_checkpoint_file(Path(moved["checkpoint"])).model
    assert trained.h_m[-1].weight.abs().sum() > 0  # the mean branch learns from its zero start
    with pytest.raises(Exception, match="another shape"):
        train(TrainOptions(model="tinyms-narrow", out=tmp_path / "x", steps=1, init=Path(hp["checkpoint"]), **common))


def test_config_round_trips_the_architecture():
    cfg = tiny_config()
    assert ModelConfig.from_json(cfg.to_json()) == cfg
    assert isinstance(build_model(dataclasses.replace(cfg)), MeanScaleHyperprior)


def test_shipped_model_decodes_from_the_file_alone(tmp_path, capsys):
    """The shipped meanscale-gdn through the CLI: the file names the model, and the decoder's pixels
    are the synthesis of the encoder's ŷ, means included (continuous quality)."""
    from imgcodec.format import bitstream

    from conftest import SAMPLE, run_main

    rgb = np.asarray(Image.open(SAMPLE).convert("RGB"))[:96, :160].copy()
    src, out, back = tmp_path / "a.png", tmp_path / "a.bin", tmp_path / "b.png"
    Image.fromarray(rgb).save(src)
    assert run_main(capsys, "encode", src, out, "--model", "meanscale-gdn", "-q", "4.25")[0] == 0
    stream = bitstream.unpack(out.read_bytes())
    # quality 4.25 is the position 3.25 on meanscale-gdn's ladder, which starts at quality 2
    assert (stream.header.model, stream.header.quality, stream.header.latent_parts) == ("meanscale-gdn", 3.25, 2)
    assert run_main(capsys, "decode", out, back)[0] == 0
    model = store.default_store().load_shipped("meanscale-gdn", 4.25).model
    expected = encoder_latent(model, rgb, stream.parts, 4.25)
    with torch.inference_mode():
        want = tiling.synthesis(model, expected, 96, 160)
    np.testing.assert_array_equal(np.asarray(Image.open(back)), want)
