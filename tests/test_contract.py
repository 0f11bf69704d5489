"""The model contract (``models.base.CodecModel``), tested over every registered architecture: a new
architecture is tested here by being added to ``ARCHITECTURES``.

Tiny models with every weight moved off its initial value (a fresh model's zero means and context
corrections would hide a decoder that ignored them), and the shipped weights of each architecture
for what needs a trained model (the rate rising with the quality).  What is particular to one
architecture stays in its own test file.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from imgcodec.codec.api import code_array, compress_latents, decompress_latents
from imgcodec.codec.imageio import CanonicalImage
from imgcodec.errors import ModelError
from imgcodec.models import store
from imgcodec.models.base import CodecModel
from imgcodec.models.config import ModelConfig
from imgcodec.models.growth import grow, widen
from imgcodec.models.registry import ARCHITECTURES, build_model

from conftest import natural_image

NAMES = sorted(ARCHITECTURES)


def tiny(architecture: str, N: int = 16, M: int = 12, **kw) -> ModelConfig:
    cls = ARCHITECTURES[architecture]
    return ModelConfig.from_dict(dict(
        name=f"t-{architecture}", architecture=architecture, norm="gdn", N=N, M=M,
        lambdas=[0.002, 0.01, 0.05], default_quality=2, gain_units=cls.supports_gain_units, **kw))


def trained_looking(model):
    """Every floating parameter moved off its initial value (deterministically), then the coder's
    tables built: zero layers (means, context corrections) become non-zero."""
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(("g_a.", "g_s.", "h_a.", "h_s.", "h_m.", "context_prediction.", "entropy_parameters.")):
                p.mul_(1 + 0.2 * torch.rand(p.shape, generator=gen)).add_(0.02 * torch.randn(p.shape, generator=gen))
    model.eval()
    model.update(force=True)
    return model


def shipped_models_of(architecture: str) -> list[str]:
    """The shipped GDN models of ``architecture`` (the wider ones too)."""
    names = sorted(n for n, c in store.default_store().configs().items()
                   if c.architecture == architecture and c.norm == "gdn" and store.default_store().shipped_qualities(n))
    assert names, f"no shipped model of architecture {architecture!r}"
    return names


@pytest.mark.parametrize("architecture", NAMES)
def test_the_contract_is_declared(architecture):
    model = build_model(tiny(architecture))
    assert model.stride == 16 and model.latent_parts >= 1
    assert isinstance(model.g_a, torch.nn.Module) and isinstance(model.g_s, torch.nn.Module)
    assert model.footprint == 30  # GDN acts per position: tiles reproduce the whole frame
    point = model.rate_point(1)
    assert point.quality == 1 and point.lmbda == model.config.lambdas[0]
    if model.supports_gain_units:
        assert point.gain.shape == point.inverse.shape == (1, model.config.M, 1, 1)
    else:
        assert (point.gain, point.inverse) == (None, None)


@pytest.mark.parametrize("architecture", NAMES)
def test_round_trip_decodes_what_the_model_predicts(architecture):
    """The file's parts decode to the pixels that ``reconstruct`` (coding skipped) predicts, one
    part per declared latent part."""
    model = trained_looking(build_model(tiny(architecture)))
    rgb = natural_image(48, 80, seed=2)
    for q in (1, 2):
        parts = compress_latents(model, rgb, quality=q)
        assert len(parts) == model.latent_parts
        pixels = decompress_latents(model, parts, 48, 80, quality=q)
        with torch.no_grad():
            x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255
            predicted = model.reconstruct(x, model.rate_point(q))  # 48 × 80: a multiple of the stride, no padding
        predicted = np.clip(np.rint(predicted[0].permute(1, 2, 0).numpy() * 255), 0, 255).astype(np.uint8)
        diff = np.abs(pixels.astype(int) - predicted)
        assert diff.max() <= 1 and np.count_nonzero(diff) <= 1e-3 * diff.size


@pytest.mark.parametrize("architecture", NAMES)
def test_the_decoded_latent_does_not_depend_on_the_thread_count(architecture):
    model = trained_looking(build_model(tiny(architecture)))
    parts = compress_latents(model, natural_image(64, 96, seed=7), quality=2)
    before = torch.get_num_threads()
    try:
        latents = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            latents.append(model.decompress_latents(parts, (4, 6), model.rate_point(2)))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(latents[0], latents[1])


@pytest.mark.parametrize("architecture", NAMES)
def test_the_shipped_rate_rises_with_the_quality(architecture):
    img = CanonicalImage(natural_image(96, 128, seed=4), None, False)
    for name in shipped_models_of(architecture):
        qualities = store.default_store().shipped_qualities(name)
        sizes = []
        for q in qualities:
            loaded = store.default_store().load_shipped(name, q)
            sizes.append(sum(map(len, compress_latents(loaded.model, img.rgb, quality=loaded.quality))))
        assert len(sizes) >= 2 and all(a < b for a, b in zip(sizes, sizes[1:])), (name, qualities, sizes)


@pytest.mark.parametrize("architecture", NAMES)
def test_widening_g_a_and_g_s_is_the_same_function(architecture):
    source = trained_looking(build_model(tiny(architecture)))
    wide = widen(source, 24).eval()
    wide.update(force=True)
    rgb = natural_image(48, 64, seed=5)
    size, pixels = code_array(source, rgb, quality=2)
    wide_size, wide_pixels = code_array(wide, rgb, quality=2)
    assert abs(wide_size - size) <= 2
    assert np.abs(wide_pixels.astype(int) - pixels).max() <= 1


@pytest.mark.parametrize("architecture", NAMES)
def test_growing_the_latent_is_the_same_function_or_refused(architecture):
    source = trained_looking(build_model(tiny(architecture)))
    if type(source).grow_latent is CodecModel.grow_latent:  # an architecture that does not grow along M
        with pytest.raises(ModelError, match="does not grow along M"):
            grow(source, 20)
        return
    grown = grow(source, 20).eval()
    grown.update(force=True)
    assert grown.config == dataclasses.replace(source.config, M=20)
    rgb = natural_image(48, 64, seed=6)
    size, pixels = code_array(source, rgb, quality=2)
    grown_size, grown_pixels = code_array(grown, rgb, quality=2)
    assert size <= grown_size <= size + 4
    assert np.array_equal(grown_pixels, pixels)
