"""The normalization registry: one name → the layers that follow each convolution.

Every entry is registered *with its nonlinearity*: GDN is itself the nonlinearity of the
Ballé transforms, so ``gdn`` maps to GDN in the analysis transform ``g_a`` and to IGDN in the
synthesis transform ``g_s``; batch-statistics norms go with a ReLU.  Every constructor takes the
channel count first (and the config's ``norm_options`` as keywords), so the architecture code
resolves a norm once, by name, and never special-cases one.

Tests parametrize over ``NORMS``: registering a norm is enough to have it tested.

The entries (``docs/ablation.md`` compares them):

=========  ===========================================================  ===============
name       layer after each convolution (g_a / g_s)                     batch-dependent
=========  ===========================================================  ===============
``gdn``    GDN / IGDN (Ballé et al. 2016), its own nonlinearity         no
``relu``   ReLU only, no normalization                                  no
``bn``     BatchNorm2d + ReLU                                           yes
``gn``     GroupNorm (``groups``, 32 by default) + ReLU                 no
``rbn``    Representative BatchNorm (Gao et al. 2021) + ReLU            yes
``frn``    Filter Response Normalization + TLU (Singh & Krishnan 2020)  no
``mabn``   Moving Average BatchNorm (Yan et al. 2020) + ReLU, with      yes
           weight-centralized (transposed) convolutions
=========  ===========================================================  ===============
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError
from .compressai_parts import GDN

LayerFactory = Callable[..., nn.Module]


@dataclass(frozen=True)
class NormSpec:
    """What one norm name stands for.

    ``analysis``/``synthesis`` build the layer placed after a (transposed) convolution of ``g_a``
    and ``g_s``; ``conv``/``deconv`` build those convolutions (a norm such as MABN needs
    weight-centralized ones); ``batch_dependent`` says whether the output depends on other samples
    of the batch in training (the ablation's second axis); ``local`` whether, at inference, the
    layer acts on each position alone (no statistics over H and W), so that ``g_a``/``g_s`` have a
    bounded footprint and an image may be coded in tiles.
    """

    analysis: LayerFactory
    synthesis: LayerFactory
    conv: LayerFactory
    deconv: LayerFactory
    batch_dependent: bool = False
    description: str = ""
    local: bool = False


def conv5x5(in_ch: int, out_ch: int, cls: type = nn.Conv2d) -> nn.Module:
    """5×5 stride-2 convolution that halves H and W (padding 2)."""
    return cls(in_ch, out_ch, kernel_size=5, stride=2, padding=2)


def deconv5x5(in_ch: int, out_ch: int, cls: type = nn.ConvTranspose2d) -> nn.Module:
    """5×5 stride-2 transposed convolution that doubles H and W exactly."""
    return cls(in_ch, out_ch, kernel_size=5, stride=2, padding=2, output_padding=1)


NORMS: dict[str, NormSpec] = {}


def register_norm(name: str, spec: NormSpec) -> NormSpec:
    if name in NORMS:
        raise ValueError(f"norm {name!r} is already registered")
    NORMS[name] = spec
    return spec


def get_norm(name: str) -> NormSpec:
    try:
        return NORMS[name]
    except KeyError:
        raise ModelError(f"unknown norm {name!r} (known: {', '.join(sorted(NORMS))})") from None


def _gdn(channels: int, **_: object) -> nn.Module:
    return GDN(channels, inverse=False)


def _igdn(channels: int, **_: object) -> nn.Module:
    return GDN(channels, inverse=True)


def _with_relu(norm: LayerFactory) -> LayerFactory:
    def build(channels: int, **options: object) -> nn.Module:
        return nn.Sequential(norm(channels, **options), nn.ReLU(inplace=True))

    return build


def _relu(channels: int, **_: object) -> nn.Module:
    return nn.ReLU(inplace=True)


def _batchnorm(channels: int, **_: object) -> nn.Module:
    return nn.BatchNorm2d(channels)


def _groupnorm(channels: int, groups: int = 32, **_: object) -> nn.Module:
    if channels % groups:
        raise ModelError(f"GroupNorm: {groups} groups do not divide {channels} channels")
    return nn.GroupNorm(groups, channels)


# ---------------------------------------------------------------------------------------------
# Layers that torch and compressai do not provide


class RepresentativeBatchNorm2d(nn.Module):
    r"""Representative Batch Normalization (RBN): BatchNorm with instance-level feature calibration.

    S.-H. Gao, Q. Han, D. Li, M.-M. Cheng, P. Peng, "Representative Batch Normalization with Feature
    Calibration", CVPR 2021.

    With :math:`K_m(x)` and :math:`K_s(\hat x)` the per-sample, per-channel means over H and W:

    .. math::
        x_{cm} &= x + w_m \odot K_m(x) \\
        \hat x &= \frac{x_{cm} - \mathrm{E}[x_{cm}]}{\sqrt{\mathrm{Var}[x_{cm}] + \epsilon}} \\
        x_{cs} &= \hat x \cdot \mathrm{sigmoid}(w_v \odot K_s(\hat x) + w_b) \\
        y &= \gamma \, x_{cs} + \beta

    The centring calibration (:math:`w_m`) and the scaling calibration (:math:`w_v, w_b`) are
    per-channel.  The statistics of :math:`\hat x` are those of the batch (over N, H, W, biased
    variance) in training and the running ones at inference, exactly as in ``BatchNorm2d``
    (``momentum`` 0.1, unbiased variance in the running estimate).  Initialised to
    :math:`w_m = 0, w_v = 0, w_b = 1, \gamma = 1, \beta = 0`, so a fresh layer is BatchNorm scaled by
    :math:`\mathrm{sigmoid}(1)`.

    Parameters: ``weight`` (γ), ``bias`` (β), ``center_weight`` (:math:`w_m`), ``scale_weight``
    (:math:`w_v`), ``scale_bias`` (:math:`w_b`); buffers ``running_mean``, ``running_var``.
    """

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.channels, self.eps, self.momentum = channels, float(eps), float(momentum)
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.center_weight = nn.Parameter(torch.zeros(channels))
        self.scale_weight = nn.Parameter(torch.zeros(channels))
        self.scale_bias = nn.Parameter(torch.ones(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = (1, -1, 1, 1)
        x_cm = x + self.center_weight.view(c) * x.mean(dim=(2, 3), keepdim=True)
        x_hat = F.batch_norm(
            x_cm, self.running_mean, self.running_var, None, None, self.training, self.momentum, self.eps
        )
        scale = torch.sigmoid(self.scale_weight.view(c) * x_hat.mean(dim=(2, 3), keepdim=True) + self.scale_bias.view(c))
        return self.weight.view(c) * (x_hat * scale) + self.bias.view(c)

    def extra_repr(self) -> str:
        return f"{self.channels}, eps={self.eps}, momentum={self.momentum}"


class FilterResponseNorm2d(nn.Module):
    r"""Filter Response Normalization with its Thresholded Linear Unit (FRN + TLU).

    S. Singh, S. Krishnan, "Filter Response Normalization Layer: Eliminating Batch Dependence in the
    Training of Deep Neural Networks", CVPR 2020.

    .. math::
        \nu^2 = \frac{1}{HW} \sum_{h,w} x^2, \qquad
        \hat x = \frac{x}{\sqrt{\nu^2 + |\epsilon|}}, \qquad
        y = \max(\gamma \hat x + \beta, \tau)

    per sample and channel: no mean subtraction and no batch statistics, so training and inference
    compute the same thing.  The TLU (the max with the learned threshold τ) is the layer's
    nonlinearity.  Initialised to γ = 1, β = 0, τ = 0; ε = ``eps`` (1e-6), a constant, or a learned
    per-channel parameter with ``learnable_eps=True`` (the paper's option for small activation maps;
    the absolute value keeps it positive).
    """

    def __init__(self, channels: int, eps: float = 1e-6, learnable_eps: bool = False):
        super().__init__()
        self.channels = channels
        self.weight = nn.Parameter(torch.ones(channels))  # γ
        self.bias = nn.Parameter(torch.zeros(channels))  # β
        self.tau = nn.Parameter(torch.zeros(channels))
        self.learnable_eps = bool(learnable_eps)
        if self.learnable_eps:
            self.eps = nn.Parameter(torch.full((channels,), float(eps)))
        else:
            self.register_buffer("eps", torch.full((channels,), float(eps)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = (1, -1, 1, 1)
        nu2 = x.pow(2).mean(dim=(2, 3), keepdim=True)
        x_hat = x * torch.rsqrt(nu2 + self.eps.abs().view(c))
        return torch.maximum(self.weight.view(c) * x_hat + self.bias.view(c), self.tau.view(c))

    def extra_repr(self) -> str:
        return f"{self.channels}, learnable_eps={self.learnable_eps}"


class MovingAverageNormFunction(torch.autograd.Function):
    r"""MABN's normalization ``x / sqrt(χ̄ + ε)`` with the backward pass of Yan et al. (2020).

    ``forward(x, x2_past, gz_past, eps, gz_sink)``: ``x2_past`` and ``gz_past`` (k × C) hold the
    per-channel statistics of the k previous iterations (k = 0: this batch's alone).  With
    :math:`\chi_t = \mathrm{E}_{N,H,W}[x^2]` of this batch,

    .. math::
        \bar\chi = \mathrm{mean}(\chi_{t-k}, \dots, \chi_t), \qquad \hat y = \frac{x}{\sqrt{\bar\chi + \epsilon}}

    and, with :math:`g = \partial L / \partial \hat y` and :math:`\psi_t = \mathrm{E}_{N,H,W}[g \odot \hat y]`,

    .. math::
        \bar\psi = \mathrm{mean}(\psi_{t-k}, \dots, \psi_t), \qquad
        \frac{\partial L}{\partial x} = \frac{g - \bar\psi \, \hat y}{\sqrt{\bar\chi + \epsilon}}

    With k = 0 this is the exact gradient of :math:`x / \sqrt{\chi_t + \epsilon}` (what ``gradcheck``
    verifies); with k > 0 it is the paper's moving-average approximation, which deliberately keeps
    the noisy per-batch :math:`\psi_t` out of the gradient.  ``gz_sink`` (a length-C tensor or
    ``None``) receives :math:`\psi_t` during the backward pass, for the caller's history.
    """

    @staticmethod
    def forward(ctx, x, x2_past, gz_past, eps, gz_sink):
        x2 = x.pow(2).mean(dim=(0, 2, 3))
        chi = torch.cat([x2_past.to(x2.dtype), x2[None]]).mean(dim=0)
        inv_std = torch.rsqrt(chi + eps).view(1, -1, 1, 1)
        y = x * inv_std
        ctx.save_for_backward(y, inv_std, gz_past)
        ctx.gz_sink = gz_sink
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        y, inv_std, gz_past = ctx.saved_tensors
        gz = (grad * y).mean(dim=(0, 2, 3))
        if ctx.gz_sink is not None:
            ctx.gz_sink.copy_(gz)
        psi = torch.cat([gz_past.to(gz.dtype), gz[None]]).mean(dim=0)
        grad_x = (grad - y * psi.view(1, -1, 1, 1)) * inv_std
        return grad_x, None, None, None, None


class MovingAverageBatchNorm2d(nn.Module):
    r"""Moving Average Batch Normalization (MABN), without mean subtraction.

    J. Yan, R. Wan, X. Zhang, W. Zhang, Y. Wei, J. Sun, "Towards Stabilizing Batch Statistics in
    Backward Propagation of Batch Normalization", ICLR 2020.

    .. math::
        \chi_t = \mathrm{E}_{N,H,W}[x^2], \qquad
        \bar\chi_t = \frac{1}{B} \sum_{s=0}^{B-1} \chi_{t-s}, \qquad
        y = \gamma \frac{x}{\sqrt{\bar\chi_t + \epsilon}} + \beta

    per channel, where B = ``window`` iterations (simple moving average of the batch statistics);
    the backward pass likewise averages its own statistic :math:`\mathrm{E}[g \odot \hat y]` over the
    last B iterations (:class:`MovingAverageNormFunction`).  For the first ``max(window - 1,
    warmup)`` iterations the layer uses this batch's statistics alone (exact gradients), as the
    reference implementation does.  At inference :math:`\bar\chi` is replaced by ``running_x2``, an
    exponential moving average (decay ``running_decay``) of the :math:`\bar\chi_t` used in training.

    Mean subtraction is dropped; the convolutions of this variant are weight-centralized
    (:class:`CentralizedConv2d`) instead, which keeps the features' mean near zero.  The reference
    code's clipped renormalization factor (as in Batch Renormalization) is not part of the formulas
    above and is left out.
    """

    def __init__(self, channels: int, window: int = 16, warmup: int = 100, eps: float = 1e-5,
                 running_decay: float = 0.98):
        super().__init__()
        if window < 1:
            raise ModelError(f"MABN: window must be at least 1, not {window}")
        self.channels, self.window, self.warmup = channels, int(window), int(warmup)
        self.eps, self.running_decay = float(eps), float(running_decay)
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_x2", torch.ones(channels))
        self.register_buffer("x2_history", torch.zeros(self.window, channels))
        self.register_buffer("gz_history", torch.zeros(self.window, channels))
        self.register_buffer("iterations", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = (1, -1, 1, 1)
        if not self.training:
            return self.weight.view(c) * x * torch.rsqrt(self.running_x2 + self.eps).view(c) + self.bias.view(c)
        t = int(self.iterations)
        slot = t % self.window
        if t >= max(self.window - 1, self.warmup):
            past = [(t - s) % self.window for s in range(1, self.window)]
        else:
            past = []
        x2_past = self.x2_history[past].clone()
        gz_past = self.gz_history[past].clone()
        sink = self.gz_history[slot] if torch.is_grad_enabled() and x.requires_grad else None
        y = MovingAverageNormFunction.apply(x, x2_past, gz_past, self.eps, sink)
        with torch.no_grad():
            x2 = x.detach().pow(2).mean(dim=(0, 2, 3))
            chi = torch.cat([x2_past, x2[None]]).mean(dim=0)
            self.x2_history[slot] = x2
            self.running_x2.mul_(self.running_decay).add_(chi, alpha=1 - self.running_decay)
            self.iterations += 1
        return self.weight.view(c) * y + self.bias.view(c)

    def extra_repr(self) -> str:
        return f"{self.channels}, window={self.window}, warmup={self.warmup}, eps={self.eps}"


class CentralizedConv2d(nn.Conv2d):
    r"""Convolution with weight centralization: :math:`\hat W_o = W_o - \mathrm{mean}(W_o)`.

    Each output channel's kernel (over input channels and taps) has its mean subtracted before
    use, so a feature map's mean no longer follows its input's (Yan et al., ICLR 2020, §4.2; the
    reason MABN can drop mean subtraction).  The stored ``weight`` is the raw one.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight - self.weight.mean(dim=(1, 2, 3), keepdim=True), self.bias)


class CentralizedConvTranspose2d(nn.ConvTranspose2d):
    r"""Transposed convolution with weight centralization per output channel.

    The weight is stored (in, out, kH, kW); each output channel's kernel (over input channels and
    taps, dims 0, 2, 3) has its mean subtracted before use.
    """

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        if self.groups != 1 or output_size is not None:
            raise NotImplementedError("CentralizedConvTranspose2d supports groups=1 without output_size")
        w = self.weight - self.weight.mean(dim=(0, 2, 3), keepdim=True)
        return F.conv_transpose2d(
            x, w, self.bias, self.stride, self.padding, self.output_padding, self.groups, self.dilation
        )


def centralized_conv5x5(in_ch: int, out_ch: int) -> nn.Module:
    return conv5x5(in_ch, out_ch, CentralizedConv2d)


def centralized_deconv5x5(in_ch: int, out_ch: int) -> nn.Module:
    return deconv5x5(in_ch, out_ch, CentralizedConvTranspose2d)


def _rbn(channels: int, eps: float = 1e-5, momentum: float = 0.1, **_: object) -> nn.Module:
    return RepresentativeBatchNorm2d(channels, eps=eps, momentum=momentum)


def _frn(channels: int, eps: float = 1e-6, learnable_eps: bool = False, **_: object) -> nn.Module:
    return FilterResponseNorm2d(channels, eps=eps, learnable_eps=learnable_eps)


def _mabn(channels: int, window: int = 16, warmup: int = 100, eps: float = 1e-5,
          running_decay: float = 0.98, **_: object) -> nn.Module:
    return MovingAverageBatchNorm2d(channels, window=window, warmup=warmup, eps=eps, running_decay=running_decay)


register_norm(
    "gdn",
    NormSpec(
        _gdn, _igdn, conv5x5, deconv5x5, local=True,
        description="GDN in g_a, IGDN in g_s (Ballé et al., ICLR 2016); its own nonlinearity",
    ),
)
register_norm(
    "relu",
    NormSpec(_relu, _relu, conv5x5, deconv5x5, local=True, description="no normalization, ReLU only"),
)
register_norm(
    "bn",
    NormSpec(
        _with_relu(_batchnorm), _with_relu(_batchnorm), conv5x5, deconv5x5,
        batch_dependent=True, local=True, description="BatchNorm2d + ReLU (running statistics at inference)",
    ),
)
register_norm(
    "gn",
    NormSpec(
        _with_relu(_groupnorm), _with_relu(_groupnorm), conv5x5, deconv5x5,
        description="GroupNorm (groups from norm_options, 32 by default) + ReLU",
    ),
)
register_norm(
    "rbn",
    NormSpec(
        _with_relu(_rbn), _with_relu(_rbn), conv5x5, deconv5x5,
        batch_dependent=True, description="Representative BatchNorm (Gao et al., CVPR 2021) + ReLU",
    ),
)
register_norm(
    "frn",
    NormSpec(
        _frn, _frn, conv5x5, deconv5x5,
        description="Filter Response Normalization + TLU (Singh & Krishnan, CVPR 2020)",
    ),
)
register_norm(
    "mabn",
    NormSpec(
        _with_relu(_mabn), _with_relu(_mabn), centralized_conv5x5, centralized_deconv5x5,
        batch_dependent=True,
        description="Moving Average BatchNorm (Yan et al., ICLR 2020) + ReLU, weight-centralized convs",
    ),
)
