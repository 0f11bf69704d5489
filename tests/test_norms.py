"""The norm registry: every layer against an independent float64 computation of its formula, the
custom autograd function against gradcheck, identities the math gives, and — parametrized over
``NORMS``, so a new entry is tested by being registered — shapes, batch (in)dependence, a model
built with the norm that trains one step, and an exact encode/decode round trip."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from imgcodec.errors import ModelError
from imgcodec.models import norms
from imgcodec.models.config import ModelConfig
from imgcodec.models.norms import (
    NORMS,
    CentralizedConv2d,
    CentralizedConvTranspose2d,
    FilterResponseNorm2d,
    MovingAverageBatchNorm2d,
    MovingAverageNormFunction,
    RepresentativeBatchNorm2d,
    get_norm,
)
from imgcodec.models.store import default_store

from conftest import natural_image

torch.set_num_threads(1)

NAMES = sorted(NORMS)
C = 6


def _x(n=4, c=C, h=5, w=7, seed=0, scale=1.0, shift=0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, h, w, generator=g, dtype=torch.float64) * scale + shift


def _randomize(module: nn.Module, seed: int = 1, skip: tuple[str, ...] = ()) -> None:
    """Give every parameter a random value so that no formula hides behind its initial value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name not in skip:
                p.copy_(p + 0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def _bare(layer: nn.Module) -> nn.Module:
    """The normalization inside a registry layer (``Sequential(norm, ReLU)`` or the layer itself)."""
    return layer[0] if isinstance(layer, nn.Sequential) else layer


def _cm(v: torch.Tensor) -> torch.Tensor:
    return v.detach().double().view(1, -1, 1, 1)


# ---------------------------------------------------------------------------------------------
# GDN / IGDN (compressai's layers, checked against the formula and its reparametrization)


def _nonneg(param: torch.Tensor, minimum: float) -> torch.Tensor:
    """compressai's NonNegativeParametrizer: stored v, value max(v, sqrt(min + p))² − p, p = 2⁻³⁶."""
    pedestal = (2.0**-18) ** 2
    return torch.clamp(param.detach().double(), min=math.sqrt(minimum + pedestal)) ** 2 - pedestal


def test_gdn_and_igdn_match_formula():
    gdn = get_norm("gdn").analysis(C).double()
    igdn = get_norm("gdn").synthesis(C).double()
    beta0, gamma0 = _nonneg(gdn.beta, 1e-6), _nonneg(gdn.gamma, 0.0)
    assert torch.allclose(beta0, torch.ones(C, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(gamma0, 0.1 * torch.eye(C, dtype=torch.float64), atol=1e-9)
    with torch.no_grad():
        gdn.beta.copy_(gdn.beta.abs() + 0.3 * torch.rand(C, dtype=torch.float64))
        gdn.gamma.copy_(0.5 * torch.rand(C, C, dtype=torch.float64))
    igdn.load_state_dict(gdn.state_dict())
    x = _x(scale=2.0)
    beta, gamma = _nonneg(gdn.beta, 1e-6), _nonneg(gdn.gamma, 0.0)
    # denominator_i = β_i + Σ_j γ_ij x_j² (γ[i, j]: output channel i, input channel j)
    denom = beta.view(1, C, 1, 1) + torch.einsum("ij,njhw->nihw", gamma, x**2)
    assert torch.allclose(gdn(x), x / denom.sqrt(), rtol=1e-10, atol=1e-12)
    assert torch.allclose(igdn(x), x * denom.sqrt(), rtol=1e-10, atol=1e-12)
    # the same parameters: GDN(x) · IGDN(x) = x²
    assert torch.allclose(gdn(x) * igdn(x), x**2, rtol=1e-10, atol=1e-12)


def test_gdn_beta_stays_above_its_lower_bound():
    gdn = get_norm("gdn").analysis(C).double()
    with torch.no_grad():
        gdn.beta.fill_(-1.0)  # below the bound: the reparametrization clamps the value
    x = torch.zeros(1, C, 2, 2, dtype=torch.float64)
    x[:, :, 0, 0] = 1e-3
    y = gdn(x)
    assert torch.isfinite(y).all()
    assert torch.allclose(y[:, :, 0, 0], 1e-3 / torch.sqrt(torch.tensor(1e-6 + 1e-7, dtype=torch.float64)), rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# BatchNorm and GroupNorm


def _batch_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    m = x.mean(dim=(0, 2, 3), keepdim=True)
    return m, ((x - m) ** 2).mean(dim=(0, 2, 3), keepdim=True)


def test_batchnorm_train_eval_and_running_stats():
    bn = _bare(get_norm("bn").analysis(C)).double()
    _randomize(bn)
    x = _x(shift=1.5, scale=2.0)
    mean, var = _batch_stats(x)
    expected = _cm(bn.weight) * (x - mean) / torch.sqrt(var + 1e-5) + _cm(bn.bias)
    assert torch.allclose(bn(x), expected, rtol=1e-10, atol=1e-10)
    n = x.numel() // C
    # running statistics: momentum 0.1, unbiased variance
    assert torch.allclose(bn.running_mean, 0.1 * mean.flatten())
    assert torch.allclose(bn.running_var, 0.9 + 0.1 * var.flatten() * n / (n - 1))
    bn.eval()
    rm, rv = _cm(bn.running_mean), _cm(bn.running_var)
    expected = _cm(bn.weight) * (x - rm) / torch.sqrt(rv + 1e-5) + _cm(bn.bias)
    assert torch.allclose(bn(x), expected, rtol=1e-10, atol=1e-10)


def test_groupnorm_matches_formula():
    gn = _bare(get_norm("gn").analysis(C, groups=3)).double()
    assert isinstance(gn, nn.GroupNorm) and gn.num_groups == 3
    _randomize(gn)
    x = _x(shift=0.7)
    xg = x.view(4, 3, C // 3, 5, 7)
    m = xg.mean(dim=(2, 3, 4), keepdim=True)
    v = ((xg - m) ** 2).mean(dim=(2, 3, 4), keepdim=True)
    expected = ((xg - m) / torch.sqrt(v + 1e-5)).view_as(x) * _cm(gn.weight) + _cm(gn.bias)
    assert torch.allclose(gn(x), expected, rtol=1e-10, atol=1e-10)


def test_groupnorm_with_one_channel_per_group_is_instance_norm():
    gn = _bare(get_norm("gn").analysis(C, groups=C)).double()
    x = _x(shift=-0.4, scale=3.0)
    assert torch.allclose(gn(x), F.instance_norm(x, eps=1e-5), rtol=1e-10, atol=1e-10)


def test_groupnorm_groups_must_divide_width():
    with pytest.raises(ModelError, match="do not divide"):
        get_norm("gn").analysis(48)  # 32 groups by default


# ---------------------------------------------------------------------------------------------
# Representative BatchNorm


def _rbn_reference(x, layer: RepresentativeBatchNorm2d, mean, var):
    x_cm = x + _cm(layer.center_weight) * x.mean(dim=(2, 3), keepdim=True)
    if mean is None:
        mean, var = _batch_stats(x_cm)
    x_hat = (x_cm - mean) / torch.sqrt(var + layer.eps)
    k_s = x_hat.mean(dim=(2, 3), keepdim=True)
    x_cs = x_hat * torch.sigmoid(_cm(layer.scale_weight) * k_s + _cm(layer.scale_bias))
    return _cm(layer.weight) * x_cs + _cm(layer.bias), x_cm


def test_rbn_initial_values():
    rbn = _bare(get_norm("rbn").analysis(C))
    assert isinstance(rbn, RepresentativeBatchNorm2d)
    for name, value in [("center_weight", 0), ("scale_weight", 0), ("scale_bias", 1), ("weight", 1), ("bias", 0)]:
        assert torch.equal(getattr(rbn, name).detach(), torch.full((C,), float(value))), name


def test_rbn_train_and_eval_match_formula():
    rbn = RepresentativeBatchNorm2d(C).double()
    _randomize(rbn)
    x = _x(shift=0.8, scale=1.7)
    expected, x_cm = _rbn_reference(x, rbn, None, None)
    assert torch.allclose(rbn(x), expected, rtol=1e-10, atol=1e-10)
    mean, var = _batch_stats(x_cm)
    n = x.numel() // C
    assert torch.allclose(rbn.running_mean, 0.1 * mean.flatten())
    assert torch.allclose(rbn.running_var, 0.9 + 0.1 * var.flatten() * n / (n - 1))
    rbn.eval()
    x2 = _x(seed=5)
    expected, _ = _rbn_reference(x2, rbn, _cm(rbn.running_mean), _cm(rbn.running_var))
    assert torch.allclose(rbn(x2), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("training", [True, False])
def test_rbn_without_calibration_is_batchnorm_times_sigmoid_one(training):
    rbn = RepresentativeBatchNorm2d(C).double()
    _randomize(rbn, skip=("center_weight", "scale_weight", "scale_bias"))
    bn = nn.BatchNorm2d(C, affine=False).double()
    if not training:
        for m in (rbn, bn):  # the same non-trivial running statistics in both
            m.running_mean.copy_(torch.linspace(-1, 1, C))
            m.running_var.copy_(torch.linspace(0.5, 2, C))
    rbn.train(training)
    bn.train(training)
    x = _x(shift=0.3)
    expected = _cm(rbn.weight) * torch.sigmoid(torch.tensor(1.0, dtype=torch.float64)) * bn(x) + _cm(rbn.bias)
    assert torch.allclose(rbn(x), expected, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# Filter Response Normalization + TLU


def _frn_reference(x, layer: FilterResponseNorm2d):
    nu2 = (x**2).mean(dim=(2, 3), keepdim=True)
    x_hat = x / torch.sqrt(nu2 + _cm(layer.eps).abs())
    return torch.maximum(_cm(layer.weight) * x_hat + _cm(layer.bias), _cm(layer.tau))


def test_frn_initial_values_and_formula():
    frn = get_norm("frn").analysis(C)
    assert isinstance(frn, FilterResponseNorm2d)  # the TLU is its nonlinearity: no ReLU after it
    assert torch.equal(frn.weight.detach(), torch.ones(C))
    assert torch.equal(frn.bias.detach(), torch.zeros(C)) and torch.equal(frn.tau.detach(), torch.zeros(C))
    assert torch.allclose(frn.eps, torch.full((C,), 1e-6))
    assert "eps" not in frn.state_dict()  # a constant, not a weight
    frn = frn.double()
    _randomize(frn)
    x = _x(shift=0.5, scale=2.0)
    assert torch.allclose(frn(x), _frn_reference(x, frn), rtol=1e-10, atol=1e-12)
    frn.eval()  # no batch statistics: inference computes the same
    assert torch.allclose(frn(x), _frn_reference(x, frn), rtol=1e-10, atol=1e-12)


def test_frn_learnable_eps():
    frn = get_norm("frn").analysis(C, eps=1e-3, learnable_eps=True).double()
    assert isinstance(frn.eps, nn.Parameter)
    with torch.no_grad():
        frn.eps.copy_(torch.linspace(-0.5, 0.5, C))  # |ε| keeps it positive
    x = _x(h=1, w=1)  # a 1×1 map, where ε matters most
    y = frn(x)
    assert torch.allclose(y, _frn_reference(x, frn), rtol=1e-10, atol=1e-12)
    y.sum().backward()
    assert frn.eps.grad is not None and torch.isfinite(frn.eps.grad).all()


def test_frn_gradcheck():
    frn = FilterResponseNorm2d(3, eps=1e-2, learnable_eps=True).double()
    _randomize(frn)
    x = _x(n=2, c=3, h=3, w=3).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, *p: frn(x), (x, *frn.parameters()))


# ---------------------------------------------------------------------------------------------
# Moving Average Batch Normalization


def test_mabn_function_gradcheck_exact_regime():
    """With no history, the custom backward is the exact gradient of x / sqrt(E[x²] + ε)."""
    x = _x(n=2, c=3, h=3, w=4).requires_grad_()
    empty = torch.zeros(0, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda x: MovingAverageNormFunction.apply(x, empty, empty, 1e-5, None), (x,)
    )
    x2 = (x.detach() ** 2).mean(dim=(0, 2, 3), keepdim=True)
    y = MovingAverageNormFunction.apply(x, empty, empty, 1e-5, None)
    assert torch.allclose(y, x / torch.sqrt(x2 + 1e-5), rtol=1e-12)


def test_mabn_module_gradcheck_in_warmup():
    m = MovingAverageBatchNorm2d(3, window=4, warmup=10 ** 6).double()
    _randomize(m)
    x = _x(n=2, c=3, h=3, w=3).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, w, b: m(x), (x, m.weight, m.bias))


def test_mabn_function_backward_uses_moving_averages():
    g = torch.Generator().manual_seed(3)
    x = _x(n=3, c=4, h=4, w=5).requires_grad_()
    x2_past = torch.rand(2, 4, generator=g, dtype=torch.float64) + 0.5
    gz_past = torch.randn(2, 4, generator=g, dtype=torch.float64)
    grad = torch.randn(x.shape, generator=g, dtype=torch.float64)
    sink = torch.zeros(4, dtype=torch.float64)
    y = MovingAverageNormFunction.apply(x, x2_past, gz_past, 1e-5, sink)
    (gx,) = torch.autograd.grad(y, x, grad)
    xd = x.detach()
    chi = (x2_past.sum(0) + (xd**2).mean(dim=(0, 2, 3))) / 3
    y_ref = xd / torch.sqrt(chi.view(1, 4, 1, 1) + 1e-5)
    psi_t = (grad * y_ref).mean(dim=(0, 2, 3))
    psi = (gz_past.sum(0) + psi_t) / 3
    gx_ref = (grad - psi.view(1, 4, 1, 1) * y_ref) / torch.sqrt(chi.view(1, 4, 1, 1) + 1e-5)
    assert torch.allclose(y, y_ref, rtol=1e-12)
    assert torch.allclose(gx, gx_ref, rtol=1e-10, atol=1e-12)
    assert torch.allclose(sink, psi_t, rtol=1e-12)  # this iteration's statistic, for the history


def test_mabn_forward_window_and_running_statistics():
    window, warmup, decay, eps = 3, 4, 0.9, 1e-5
    m = MovingAverageBatchNorm2d(C, window=window, warmup=warmup, eps=eps, running_decay=decay).double()
    _randomize(m)
    x2s, running = [], torch.ones(C, dtype=torch.float64)
    for t in range(9):
        x = _x(n=2, seed=10 + t, scale=1 + t / 3).requires_grad_()
        y = m(x)
        (y * _x(n=2, seed=50 + t)).sum().backward()
        x2s.append((x.detach() ** 2).mean(dim=(0, 2, 3)))
        chi = x2s[-1] if t < max(window - 1, warmup) else torch.stack(x2s[-window:]).mean(0)
        expected = _cm(m.weight) * x.detach() / torch.sqrt(_cm(chi) + eps) + _cm(m.bias)
        assert torch.allclose(y, expected, rtol=1e-10, atol=1e-12), t
        running = decay * running + (1 - decay) * chi
        assert torch.allclose(m.running_x2, running, rtol=1e-10), t
    assert int(m.iterations) == 9
    m.eval()
    x = _x(seed=99)
    expected = _cm(m.weight) * x / torch.sqrt(_cm(m.running_x2) + eps) + _cm(m.bias)
    assert torch.allclose(m(x), expected, rtol=1e-10, atol=1e-12)


def test_mabn_module_backward_uses_gradient_history():
    """After warm-up the module's backward averages E[g ⊙ ŷ] over the window of iterations."""
    window = 3
    m = MovingAverageBatchNorm2d(C, window=window, warmup=0).double()
    xs = [_x(n=2, seed=20 + t).requires_grad_() for t in range(5)]
    grads = [_x(n=2, seed=40 + t) for t in range(5)]
    psis, x2s = [], []
    for t, (x, g) in enumerate(zip(xs, grads)):
        y = m(x)
        (gx,) = torch.autograd.grad(y, x, g)
        x2s.append((x.detach() ** 2).mean(dim=(0, 2, 3)))
        chi = x2s[-1] if t < window - 1 else torch.stack(x2s[-window:]).mean(0)
        y_hat = x.detach() / torch.sqrt(_cm(chi) + m.eps)
        psis.append((g * y_hat).mean(dim=(0, 2, 3)))  # γ = 1
        psi = psis[-1] if t < window - 1 else torch.stack(psis[-window:]).mean(0)
        expected = (g - _cm(psi) * y_hat) / torch.sqrt(_cm(chi) + m.eps)
        assert torch.allclose(gx, expected, rtol=1e-10, atol=1e-12), t


def test_centralized_convolutions():
    torch.manual_seed(0)
    conv = get_norm("mabn").conv(4, 5).double()
    deconv = get_norm("mabn").deconv(5, 3).double()
    assert isinstance(conv, CentralizedConv2d) and isinstance(deconv, CentralizedConvTranspose2d)
    x = _x(n=2, c=4, h=8, w=8)
    w = conv.weight.detach()
    w_c = w - w.mean(dim=(1, 2, 3), keepdim=True)  # each output channel's kernel minus its mean
    assert torch.allclose(conv(x), F.conv2d(x, w_c, conv.bias, stride=2, padding=2), rtol=1e-10, atol=1e-12)
    const = torch.full((1, 4, 12, 12), 3.0, dtype=torch.float64)  # away from the zero padding: the bias
    assert torch.allclose(conv(const)[..., 1:-1, 1:-1], _cm(conv.bias).expand(1, 5, 4, 4), atol=1e-12)
    z = conv(x)
    wt = deconv.weight.detach()  # (in, out, kH, kW)
    wt_c = wt - wt.mean(dim=(0, 2, 3), keepdim=True)
    ref = F.conv_transpose2d(z, wt_c, deconv.bias, stride=2, padding=2, output_padding=1)
    out = deconv(z)
    assert out.shape == (2, 3, 8, 8)
    assert torch.allclose(out, ref, rtol=1e-10, atol=1e-12)
    out.sum().backward()  # the mean is removed from the gradient as well
    assert torch.allclose(deconv.weight.grad.sum(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-9)


def test_mabn_analysis_cannot_see_the_level_of_flat_grey():
    """The consequence that docs/ablation.md measures: with weight centralization on the image-facing
    convolution, a uniform grey (R = G = B) gives that convolution its bias alone, so far from the
    frame's edge (whose zero padding is a step) the latents of every grey level are the same; GDN's
    analysis tells them apart."""
    from imgcodec.models.registry import build_model

    def centre_latents(name, level):
        torch.manual_seed(0)
        model = build_model(_config(name)).eval()
        with torch.no_grad():
            y = model.g_a(torch.full((1, 3, 256, 256), level))
        return y[..., 6:10, 6:10]  # latents 96 px and more from every edge: beyond g_a's footprint

    assert torch.allclose(centre_latents("mabn", 0.25), centre_latents("mabn", 0.75), atol=1e-5)
    assert not torch.allclose(centre_latents("gdn", 0.25), centre_latents("gdn", 0.75), atol=1e-2)


# ---------------------------------------------------------------------------------------------
# Every registered norm (parametrized over NORMS)

WIDTH = 32  # divisible by GroupNorm's default 32 groups


@pytest.mark.parametrize("name", NAMES)
def test_spec_is_complete(name):
    spec = get_norm(name)
    assert spec.description
    conv, deconv = spec.conv(3, WIDTH), spec.deconv(WIDTH, 3)
    x = torch.rand(1, 3, 16, 24)
    assert conv(x).shape == (1, WIDTH, 8, 12)
    assert deconv(conv(x)).shape == x.shape


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("side", ["analysis", "synthesis"])
def test_layer_preserves_shape_and_is_finite(name, side):
    layer = getattr(get_norm(name), side)(WIDTH)
    x = torch.randn(3, WIDTH, 6, 5, requires_grad=True)
    for training in (True, False, True):
        layer.train(training)
        y = layer(x * 1.0)  # not the leaf itself: registry ReLUs work in place
        assert y.shape == x.shape and torch.isfinite(y).all()
    y.square().mean().backward()
    assert torch.isfinite(x.grad).all()
    for p in layer.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all()


@pytest.mark.parametrize("name", NAMES)
def test_batch_dependence_flag_is_truthful(name):
    """In training, a batch-dependent layer's output for one sample depends on the others; at
    inference no layer's does (running statistics), so decoding never depends on the batch."""
    spec = get_norm(name)
    layer = spec.analysis(WIDTH)
    x = torch.randn(4, WIDTH, 6, 6) * torch.linspace(0.5, 3, 4).view(4, 1, 1, 1)
    for _ in range(3):
        layer(x)  # some non-trivial running statistics, where there are any
    alone, in_batch = layer(x[:1]), layer(x)[:1]
    assert torch.allclose(alone, in_batch, atol=1e-6) != spec.batch_dependent
    layer.eval()
    assert torch.allclose(layer(x[:1]), layer(x)[:1], atol=1e-6)


def _config(name: str) -> ModelConfig:
    """The shipped variant's config, narrowed to a test width."""
    return dataclasses.replace(ModelConfig.from_toml(default_store().models / f"factorized-{name}.toml"), N=WIDTH, M=16)


@pytest.mark.parametrize("name", NAMES)
def test_every_norm_has_a_variant_config(name):
    path = default_store().models / f"factorized-{name}.toml"
    assert path.is_file(), f"register a model config {path.name} for norm {name!r}"
    cfg, gdn = ModelConfig.from_toml(path), ModelConfig.from_toml(default_store().models / "factorized-gdn.toml")
    assert cfg.norm == name
    same = ("architecture", "N", "M", "lambdas", "default_quality", "training")
    assert {k: getattr(cfg, k) for k in same} == {k: getattr(gdn, k) for k in same}


@pytest.mark.parametrize("name", NAMES)
def test_model_with_norm_trains_one_step(name):
    from imgcodec.models.base import bits_per_pixel
    from imgcodec.models.registry import build_model

    torch.manual_seed(0)
    model = build_model(_config(name))
    model.train()
    x = torch.rand(2, 3, 32, 32)
    out = model(x)
    assert out["x_hat"].shape == x.shape
    loss = 0.01 * 255**2 * F.mse_loss(out["x_hat"], x) + bits_per_pixel(out["likelihoods"], 2 * 32 * 32)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if not n.endswith("quantiles")]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", NAMES)
def test_bitstream_decodes_to_what_the_encoder_reconstructed(name):
    from imgcodec.codec.api import compress_latents, decompress_latents
    from imgcodec.codec.tensors import array_to_tensor, pad_image, padded_size, tensor_to_array
    from imgcodec.models.registry import build_model

    torch.manual_seed(0)
    model = build_model(_config(name))
    with torch.no_grad():  # a few training-mode passes: running statistics move off their init
        for seed in range(3):
            model(torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed)))
    model.eval()
    model.update(force=True)
    rgb = natural_image(40, 56, seed=1)  # not a multiple of the stride: padded
    parts = compress_latents(model, rgb)
    decoded = decompress_latents(model, parts, 40, 56)
    with torch.inference_mode():
        x = pad_image(array_to_tensor(rgb), *padded_size(40, 56, model.stride))
        expected = tensor_to_array(model.reconstruct(x)[..., :40, :56])
    assert decoded.shape == rgb.shape
    np.testing.assert_array_equal(decoded, expected)


def test_unknown_norm_is_a_clear_error():
    with pytest.raises(ModelError, match="unknown norm 'nope'"):
        get_norm("nope")
    with pytest.raises(ValueError, match="already registered"):
        norms.register_norm("gdn", NORMS["gdn"])
