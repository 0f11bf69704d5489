"""Widening ``g_a``/``g_s`` of a trained model as the same function (``models.growth.widen``), and
``init_from``, which the trainer's ``--init`` uses to start a model from another's weights.

Tiny models whose weights and running statistics are perturbed away from their initial values, so
that a widening which only worked on a fresh model (zero biases, unit variances) would fail here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from imgcodec.cli import cli
from imgcodec.codec.api import code_array, compress_latents
from imgcodec.errors import ModelError
from imgcodec.models import store
from imgcodec.models.base import bits_per_pixel
from imgcodec.models.config import ModelConfig
from imgcodec.models.growth import close, grow, init_from, reopen_latent, widen
from imgcodec.models.norms import NORMS
from imgcodec.models.registry import build_model
from imgcodec.train import TrainOptions, train

from conftest import natural_image
from hyperprior_home import TINY_HP, training_home

# Norms whose layers act on each channel alone: these must widen.  The others must refuse.
PER_CHANNEL = {"gdn", "relu", "bn", "rbn", "frn"}


def tiny(architecture: str = "meanscale", norm: str = "gdn", N: int = 16, **kw) -> ModelConfig:
    return ModelConfig.from_dict(dict(
        name=f"t-{architecture}-{norm}-{N}", architecture=architecture, norm=norm, N=N, M=12,
        lambdas=[0.002, 0.01, 0.05], default_quality=2, gain_units=architecture != "factorized",
        norm_options={"groups": 4} if norm == "gn" else {}, **kw,  # 4 groups divide 16 and 24
    ))


def perturbed(model):
    """Every parameter and running statistic of the transforms moved off its initial value
    (variances kept positive); not the constants kept as buffers (GDN's reparametrization bounds)."""
    gen = torch.Generator().manual_seed(3)
    state = list(model.named_parameters()) + [(n, b) for n, b in model.named_buffers() if "running" in n]
    with torch.no_grad():
        for name, t in state:
            if t.is_floating_point() and name.startswith(("g_a.", "g_s.")):
                t.mul_(1 + 0.2 * torch.rand(t.shape, generator=gen)).add_(0.05 * torch.rand(t.shape, generator=gen))
    return model.eval()


@pytest.mark.parametrize("norm", sorted(NORMS))
def test_every_norm_widens_as_the_same_function_or_refuses(norm):
    source = perturbed(build_model(tiny("factorized", norm)))
    if norm not in PER_CHANNEL:
        with pytest.raises(ModelError, match=f"norm '{norm}' does not widen as the same function"):
            widen(source, 24)
        return
    wide = widen(source, 24).eval()
    assert wide.config.N == 24 and wide.g_a[0].weight.shape[0] == 24
    x = torch.rand(2, 3, 48, 80, generator=torch.Generator().manual_seed(9))  # not the internal probe
    with torch.no_grad():
        y = source.g_a(x)
        assert close(wide.g_a(x), y, 1e-5) and close(wide.g_s(y), source.g_s(y), 1e-5)
    # the new channels are alive: their incoming weights are not zero
    assert wide.g_a[0].weight[16:].abs().sum() > 0 and wide.g_s[0].weight[:, 16:].abs().sum() > 0


def test_widened_meanscale_model_writes_the_files_of_its_source():
    """The hyperprior keeps its width, so a widened model codes every image as its source did."""
    source = perturbed(build_model(tiny()))
    with torch.no_grad():  # non-zero means, so that they take part
        source.h_m[-1].weight.normal_(0, 0.2, generator=torch.Generator().manual_seed(1))
    wide = widen(source, 32)
    assert (wide.config.N, wide.config.hyper_channels, wide.entropy_bottleneck.channels) == (32, 16, 16)
    for m in (source, wide):
        m.eval().update(force=True)
    rgb = natural_image(48, 64, seed=4)
    for q in (1, 2.5, 3):
        assert compress_latents(wide, rgb, quality=q) == compress_latents(source, rgb, quality=q)


def test_widen_refuses_to_narrow():
    with pytest.raises(ModelError, match="cannot narrow"):
        widen(build_model(tiny(N=16)), 8)


@pytest.mark.parametrize("change", [dict(N=8), dict(M=8), dict(norm="bn")])
def test_init_from_refuses_another_shape(change):
    source = build_model(tiny(N=16))
    target = build_model(dataclasses.replace(tiny(N=16), **change))
    with pytest.raises(ModelError, match="of another shape"):
        init_from(target, source)


def test_init_from_widens_then_grows_a_meanscale_from_a_narrower_hyperprior():
    """Both steps at once: a scale hyperprior with N = 16 starts a mean-scale model with N = 24
    and the same hyperprior width, as the same function."""
    source = perturbed(build_model(tiny("hyperprior")))
    target = build_model(tiny("meanscale", N=24, hyper_N=16))
    init_from(target, source)
    for m in (source, target):
        m.eval().update(force=True)
    rgb = natural_image(40, 56, seed=2)
    assert compress_latents(target, rgb, quality=2) == compress_latents(source, rgb, quality=2)
    assert target.h_m[-1].weight.abs().sum() == 0  # grown: zero means


def test_hyper_n_is_stored_only_when_set():
    plain = tiny()
    assert "hyper_N" not in plain.to_json() and plain.hyper_channels == plain.N
    wide = tiny(N=24, hyper_N=16)
    assert ModelConfig.from_json(wide.to_json()) == wide and wide.hyper_channels == 16


def test_trainer_widens_and_the_new_channels_learn(tmp_path, monkeypatch):
    common = training_home(tmp_path, monkeypatch, {
        "tinyhp": TINY_HP, "tinyhp-wide": TINY_HP.replace("N = 16", "N = 24\nhyper_N = 16"),
    })
    hp = train(TrainOptions(model="tinyhp", out=tmp_path / "hp", steps=3, **common))
    wide = train(TrainOptions(model="tinyhp-wide", out=tmp_path / "w", steps=3, init=Path(hp["checkpoint"]), **common))
    model = store.load_checkpoint_file(Path(wide["checkpoint"])).model
    assert model.config.N == 24
    # zero at the start (the new channels' weights into old ones), moved by three steps
    assert model.g_a[2].weight[:16, 16:].abs().sum() > 0
    assert model.g_s[-1].weight[16:].abs().sum() > 0
    listing = CliRunner().invoke(cli, ["models"]).output
    assert "tinyhp-wide: " in listing and "N=24, M=24, hyper_N=16," in listing
    assert "tinyhp: " in listing and "N=16, M=24, default quality" in listing


# -- growth along M ---------------------------------------------------------------------------------

# The architectures with a hyperprior grow their latent; the factorized model's density is per channel.
GROWS_ALONG_M = ["hyperprior", "meanscale", "checkerboard"]


def with_means(model):
    """``perturbed``, and the hyperprior's means and the context's corrections non-zero, so that they
    take part in what must stay the same."""
    perturbed(model)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name in ("h_m", "entropy_parameters"):
            if hasattr(model, name):
                getattr(model, name)[-1].weight.normal_(0, 0.2, generator=gen)
    return model


@pytest.mark.parametrize("architecture", GROWS_ALONG_M)
def test_grown_latent_codes_the_same_pixels_at_nearly_the_same_rate(architecture):
    source = with_means(build_model(tiny(architecture)))
    grown = grow(source, 30)
    assert grown.config.M == 30 and grown.g_a[-1].weight.shape[0] == 30
    for m in (source, grown):
        m.eval().update(force=True)
    rgb = natural_image(64, 96, seed=5)
    for q in (1, 2.5, 3):
        size, pixels = code_array(source, rgb, quality=q)
        grown_size, grown_pixels = code_array(grown, rgb, quality=q)
        # 18 new channels of 4 × 6 zeros each at the narrowest scale: a few bytes at the most
        assert size <= grown_size <= size + 4
        assert np.array_equal(grown_pixels, pixels)


@pytest.mark.parametrize("architecture", GROWS_ALONG_M)
def test_the_new_latent_channels_get_gradient(architecture):
    """The new channels start at zero but learn: the distortion reaches g_a's new rows through
    g_s's fresh ones (straight-through rounding), from the first step."""
    grown = grow(with_means(build_model(tiny(architecture))), 30).train()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    out = grown(x, grown.rate_point(2), quantization="mixed")
    loss = bits_per_pixel(out["likelihoods"], 64 * 64) + 0.01 * 255**2 * torch.mean((out["x_hat"] - x) ** 2)
    loss.backward()
    new_rows = grown.g_a[-1].weight.grad[12:]
    assert new_rows.abs().sum() > 0.01 * grown.g_a[-1].weight.grad[:12].abs().sum()
    assert grown.g_a[-1].weight[12:].abs().sum() == 0  # and they do start at zero


@pytest.mark.parametrize("architecture", GROWS_ALONG_M)
def test_reopened_latent_channels_carry_symbols_that_nothing_reads_yet(architecture):
    """``reopen_latent``: the grown channels get random analysis rows at the old rows' mean norm,
    so that they round to nonzero values; the synthesis, the hyperprior and the context do not read
    them (changing them changes neither the image nor ``z``)."""
    model = grow(with_means(build_model(tiny(architecture))), 30).eval()
    reopen_latent(model, 12, seed=1)
    rows = model.g_a[-1].weight.flatten(1).norm(dim=1)
    assert torch.allclose(rows[12:], rows[:12].mean().expand(18), rtol=1e-5)
    x = torch.from_numpy(natural_image(64, 64, seed=2)).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        point = model.rate_point(3)
        y = model.g_a(x) * point.gain
        assert (y[:, 12:].round() != 0).float().mean() > 0.05  # open: they carry symbols
        other = y.clone()
        other[:, 12:] = torch.randn(other[:, 12:].shape, generator=torch.Generator().manual_seed(0)) * 5
        assert torch.equal(model.g_s(y.round()), model.g_s(other.round()))
        assert torch.equal(model.hyper_analysis(y), model.hyper_analysis(other))
        if hasattr(model, "context_prediction"):
            assert torch.equal(model.context_prediction(y), model.context_prediction(other))
    with pytest.raises(ModelError, match="no latent channels 30..29 to reopen"):
        reopen_latent(model, 30)
    with pytest.raises(ModelError, match=r"\(M=12; the hyperprior family only\)"):
        reopen_latent(build_model(tiny("factorized")), 6)


def test_trainer_reopens_the_grown_channels_under_latent_warmup(tmp_path, monkeypatch):
    """``--init`` from a model with M = 24 into one with M = 32 and ``--latent-warmup 24:10``: the
    run starts with the new channels reopened (their analysis rows at the old rows' norm, where a
    plain growth leaves them at zero)."""
    common = training_home(tmp_path, monkeypatch, {"tinyhp": TINY_HP, "tinyhp-m": TINY_HP.replace("M = 24", "M = 32")})
    hp = train(TrainOptions(model="tinyhp", out=tmp_path / "hp", steps=2, **common))
    runs = {}
    for name, warmup in (("plain", None), ("warm", "24:10")):
        summary = train(TrainOptions(model="tinyhp-m", out=tmp_path / name, steps=1, init=Path(hp["checkpoint"]),
                                     latent_warmup=warmup, **common))
        runs[name] = store.load_checkpoint_file(Path(summary["checkpoint"])).model.g_a[-1].weight.flatten(1).norm(dim=1)
    plain, warm = runs["plain"], runs["warm"]
    assert plain[24:].max() < 0.05 * plain[:24].mean()  # one step from zero
    assert warm[24:].min() > 0.5 * warm[:24].mean()


def test_growth_along_m_refuses_to_narrow_and_the_factorized_model():
    with pytest.raises(ModelError, match="cannot narrow the latent"):
        grow(build_model(tiny("meanscale")), 8)
    with pytest.raises(ModelError, match="does not grow along M"):
        grow(build_model(tiny("factorized")), 24)


def test_init_from_widens_grows_the_latent_and_extends_the_ladder_at_once():
    """N, M and the λ ladder of a checkerboard model grow in one ``--init``, as the same function
    at the source's levels."""
    source = with_means(build_model(tiny("checkerboard")))
    target = build_model(dataclasses.replace(tiny("checkerboard", N=24, hyper_N=16), M=20,
                                             lambdas=(0.002, 0.01, 0.05, 0.1)))
    init_from(target, source)
    for m in (source, target):
        m.eval().update(force=True)
    rgb = natural_image(48, 64, seed=6)
    for q in (1, 2, 3):
        size, pixels = code_array(source, rgb, quality=q)
        grown_size, grown_pixels = code_array(target, rgb, quality=q)
        assert size <= grown_size <= size + 4
        assert np.abs(grown_pixels.astype(int) - pixels).max() <= 1  # g_a/g_s widened: float rounding


def test_latent_usage_script_sees_grown_channels_closed_and_reopened_ones_open(tmp_path):
    """``scripts/latent_usage.py`` on a checkpoint: a growth along M leaves the new channels without
    a nonzero value and the image the same without them; reopened, they hold nonzero values."""
    import subprocess
    import sys

    from conftest import ROOT, SAMPLE

    source = with_means(build_model(tiny("checkerboard")))
    grown = grow(source, 20)
    lines = {}
    for name, model in (("grown", grown), ("reopened", grown)):
        if name == "reopened":
            reopen_latent(model, 12)
        model.eval().update(force=True)
        path = tmp_path / f"{name}.safetensors"
        store.save_checkpoint(model, path)
        r = subprocess.run([sys.executable, str(ROOT / "scripts" / "latent_usage.py"), str(path), "--from", "12",
                            "--image", str(SAMPLE), "--crop", "64", "-q", "3"],
                           capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert r.returncode == 0, r.stderr
        lines[name] = [c.strip() for c in r.stdout.strip().splitlines()[-1].strip("|").split("|")]
    q, _, grown_nonzero, _, _, full, cut = lines["grown"]
    assert q == "3" and float(grown_nonzero) == 0 and full == cut
    assert float(lines["reopened"][2]) > 0.1
