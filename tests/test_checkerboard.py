"""The checkerboard context model (``architecture = "checkerboard"``): the decoder rebuilds the
encoder's ŷ bit for bit in two passes, its parameters do not depend on the thread count or the
order of additions, the context really changes the second pass, a model grown from a mean-scale
hyperprior codes exactly as its source, and damaged parts are refused.

Tiny models with random weights where a fresh model has zeros (the means and the context's
corrections far from 0), so that a decoder that ignored either would fail.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imgcodec.codec import tiling
from imgcodec.codec.api import compress_latents, decompress_latents
from imgcodec.errors import BitstreamError, ModelError
from imgcodec.models import compressai_parts
from imgcodec.models.checkerboard import ONE, CheckerboardMeanScale, anchor_mask
from imgcodec.models.config import ModelConfig
from imgcodec.models.growth import close, init_from
from imgcodec.models.hyperprior import hyper_shape
from imgcodec.models.norms import NORMS
from imgcodec.models.registry import build_model

from conftest import natural_image


def tiny_config(architecture: str = "checkerboard", norm: str = "gdn", lambdas=(0.001, 0.002, 0.01, 0.05, 0.2),
                gain_units: bool = True) -> ModelConfig:
    return ModelConfig.from_dict(dict(
        name="t", architecture=architecture, norm=norm, N=32, M=16, lambdas=list(lambdas),
        default_quality=2, gain_units=gain_units,
    ))


def settled(model):
    with torch.no_grad():
        for seed in range(3):
            model(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed)), model.rate_point(1))
    model.eval()
    model.update(force=True)
    return model


def with_context(model: CheckerboardMeanScale) -> CheckerboardMeanScale:
    """Random nonzero means and context corrections (a fresh model's last layers are zero)."""
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for last, scale, offset in ((model.h_m[-1], 0.2, 2.0), (model.entropy_parameters[-1], 0.3, 0.5)):
            last.weight.copy_(torch.randn(last.weight.shape, generator=gen) * scale)
            last.bias.copy_(torch.rand(last.bias.shape, generator=gen) * 2 * offset - offset)
    return model


def encoder_latent(model, rgb: np.ndarray, parts, quality) -> torch.Tensor:
    """ŷ as the encoder quantized it, from the formulas: anchors ``round(y − μ₀) + μ₀``, the others
    ``round(y − μ) + μ`` with μ from the context of the anchors, all in the fixed point."""
    with torch.inference_mode():
        y = tiling.analysis(model, rgb)
        point = model.rate_point(quality)
        gain, inverse = point.gain, point.inverse
        y = (y if gain is None else y * gain).double()
        shape = tuple(y.shape[-2:])
        z_hat = compressai_parts.decode_factorized(model.entropy_bottleneck, parts[0], hyper_shape(shape))
        s0, m0 = model.fixed_hyper_parameters(z_hat, shape)
        a = anchor_mask(shape)
        anchors = torch.where(a, torch.round(y - m0 / ONE) * ONE + m0, 0.0)
        _, m1 = model.fixed_context_parameters(s0, m0, anchors)
        y_hat = torch.where(a, anchors, torch.round(y - m1 / ONE) * ONE + m1) / ONE
        y_hat = y_hat.float()
        return y_hat if inverse is None else y_hat * inverse


@pytest.mark.parametrize("norm", sorted(NORMS))
@pytest.mark.parametrize("quality", [1, 2.37, 4])
def test_decoder_rebuilds_the_encoders_latent(norm, quality):
    torch.manual_seed(0)
    model = settled(with_context(build_model(tiny_config(norm=norm))))
    rgb = natural_image(40, 72, seed=1)  # a 3×5 latent: odd sizes, both passes uneven
    parts = compress_latents(model, rgb, quality=quality)
    assert len(parts) == 3 and all(parts)
    expected = encoder_latent(model, rgb, parts, quality)
    with torch.inference_mode():
        decoded = model.decompress_latents(parts, (3, 5), model.rate_point(quality))
    assert torch.equal(decoded, expected)
    with torch.inference_mode():
        want = tiling.synthesis(model, expected, 40, 72)
    np.testing.assert_array_equal(decompress_latents(model, parts, 40, 72, quality=quality), want)


@pytest.mark.parametrize("quality", [1, 2.37, 4])
def test_reconstruct_is_exactly_what_the_decoder_outputs(quality):
    """``reconstruct`` (no entropy coding) follows the coder's fixed-point passes, not the float ones."""
    from imgcodec.codec import tensors

    model = settled(with_context(build_model(tiny_config())))
    rgb = natural_image(40, 72, seed=2)
    decoded = decompress_latents(model, compress_latents(model, rgb, quality=quality), 40, 72, quality=quality)
    with torch.inference_mode():
        x = tensors.pad_image(tensors.array_to_tensor(rgb), 48, 80)
        expected = tensors.tensor_to_array(model.reconstruct(x, model.rate_point(quality))[..., :40, :72])
    np.testing.assert_array_equal(decoded, expected)


def test_the_context_changes_the_second_pass_only():
    model = settled(with_context(build_model(tiny_config())))
    gen = torch.Generator().manual_seed(2)
    s0 = torch.round(torch.rand(1, 16, 4, 6, generator=gen) * 3 * ONE).double()
    m0 = torch.round(torch.randn(1, 16, 4, 6, generator=gen) * ONE).double()
    a = anchor_mask((4, 6))
    anchors = torch.where(a, torch.round(torch.randn(1, 16, 4, 6, generator=gen) * 4) * ONE, 0.0)
    s1, m1 = model.fixed_context_parameters(s0, m0, anchors)
    assert (s1[..., ~a] != s0[..., ~a]).float().mean() > 0.9 and (m1[..., ~a] != m0[..., ~a]).float().mean() > 0.9
    # the non-anchors' parameters depend on the anchors' values, and on nothing at a non-anchor
    other = anchors.clone()
    other[..., 0, 0] += 3 * ONE
    assert not torch.equal(model.fixed_context_parameters(s0, m0, other)[0][..., ~a], s1[..., ~a])


def test_context_ignores_what_sits_at_non_anchors_in_training():
    """The float context (training, refinement) reads ``ŷ ⊙ A``: changing a non-anchor's value
    changes no parameter."""
    model = with_context(build_model(tiny_config())).eval()
    gen = torch.Generator().manual_seed(3)
    s0, m0 = torch.rand(1, 16, 4, 6, generator=gen) * 3, torch.randn(1, 16, 4, 6, generator=gen)
    y = torch.randn(1, 16, 4, 6, generator=gen) * 4
    a = anchor_mask((4, 6))
    with torch.no_grad():
        s1, m1 = model.context_parameters(s0, m0, y)
        s2, m2 = model.context_parameters(s0, m0, torch.where(a, y, y + 10))
    assert torch.equal(s1, s2) and torch.equal(m1, m2)
    assert torch.equal(s1[..., a], s0[..., a]) and torch.equal(m1[..., a], m0[..., a])


def test_parameters_do_not_depend_on_threads_or_the_order_of_additions():
    model = settled(with_context(build_model(tiny_config())))
    rgb = natural_image(64, 96, seed=4)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = compress_latents(model, rgb, quality=3)
        decoded_one = decompress_latents(model, one, 64, 96, quality=3)
        torch.set_num_threads(2)
        two = compress_latents(model, rgb, quality=3)
        decoded_two = decompress_latents(model, two, 64, 96, quality=3)
    finally:
        torch.set_num_threads(threads)
    assert one == two
    np.testing.assert_array_equal(decoded_one, decoded_two)
    # the entropy-parameter network with its input channels permuted (its weights likewise): other
    # partial sums, the same integers
    gen = torch.Generator().manual_seed(6)
    s0 = torch.round(torch.rand(1, 16, 4, 4, generator=gen) * 5 * ONE).double()
    m0 = torch.round(torch.randn(1, 16, 4, 4, generator=gen) * 3 * ONE).double()
    anchors = torch.where(anchor_mask((4, 4)), torch.round(torch.randn(1, 16, 4, 4, generator=gen) * 9) * ONE, 0.0)
    s1, m1 = model.fixed_context_parameters(s0, m0, anchors)
    perm = torch.randperm(16, generator=gen)
    with torch.no_grad():
        model.context_prediction.weight.copy_(model.context_prediction.weight[:, perm])
    s2, m2 = model.fixed_context_parameters(s0, m0, anchors[:, perm])
    assert torch.equal(s1, s2) and torch.equal(m1, m2)


def test_a_one_by_one_latent_has_an_empty_second_pass():
    model = settled(with_context(build_model(tiny_config())))
    rgb = natural_image(9, 13, seed=7)
    parts = compress_latents(model, rgb, quality=2)
    assert parts[2] == b""
    expected = encoder_latent(model, rgb, parts, 2)
    assert torch.equal(model.decompress_latents(parts, (1, 1), model.rate_point(2)), expected)
    with pytest.raises(BitstreamError, match="a latent part where the image has none"):
        model.decompress_latents([parts[0], parts[1], b"\0" * 8], (1, 1), model.rate_point(2))


def test_damaged_second_pass_is_refused():
    model = settled(with_context(build_model(tiny_config())))
    parts = compress_latents(model, natural_image(48, 64, seed=8), quality=2)
    for damaged in (parts[2][:-4], parts[2] + b"\0\0\0\0", b""):
        with pytest.raises(BitstreamError):
            model.decompress_latents([parts[0], parts[1], damaged], (3, 4), model.rate_point(2))


@pytest.mark.parametrize("source_architecture", ["meanscale", "hyperprior"])
def test_grown_model_codes_exactly_as_its_source(source_architecture):
    """Grown from a trained mean-scale (or scale) hyperprior with a shorter λ ladder: the same
    rate estimate and reconstruction at the source's qualities; the new levels quantize finer."""
    torch.manual_seed(1)
    source = build_model(tiny_config(source_architecture, lambdas=(0.002, 0.01, 0.05)))
    if source_architecture == "meanscale":
        with torch.no_grad():
            source.h_m[-1].weight.normal_(0, 0.2)
    source = settled(source)
    grown = build_model(tiny_config())
    init_from(grown, source)
    grown.eval()
    grown.update(force=True)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        for q in (1, 2.37, 3):  # the source's q is the grown q + 1 (one level below)
            p, r = source.rate_point(q), grown.rate_point(q + 1)
            a = source.rd_pass(source.coded_latents(source.g_a(x), p), p)
            b = grown.rd_pass(grown.coded_latents(grown.g_a(x), r), r)
            assert close(a[0], b[0]) and close(a[1], b[1])
            torch.manual_seed(4)
            fa = source(x, source.rate_point(q))
            torch.manual_seed(4)
            fb = grown(x, grown.rate_point(q + 1))
            assert close(fa["x_hat"], fb["x_hat"])
            assert all(close(fa["likelihoods"][k], fb["likelihoods"][k]) for k in ("y", "z"))
        gains, inverse = grown.gain.log_gains(), grown.gain.log_inverse
        for new, neighbour, ratio in ((4, 3, 0.2 / 0.05), (0, 1, 0.001 / 0.002)):
            step = 0.5 * np.log(ratio)  # the high-rate rule, per channel
            assert torch.allclose(gains[new] - gains[neighbour], torch.full_like(gains[0], step), atol=1e-5)
            assert torch.allclose(inverse[new] - inverse[neighbour], torch.full_like(gains[0], -step), atol=1e-5)


def test_growth_refuses_a_ladder_that_is_not_a_run_of_the_models():
    source = build_model(tiny_config("meanscale", lambdas=(0.002, 0.05, 0.01)))
    with pytest.raises(ModelError, match="longer λ ladder"):
        init_from(build_model(tiny_config()), source)


def test_shipped_meanscale_grows_into_the_context_model_as_the_same_function():
    from imgcodec.models.store import default_store

    store = default_store()
    source = store.load_shipped("meanscale-gdn").model
    grown = build_model(store.load_config("checkerboard-gdn"))
    init_from(grown, source)
    grown.eval()
    x = torch.from_numpy(natural_image(64, 96, seed=9)).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        levels = source.config.qualities
        for q in (levels[0], levels[3], levels[-1]):  # one quality scale: the same quality, the same λ
            p, r = source.rate_point(q), grown.rate_point(q)
            assert p.lmbda == pytest.approx(r.lmbda, rel=1e-9)
            a = source.rd_pass(source.coded_latents(source.g_a(x), p), p)
            b = grown.rd_pass(grown.coded_latents(grown.g_a(x), r), r)
            # the gains of the levels above a new lowest one are a sum of steps: equal to float rounding
            assert close(a[0], b[0]) and close(a[1], b[1])


# --- the shipped model ------------------------------------------------------------------------

SHIPPED = "checkerboard-gdn"


@pytest.fixture(scope="module")
def sample():
    from PIL import Image

    from conftest import SAMPLE

    with Image.open(SAMPLE) as im:
        return im.convert("RGB").crop((0, 0, 256, 192))


def test_shipped_rate_grows_with_continuous_quality(sample):
    import imgcodec

    qualities = [1, 1.5, 2, 2.75, 3, 4, 4.2, 5, 6, 6.5, 7, 7.5, 8, 8.6, 9]
    sizes = [len(imgcodec.encode(sample, model=SHIPPED, quality=q)) for q in qualities]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes), list(zip(qualities, sizes))
    ref = np.asarray(sample, dtype=np.float64)

    def psnr(q):
        im = imgcodec.decode(imgcodec.encode(sample, model=SHIPPED, quality=q))
        return 10 * np.log10(255**2 / np.mean((np.asarray(im, dtype=np.float64) - ref) ** 2))

    curve = [psnr(q) for q in (1, 3, 5, 7, 9)]
    assert curve == sorted(curve), curve


@pytest.mark.parametrize("fraction", [0.1, 0.4, 0.7, 0.95])
def test_shipped_target_size_within_two_percent(sample, fraction):
    import imgcodec
    from imgcodec.format import bitstream

    lo = len(imgcodec.encode(sample, model=SHIPPED, quality=1))
    hi = len(imgcodec.encode(sample, model=SHIPPED, quality=9))
    limit = int(lo + fraction * (hi - lo))
    data = imgcodec.encode(sample, model=SHIPPED, target_size=limit)
    assert 0.98 * limit <= len(data) <= limit, (limit, len(data), bitstream.unpack(data).header.quality)


def test_shipped_file_decodes_to_the_same_pixels_with_one_and_two_threads(sample):
    import imgcodec

    data = imgcodec.encode(sample, model=SHIPPED, quality=5.5)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = np.asarray(imgcodec.decode(data))
        torch.set_num_threads(2)
        two = np.asarray(imgcodec.decode(data))
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(one, two)
