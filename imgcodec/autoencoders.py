"""Autoencoder architectures built from a ``ModelConfig``.

Not to be confused with the top-level ``models/`` folder, which holds the declarative configs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings

import torch

from . import _light

_light.load()  # compressai without its package __init__ (its data sets): see _light.py
with warnings.catch_warnings():  # compressai 1.2 scripts a helper with the deprecated torch.jit API
    warnings.simplefilter("ignore", FutureWarning)
    import compressai.entropy_models  # noqa: F401
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import GDN
from compressai.models.base import CompressionModel
from torch import nn
from torch.nn import functional as F

from . import rans
from .config import ModelConfig
from .errors import ModelError
from .norms import conv5x5, deconv5x5, get_norm


def round_ste(v: torch.Tensor, offset: torch.Tensor | float = 0.0) -> torch.Tensor:
    """``round(v - offset) + offset`` in the forward pass, the identity in the backward pass
    (straight-through): what the coder will code, with a usable gradient."""
    return v + (torch.round(v - offset) + offset - v).detach()


def round_soft(v: torch.Tensor, offset: torch.Tensor | float = 0.0, tau: float = 0.5) -> torch.Tensor:
    r"""A differentiable stand-in for ``round(v - offset) + offset``: between the two integers
    around ``v`` (after the offset), weights that tend to rounding as ``tau`` → 0,

    .. math::
        \lfloor v \rfloor + \sigma\Big(\frac{\operatorname{atanh}(r) - \operatorname{atanh}(1 - r)}{\tau}\Big),
        \quad r = v - \lfloor v \rfloor,

    the expectation of the annealed two-point distribution of Yang, Bamler, Mandt, "Improving
    Inference for Neural Image Compression" (NeurIPS 2020), without its Gumbel sampling."""
    u = v - offset
    floor = torch.floor(u).detach()
    r = (u - floor).clamp(1e-4, 1 - 1e-4)
    return floor + torch.sigmoid((torch.atanh(r) - torch.atanh(1 - r)) / tau) + offset


@contextlib.contextmanager
def full_precision(t: torch.Tensor):
    """Autocast off for the entropy models: under ``--precision bf16`` the transforms run in bf16,
    but likelihoods, quantiles and CDF tables stay fp32 so that the rate term is exact (a bf16
    likelihood has 8 significant bits; its log2 would be off by up to 0.4 %)."""
    with torch.autocast(t.device.type, enabled=False):
        yield


def factorized_likelihood(eb: EntropyBottleneck, values: torch.Tensor) -> torch.Tensor:
    """``p(values)`` under an ``EntropyBottleneck``'s density, values (1, C, H, W) already rounded
    (its ``forward`` would add noise or round without a gradient)."""
    c = values.shape[1]
    likelihood, _, _ = eb._likelihood(values.permute(1, 0, 2, 3).reshape(c, 1, -1))
    return eb.likelihood_lower_bound(likelihood)


def build_transforms(config: ModelConfig) -> tuple[nn.Sequential, nn.Sequential]:
    """``g_a`` and ``g_s`` of the Ballé models, with the norm of ``config`` from the registry.

    ``g_a`` is four 5×5 stride-2 convolutions with the analysis norm after the first three, ``g_s``
    four 5×5 stride-2 transposed convolutions with the synthesis norm after the first three.
    """
    N, M = config.N, config.M
    norm = get_norm(config.norm)
    opts = dict(config.norm_options)
    g_a = nn.Sequential(
        norm.conv(3, N), norm.analysis(N, **opts),
        norm.conv(N, N), norm.analysis(N, **opts),
        norm.conv(N, N), norm.analysis(N, **opts),
        norm.conv(N, M),
    )
    g_s = nn.Sequential(
        norm.deconv(M, N), norm.synthesis(N, **opts),
        norm.deconv(N, N), norm.synthesis(N, **opts),
        norm.deconv(N, N), norm.synthesis(N, **opts),
        norm.deconv(N, 3),
    )
    return g_a, g_s


def round_hard(v: torch.Tensor, offset: torch.Tensor | float = 0.0) -> torch.Tensor:
    """``round(v - offset) + offset``: the coder's rounding, without a gradient."""
    return torch.round(v - offset) + offset


# Pixels of context on each side that one value of g_a or g_s depends on: four 5×5 stride-2
# (transposed) convolutions reach 2 · (1 + 2 + 4 + 8) = 30 pixels.
LOCAL_FOOTPRINT = 30


class CodecModel(CompressionModel):
    """The contract every architecture implements in full; the codec, tiling, rate control,
    refinement and the trainer call only these members.

    - ``stride``: pixels per latent of ``g_a`` (the input is padded to a multiple of it);
    - ``latent_parts``: how many payload parts ``compress_coded`` writes (the header's K);
    - ``supports_gain_units``: whether a config may ask for gain units (one set of weights, every
      quality); ``grows_from``: the architectures whose trained weights :meth:`grow_from` takes;
    - :attr:`footprint`: pixels of context either side of one value of ``g_a``/``g_s``, or ``None``
      when a norm with spatial statistics makes every value depend on the whole frame (never tiled);
    - ``forward(x, quality, quantization)``: the training pass, ``{"x_hat", "likelihoods"}``;
    - ``coded_latents(y, quality)``: the tensors the coder codes for the analysis ``y = g_a(x)``;
    - ``rd_pass(latents, quality, rounding)``: ``(bits, x̂)`` of coding them, differentiable;
    - ``compress_coded(latents)``: the payload parts; ``decompress_latents(parts, shape, quality)``:
      the ``ŷ`` that ``g_s`` synthesises, decoded from them;
    - ``gains(quality)``: the gain and inverse gain of a quality, ``(None, None)`` without gain units.

    ``quality=None`` means the config's default quality.
    """

    stride = 16
    latent_parts = 1
    supports_gain_units = False
    grows_from: tuple[str, ...] = ()
    config: ModelConfig

    @property
    def footprint(self) -> int | None:
        """``LOCAL_FOOTPRINT`` when ``g_a`` and ``g_s`` are 5×5 stride-2 convolutions and pointwise
        layers only (so that tiles reproduce the whole frame), else ``None``."""
        pointwise = (nn.ReLU, nn.LeakyReLU, nn.Identity, nn.BatchNorm2d, GDN)

        def local(m) -> bool:
            if isinstance(m, nn.Sequential):
                return all(local(c) for c in m.children())
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                return m.kernel_size == (5, 5) and m.stride == (2, 2) and m.padding == (2, 2) and m.groups == 1
            if isinstance(m, nn.BatchNorm2d):
                return not m.training
            return isinstance(m, pointwise)

        if self.stride == 16 and all(len(net) == 7 and local(net) for net in (self.g_a, self.g_s)):
            return LOCAL_FOOTPRINT
        return None

    def forward(self, x: torch.Tensor, quality=None, quantization: str = "noise") -> dict:
        raise NotImplementedError

    def gains(self, quality=None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        return None, None

    def coded_latents(self, y: torch.Tensor, quality=None) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def rd_pass(self, latents: tuple[torch.Tensor, ...], quality=None,
                rounding=round_ste) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def compress_coded(self, latents: tuple[torch.Tensor, ...]) -> list[bytes]:
        raise NotImplementedError

    def decompress_latents(self, parts, shape: tuple[int, int], quality=None) -> torch.Tensor:
        raise NotImplementedError

    def grow_from(self, source: "CodecModel") -> None:
        raise ModelError(f"architecture {self.config.architecture!r} grows from no other")

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, quality=None) -> torch.Tensor:
        """What the decoder will output for ``x`` (rounding as the coder does), without coding."""
        _, x_hat = self.rd_pass(self.coded_latents(self.g_a(x), quality), quality, rounding=round_hard)
        return x_hat.clamp_(0, 1)


class FactorizedPrior(CodecModel):
    r"""Factorized-prior autoencoder of Ballé et al.

    J. Ballé, D. Minnen, S. Singh, S. J. Hwang, N. Johnston, "Variational image compression with a
    scale hyperprior", ICLR 2018 (the "factorized prior" baseline; first in Ballé, Laparra,
    Simoncelli, "End-to-end optimized image compression", ICLR 2017).

    .. math::
        y = g_a(x), \quad \hat y = \mathrm{round}(y), \quad \hat x = g_s(\hat y)

    ``g_a`` is four 5×5 stride-2 convolutions with the analysis norm after the first three,
    ``g_s`` four 5×5 stride-2 transposed convolutions with the synthesis norm after the first
    three; ``ŷ`` is coded with a non-parametric factorized density (compressai's
    ``EntropyBottleneck``) and its rANS coder.  The total stride is 16.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.g_a, self.g_s = build_transforms(config)
        self.entropy_bottleneck = EntropyBottleneck(config.M)

    def forward(self, x: torch.Tensor, quality=None, quantization: str = "noise") -> dict:
        """Training pass: additive uniform noise stands in for rounding in the rate; with
        ``quantization="mixed"`` g_s gets the rounded latents (straight-through) instead, as the
        decoder will.  ``quality`` is unused: one set of weights is one rate point."""
        y = self.g_a(x)
        with full_precision(y):
            y_hat, y_likelihoods = self.entropy_bottleneck(y.float())
        if quantization == "mixed":
            y_hat = round_ste(y.float(), self.entropy_bottleneck._get_medians().detach())
        x_hat = self.g_s(y_hat)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods}}

    def coded_latents(self, y: torch.Tensor, quality=None) -> tuple[torch.Tensor, ...]:
        """The tensors the coder codes for the analysis ``y``: here ``(y,)``."""
        return (y,)

    def rd_pass(self, latents: tuple[torch.Tensor, ...], quality=None, rounding=round_ste) -> tuple[torch.Tensor, torch.Tensor]:
        """``(bits, x̂)`` of coding ``latents`` as the coder will (rounding about the medians; by
        default straight-through, or ``rounding(v, offset)``), differentiable in the latents: the
        objective of ``refine``."""
        (y,) = latents
        y_hat = rounding(y, self.entropy_bottleneck._get_medians().detach())
        bits = -torch.log2(factorized_likelihood(self.entropy_bottleneck, y_hat)).sum()
        return bits, self.g_s(y_hat)

    def compress_coded(self, latents: tuple[torch.Tensor, ...]) -> list[bytes]:
        """The payload parts ``[ŷ]`` of ``coded_latents`` (refined or not)."""
        (y,) = latents
        _check_codable(y)
        return [self.entropy_bottleneck.compress(y)[0]]

    @torch.no_grad()
    def decompress_latents(self, parts, shape: tuple[int, int], quality=None) -> torch.Tensor:
        """``ŷ`` (1, M, *shape) from the part ``[ŷ]``; checked decoding (compressai's own decoder
        reads past its buffer on crafted payloads)."""
        return rans.decode_latent(self.entropy_bottleneck, parts[0], shape)


class GainUnits(nn.Module):
    r"""Per-channel gain vectors for a ladder of λ, interpolated exponentially between levels.

    Z. Cui, J. Wang, S. Gao, T. Guo, Y. Feng, B. Bai, "Asymmetric Gained Deep Image Compression
    With Continuous Rate Adaptation", CVPR 2021.

    Level ``l`` (one per λ of the config) has a gain vector :math:`g_l` that scales the latent
    before quantization, :math:`\hat y = \mathrm{round}(y \odot g_l)`, and an inverse gain
    :math:`g'_l` (learned separately: asymmetric) that scales it back before synthesis.  Between
    levels ``l`` and ``l + 1``, at the fraction ``t``:

    .. math::
        g = g_l^{1-t} \, g_{l+1}^{t}, \qquad g' = {g'_l}^{1-t} \, {g'_{l+1}}^{t}

    (linear interpolation of the log-gains).  The gains are stored as logarithms and constrained to
    grow with the level in every channel, :math:`\log g_{l+1} = \log g_l + \mathrm{softplus}(s_l)`:
    a higher quality never quantizes a channel more coarsely.  They start at the high-rate optimum
    for MSE, a quantization step :math:`\propto 1/\sqrt{\lambda}`, i.e. :math:`\log g_l =
    \tfrac12 (\log \lambda_l - \overline{\log \lambda})`, with :math:`g'_l = 1/g_l`.
    """

    def __init__(self, lambdas, channels: int):
        super().__init__()
        half = 0.5 * torch.log(torch.tensor([float(v) for v in lambdas], dtype=torch.float64))
        half = half - half.mean()
        steps = (half[1:] - half[:-1]).clamp(min=1e-3)
        self.log_gain = nn.Parameter(half[:1].float().repeat(channels))  # level 1
        self.log_step = nn.Parameter(torch.log(torch.expm1(steps)).float()[:, None].repeat(1, channels))
        self.log_inverse = nn.Parameter((-half).float()[:, None].repeat(1, channels))

    def log_gains(self) -> torch.Tensor:
        """(levels, channels): the log-gain of every level."""
        rises = torch.cumsum(F.softplus(self.log_step), dim=0)
        return torch.cat([self.log_gain[None], self.log_gain[None] + rises])

    def forward(self, level: int, t: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Gain and inverse gain at ``t`` of the way from ``level`` to ``level + 1``, (1, C, 1, 1) each."""
        pairs = []
        for logs in (self.log_gains(), self.log_inverse):
            v = logs[level] if t == 0 else (1 - t) * logs[level] + t * logs[level + 1]
            pairs.append(torch.exp(v).view(1, -1, 1, 1))
        return pairs[0], pairs[1]


# Fixed-point arithmetic of the hyper-synthesis at inference (see ScaleHyperprior.scale_indexes).
HS_ACT_BITS = 12  # fraction bits of h_s's activations and of the scale table
HS_WEIGHT_BITS = 16  # fraction bits of h_s's weights
_EXACT = float(2**53)  # every integer of smaller magnitude is a float64
# compressai's rANS encoder sizes its output by the number of symbols and writes past it when a
# payload has only one or two (heap corruption): every payload here has at least N or M symbols.
MIN_CHANNELS = 8


def _check_codable(t: torch.Tensor) -> None:
    # compressai's rANS encoder loops forever on a value of 2**27 or more (or NaN): refuse it.
    if not bool(torch.isfinite(t).all()) or float(t.abs().max()) >= rans.MAX_LATENT:
        raise ModelError("the model produced latents out of range (NaN or huge): broken weights?")


def hyper_shape(shape: tuple[int, int]) -> tuple[int, int]:
    """The size of ``z = h_a(|y|)`` for a latent ``y`` of ``shape``: two stride-2 convolutions."""
    return -(-shape[0] // 4), -(-shape[1] // 4)


class ScaleHyperprior(CodecModel):
    r"""Scale-hyperprior autoencoder of Ballé et al. ("bmshj2018-hyperprior").

    J. Ballé, D. Minnen, S. Singh, S. J. Hwang, N. Johnston, "Variational image compression with a
    scale hyperprior", ICLR 2018.

    .. math::
        y = g_a(x), \quad z = h_a(|y|), \quad \hat z = \mathrm{round}(z), \quad
        \sigma = h_s(\hat z), \quad \hat y = \mathrm{round}(y), \quad \hat x = g_s(\hat y)

    ``g_a``/``g_s`` are those of the factorized model (:func:`build_transforms`, the norm from the
    registry); ``h_a`` is a 3×3 convolution and two 5×5 stride-2 convolutions with ReLUs, ``h_s`` two
    5×5 stride-2 transposed convolutions and a 3×3 convolution with ReLUs, as in the paper, whatever
    the norm.  ``ẑ`` (``hyper_N`` channels, by default N) is coded with a factorized density (``EntropyBottleneck``), ``ŷ``
    (M channels) with a zero-mean Gaussian of scale σ rounded up to compressai's table of 64 scales
    from 0.11 to 256 (``GaussianConditional``).  With ``gain_units`` in the config, the latent is
    scaled by :class:`GainUnits` before quantization and back before synthesis, so one set of
    weights codes every quality.

    The file holds two latent parts, ``[ẑ, ŷ]``.  The decoder needs, for every element of ``ŷ``,
    the index of its scale in the table, computed from ``ẑ``: if encoder and decoder computed a
    different index for one element (a scale within rounding error of a table boundary, on another
    machine), the rest of the stream would decode to garbage.  :meth:`scale_indexes` therefore
    evaluates ``h_s`` in integer arithmetic, exactly, so that every machine computes the same
    indexes (see its docstring and docs/bitstream.md).
    """

    latent_parts = 2
    supports_gain_units = True

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        H, M = config.hyper_channels, config.M
        if min(config.N, M, H) < MIN_CHANNELS:
            raise ModelError(f"model {config.name!r}: N, M and hyper_N must be at least {MIN_CHANNELS}")
        self.g_a, self.g_s = build_transforms(config)
        self.h_a = nn.Sequential(
            nn.Conv2d(M, H, kernel_size=3, stride=1, padding=1), nn.ReLU(inplace=True),
            conv5x5(H, H), nn.ReLU(inplace=True),
            conv5x5(H, H),
        )
        self.h_s = nn.Sequential(
            deconv5x5(H, H), nn.ReLU(inplace=True),
            deconv5x5(H, H), nn.ReLU(inplace=True),
            nn.Conv2d(H, M, kernel_size=3, stride=1, padding=1), nn.ReLU(inplace=True),
        )
        self.entropy_bottleneck = EntropyBottleneck(H)
        self.gaussian_conditional = GaussianConditional(None)
        self.gain = GainUnits(config.lambdas, M) if config.gain_units else None

    def gains(self, quality=None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Gain and inverse gain of ``quality`` (default: the config's), or ``(None, None)``."""
        if self.gain is None:
            return None, None
        return self.gain(*self.config.level(self.config.default_quality if quality is None else quality))

    def hyper_analysis(self, y: torch.Tensor) -> torch.Tensor:
        """``z = h_a(|y|)``: the scales need only the magnitudes."""
        return self.h_a(torch.abs(y))

    def means(self, z_hat: torch.Tensor, shape) -> torch.Tensor | None:
        """The mean of every element of ``ŷ`` given ``ẑ``: none here (zero-mean Gaussians)."""
        return None

    def forward(self, x: torch.Tensor, quality=None, quantization: str = "noise") -> dict:
        """Training pass at ``quality`` (a level of the λ ladder): additive uniform noise for rounding
        in the rate; with ``quantization="mixed"`` g_s gets ``round(y − μ) + μ`` (straight-through),
        what the decoder will get (Minnen & Singh, ICIP 2020)."""
        y = self.g_a(x)
        gain, inverse = self.gains(quality)
        if gain is not None:
            y = y * gain
        z = self.hyper_analysis(y)
        with full_precision(z):
            z_hat, z_likelihoods = self.entropy_bottleneck(z.float())
        scales = self.h_s(z_hat)[..., : y.shape[-2], : y.shape[-1]]
        means = self.means(z_hat, y.shape[-2:])
        with full_precision(y):
            y_hat, y_likelihoods = self.gaussian_conditional(
                y.float(), scales.float(), means=None if means is None else means.float())
        if quantization == "mixed":
            y_hat = round_ste(y.float(), 0.0 if means is None else means.float())
        x_hat = self.g_s(y_hat if inverse is None else y_hat * inverse)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    @torch.no_grad()
    def scale_indexes(self, z_hat: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
        """The scale-table index of every element of ``ŷ`` (int64, (1, M, *shape)), bit-exact anywhere.

        ``h_s`` runs in fixed point: ``ẑ`` and the activations with ``HS_ACT_BITS`` fraction bits,
        the weights with ``HS_WEIGHT_BITS`` (the biases with both), each layer's sum shifted back by
        ``HS_WEIGHT_BITS`` and rounded (half to even); the index is the number of table scales (in
        the same fixed point, the last excepted) below the output, as compressai's ``build_indexes``
        counts them.
        The numbers are integers held in float64, and every activation is clamped so that no sum can
        reach 2**53: every partial sum is then an exact integer, so the result does not depend on the
        order of the additions — the thread count, the BLAS, the CPU.  It is computed on the CPU
        (a GPU convolution may use a transform algorithm, which is not exact).  Against the float32
        ``h_s`` of training a scale moves by ~1e-4 of itself (the rounding of weights and
        activations), which changes an index, by one, only for a scale that close to a table boundary.
        """
        x = torch.round(z_hat.detach().to("cpu", torch.float64) * 2.0**HS_ACT_BITS)
        for layer in self.h_s:
            if isinstance(layer, nn.ReLU):
                x.clamp_(min=0)
                continue
            transposed = isinstance(layer, nn.ConvTranspose2d)
            w = torch.round(layer.weight.detach().to("cpu", torch.float64) * 2.0**HS_WEIGHT_BITS)
            b = torch.round(layer.bias.detach().to("cpu", torch.float64) * 2.0 ** (HS_ACT_BITS + HS_WEIGHT_BITS))
            reach = float(w.abs().sum(dim=(0, 2, 3) if transposed else (1, 2, 3)).max())  # Σ|w| into one output
            room = _EXACT - 1 - float(b.abs().max())
            if not (math.isfinite(reach) and room > 0):
                raise ModelError("the hyper-synthesis weights are out of range: broken weights?")
            limit = math.floor(room / max(reach, 1.0))
            x.clamp_(-limit, limit)
            if transposed:
                acc = F.conv_transpose2d(x, w, b, layer.stride, layer.padding, layer.output_padding)
            else:
                acc = F.conv2d(x, w, b, layer.stride, layer.padding)
            x = torch.round(acc * 2.0**-HS_WEIGHT_BITS)
        x = x[..., : shape[0], : shape[1]].contiguous()
        table = torch.round(self.gaussian_conditional.scale_table.detach().to("cpu", torch.float64) * 2.0**HS_ACT_BITS)
        return torch.searchsorted(table[:-1].contiguous(), x)

    def coded_latents(self, y: torch.Tensor, quality=None) -> tuple[torch.Tensor, ...]:
        """The tensors the coder codes for the analysis ``y`` at ``quality``: ``(y·gain, z)``."""
        gain, _ = self.gains(quality)
        if gain is not None:
            y = y * gain
        return y, self.hyper_analysis(y)

    def rd_pass(self, latents: tuple[torch.Tensor, ...], quality=None, rounding=round_ste) -> tuple[torch.Tensor, torch.Tensor]:
        """``(bits, x̂)`` of coding ``latents = (y·gain, z)`` as the coder will (``ẑ`` rounded about
        the medians, ``ŷ`` about its means (zero here); by default straight-through, or ``rounding(v, offset)``; σ from
        the float ``h_s``, which the coder's table rounds up), differentiable in the latents: the
        objective of ``refine``."""
        y, z = latents
        z_hat = rounding(z, self.entropy_bottleneck._get_medians().detach())
        scales = self.h_s(z_hat)[..., : y.shape[-2], : y.shape[-1]]
        means = self.means(z_hat, y.shape[-2:])
        y_hat = rounding(y, 0.0 if means is None else means)
        gc = self.gaussian_conditional
        bits = -torch.log2(gc.likelihood_lower_bound(gc._likelihood(y_hat, scales, means))).sum()
        bits = bits - torch.log2(factorized_likelihood(self.entropy_bottleneck, z_hat)).sum()
        _, inverse = self.gains(quality)
        return bits, self.g_s(y_hat if inverse is None else y_hat * inverse)

    @torch.no_grad()
    def compress_coded(self, latents: tuple[torch.Tensor, ...]) -> list[bytes]:
        """The payload parts ``[ẑ, ŷ]`` of ``coded_latents`` (refined or not)."""
        y, z = latents
        _check_codable(z)
        z_payload = self.entropy_bottleneck.compress(z)[0]
        # ẑ exactly as the decoder will have it: decoded from the payload.
        z_hat = rans.decode_latent(self.entropy_bottleneck, z_payload, tuple(z.shape[-2:]))
        indexes = self.scale_indexes(z_hat, tuple(y.shape[-2:]))
        means = self.means(z_hat, y.shape[-2:])
        if means is not None:
            means = means.to(y.device)
        _check_codable(y if means is None else y - means)  # the coder codes round(y - μ)
        return [z_payload, self.gaussian_conditional.compress(y, indexes, means)[0]]

    @torch.no_grad()
    def decompress_latents(self, parts, shape: tuple[int, int], quality=None) -> torch.Tensor:
        """``ŷ`` (1, M, *shape), scaled back by the inverse gain, from the parts ``[ẑ, ŷ]``; checked decoding."""
        z_hat = rans.decode_latent(self.entropy_bottleneck, parts[0], hyper_shape(shape))
        indexes = self.scale_indexes(z_hat, shape)
        symbols = rans.decode_indexed(parts[1], rans.cdf_tables(self.gaussian_conditional), indexes.numpy())
        y_hat = torch.from_numpy(symbols).reshape(1, self.config.M, *shape).float()
        means = self.means(z_hat, shape)
        if means is not None:
            y_hat = y_hat + means.to("cpu")
        _, inverse = self.gains(quality)
        return y_hat if inverse is None else y_hat * inverse.detach().to("cpu")


class MeanScaleHyperprior(ScaleHyperprior):
    r"""Mean-scale hyperprior: the scale hyperprior with a mean for every element of ``ŷ``.

    D. Minnen, J. Ballé, G. Toderici, "Joint Autoregressive and Hierarchical Priors for Learned Image
    Compression", NeurIPS 2018 (its "mean & scale hyperprior", without the context model:
    compressai's "mbt2018-mean").

    .. math::
        z = h_a([\,|y|, y\,]), \quad \hat z = \mathrm{round}(z), \quad
        \sigma = h_s(\hat z), \quad \mu = h_m(\hat z), \quad
        \hat y = \mathrm{round}(y - \mu) + \mu, \quad \hat y \sim \mathcal N(\mu, \sigma^2) * \mathcal U(-\tfrac12, \tfrac12)

    Unlike the paper, whose ``h_s`` outputs both parameters, the means come from their own branch
    ``h_m`` (``h_s``'s layers, without the last ReLU), and ``h_a`` reads ``|y|`` and ``y`` side by
    side.  Two reasons: ``h_s`` stays the scale hyperprior's, evaluated in exact integer arithmetic
    (:meth:`ScaleHyperprior.scale_indexes`), which a shared trunk would tie to the means; and a
    trained scale hyperprior becomes this model unchanged (:meth:`grow_from`: the ``y`` half of
    ``h_a``'s first layer and ``h_m``'s last layer start at zero), so that training starts from its
    weights instead of from scratch.

    The means need not be exact across machines: the coder codes ``round(y − μ)`` with σ's table
    index, and only that index decides how the stream parses; a decoder whose ``μ`` differs by a
    float rounding outputs ``ŷ`` off by as much, not a different stream.
    """

    grows_from = ("hyperprior",)

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        H, M = config.hyper_channels, config.M
        self.h_a[0] = nn.Conv2d(2 * M, H, kernel_size=3, stride=1, padding=1)
        self.h_m = nn.Sequential(
            deconv5x5(H, H), nn.ReLU(inplace=True),
            deconv5x5(H, H), nn.ReLU(inplace=True),
            nn.Conv2d(H, M, kernel_size=3, stride=1, padding=1),
        )

    def hyper_analysis(self, y: torch.Tensor) -> torch.Tensor:
        """``z = h_a([|y|, y])``: the signs of ``y`` too, which the means need."""
        return self.h_a(torch.cat([torch.abs(y), y], dim=1))

    def means(self, z_hat: torch.Tensor, shape) -> torch.Tensor:
        # ẑ decoded from a file is on the CPU; h_m may be on a GPU
        return self.h_m(z_hat.to(self.h_m[0].weight.device))[..., : shape[0], : shape[1]]

    @torch.no_grad()
    def grow_from(self, source: ScaleHyperprior) -> None:
        """Take the weights of a trained scale hyperprior of the same widths, as the same function:
        ``h_a`` ignores ``y`` (zero weights) and ``h_m`` outputs zero means (zero last layer), so
        this model then codes every image exactly as ``source`` did; training moves on from there."""
        state = source.state_dict()
        w = state["h_a.0.weight"]
        state["h_a.0.weight"] = torch.cat([w, torch.zeros_like(w)], dim=1)
        for name, value in self.h_m.state_dict().items():
            state[f"h_m.{name}"] = torch.zeros_like(value) if name.startswith(f"{len(self.h_m) - 1}.") else value
        self.load_state_dict(state)


ARCHITECTURES = {"factorized": FactorizedPrior, "hyperprior": ScaleHyperprior, "meanscale": MeanScaleHyperprior}


def build_model(config: ModelConfig) -> CodecModel:
    try:
        cls = ARCHITECTURES[config.architecture]
    except KeyError:
        raise ModelError(
            f"unknown architecture {config.architecture!r} in model {config.name!r} "
            f"(known: {', '.join(sorted(ARCHITECTURES))})"
        ) from None
    if config.gain_units and not cls.supports_gain_units:
        have = ", ".join(sorted(k for k, c in ARCHITECTURES.items() if c.supports_gain_units))
        raise ModelError(f"model {config.name!r}: gain_units needs architecture {have}, not {config.architecture!r}")
    return cls(config)


# ---------------------------------------------------------------------------------------------
# Starting a model from another's trained weights


@torch.no_grad()
def widen(source: CodecModel, N: int) -> CodecModel:
    """``source`` with ``g_a``/``g_s`` widened to ``N`` channels, as the same function.

    Every old channel keeps its weights.  A new channel gets the fresh model's initial weights into
    it and zero weights out of it into an old channel (a convolution's new input columns; a GDN's
    coupling γ of an old channel to a new one, which its initial γ already has at zero).  The new
    channels compute something from the start while the output stays the source's, and their
    outgoing weights learn from a nonzero gradient: function-preserving growth as in Net2Net (Chen,
    Goodfellow, Shlens, ICLR 2016), with zero rather than copied units.  The hyperprior keeps its
    width (``hyper_N``), so a widened model codes images as its source did.

    Only norms that act per channel widen this way.  One that mixes channels (GroupNorm: its groups
    change with N) or weight-centralized convolutions (MABN) would change the function, which a
    probe through both transforms detects: :class:`ModelError`.
    """
    config = source.config
    if N < config.N:
        raise ModelError(f"cannot narrow model {config.name!r} from N={config.N} to N={N}")
    wide = build_model(dataclasses.replace(config, N=N, hyper_N=config.hyper_channels))
    state = wide.state_dict()
    for key, old in source.state_dict().items():
        new = state[key]
        if not key.startswith(("g_a.", "g_s.")) or new.shape == old.shape:
            state[key] = old  # compressai's load_state_dict resizes the coder's CDF tables
            continue
        module = wide.get_submodule(key.rpartition(".")[0])
        if key.endswith(".weight") and isinstance(module, nn.ConvTranspose2d):  # (in, out, kH, kW)
            new[old.shape[0]:, : old.shape[1]] = 0
        elif key.endswith(".weight") and isinstance(module, nn.Conv2d):  # (out, in, kH, kW)
            new[: old.shape[0], old.shape[1]:] = 0
        new[tuple(slice(0, n) for n in old.shape)] = old
    wide.load_state_dict(state)
    _check_same_transforms(source, wide)
    return wide


def close(a: torch.Tensor, b: torch.Tensor, tolerance: float = 1e-4) -> bool:
    """Equal up to float rounding, measured against the size of the whole tensor: an element near 0
    inherits the rounding error of large intermediate values (IGDN multiplies)."""
    return bool((a - b).abs().max() <= tolerance * (1 + b.abs().max()))


def _check_same_transforms(source: CodecModel, other: CodecModel) -> None:
    probe = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    modes = source.training, other.training
    source.eval(), other.eval()
    try:
        y = source.g_a(probe)
        same = close(other.g_a(probe), y) and close(other.g_s(y), source.g_s(y))
    finally:
        source.train(modes[0]), other.train(modes[1])
    if not same:
        raise ModelError(
            f"norm {source.config.norm!r} does not widen as the same function: "
            "train the wider model from scratch"
        )


@torch.no_grad()
def init_from(model: CodecModel, source: CodecModel) -> None:
    """Start ``model`` from the trained ``source``, as much of it as carries over.

    - The same architecture and widths: every weight.
    - ``g_a``/``g_s`` narrower than ``model``'s: widened first (:func:`widen`), then as below.
    - An architecture that ``model`` grows from (``grows_from``: a mean-scale from a scale
      hyperprior) with the same hyperprior widths: :meth:`grow_from`, the same function.
    - Otherwise, with the same norm and latent (a hyperprior from a factorized model): ``g_a`` and
      ``g_s`` carry over; the entropy models and gains start fresh.

    :class:`ModelError` for another norm, another M, or a wider N than ``model``'s.
    """
    s, d = source.config, model.config
    if (s.norm, dict(s.norm_options), s.M) != (d.norm, dict(d.norm_options), d.M) or s.N > d.N:
        raise ModelError(
            f"a {s.name} checkpoint (norm {s.norm}, N={s.N}, M={s.M}) is of another shape "
            f"than {d.name} (norm {d.norm}, N={d.N}, M={d.M})"
        )
    if s.N < d.N:
        source = widen(source, d.N)
        s = source.config
    same_hyperprior = (s.hyper_channels, s.gain_units) == (d.hyper_channels, d.gain_units)
    if s.architecture == d.architecture and same_hyperprior:
        model.load_state_dict(source.state_dict())
    elif same_hyperprior and s.architecture in model.grows_from:
        model.grow_from(source)
    else:
        model.g_a.load_state_dict(source.g_a.state_dict())
        model.g_s.load_state_dict(source.g_s.state_dict())


def bits_per_pixel(likelihoods: dict, num_pixels: int) -> torch.Tensor:
    """Rate estimate of a training pass: −Σ log2 p over all latents, per image pixel."""
    return sum(torch.log(l).sum() for l in likelihoods.values()) / (-math.log(2) * num_pixels)
