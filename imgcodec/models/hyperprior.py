"""The scale hyperprior and the mean-scale hyperprior: ``ŷ`` under Gaussians whose scales (and
means) a second latent ``ẑ`` carries."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ModelError
from ..format import rans
from .base import CodecModel, RatePoint, check_codable, embed, full_precision, round_ste
from .compressai_parts import (
    EntropyBottleneck,
    GaussianConditional,
    coder_tables,
    decode_factorized,
    factorized_likelihood,
    gaussian_likelihood,
    medians,
)
from .config import ModelConfig
from .gain import GainUnits
from .norms import conv5x5, deconv5x5
from .transforms import build_transforms

# Fixed-point arithmetic of the hyper-synthesis at inference (see ScaleHyperprior.scale_indexes).
HS_ACT_BITS = 12  # fraction bits of h_s's activations and of the scale table
HS_WEIGHT_BITS = 16  # fraction bits of h_s's weights
_EXACT = float(2**53)  # every integer of smaller magnitude is a float64
# The scale a new latent channel starts with (grow_latent): below the table's smallest (0.11), so that
# the coder gives its zeros (almost) all the probability, and above 0, where h_s's ReLU passes gradient.
NEW_CHANNEL_SCALE = 0.05
# compressai's rANS encoder sizes its output by the number of symbols and writes past it when a
# payload has only one or two (heap corruption): every payload here has at least N or M symbols.
MIN_CHANNELS = 8


def hyper_shape(shape: tuple[int, int]) -> tuple[int, int]:
    """The size of ``z = h_a(|y|)`` for a latent ``y`` of ``shape``: two stride-2 convolutions."""
    return -(-shape[0] // 4), -(-shape[1] // 4)


def to_fixed(t: torch.Tensor) -> torch.Tensor:
    """``t`` in fixed point with ``HS_ACT_BITS`` fraction bits: integers held in float64, on the CPU."""
    return torch.round(t.detach().to("cpu", torch.float64) * 2.0**HS_ACT_BITS)


@torch.no_grad()
def fixed_point(layers, x: torch.Tensor) -> torch.Tensor:
    """Convolutions, transposed convolutions and ReLUs (in order) on ``x`` in fixed point, exactly.

    ``x`` and the result have ``HS_ACT_BITS`` fraction bits, the weights ``HS_WEIGHT_BITS`` (the
    biases both); each layer's sum is shifted back by ``HS_WEIGHT_BITS`` and rounded (half to even).
    Every input is clamped so that no partial sum can reach 2**53: each one is then an exact integer
    in float64, and the result does not depend on the order of the additions (the thread count, the
    BLAS, the CPU).  :class:`ModelError` for weights too large for any room.
    """
    x = x.to("cpu", torch.float64, copy=True)
    for layer in layers:
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
    return x


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

    def level_gains(self, i: int, t: float) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The gain units' gain and inverse gain at ``(i, t)``, or ``(None, None)`` without them."""
        if self.gain is None:
            return None, None
        return self.gain(i, t)

    def hyper_analysis(self, y: torch.Tensor) -> torch.Tensor:
        """``z = h_a(|y|)``: the scales need only the magnitudes."""
        return self.h_a(torch.abs(y))

    def means(self, z_hat: torch.Tensor, shape) -> torch.Tensor | None:
        """The mean of every element of ``ŷ`` given ``ẑ``: none here (zero-mean Gaussians)."""
        return None

    def entropy_parameters_of(self, y: torch.Tensor, scales: torch.Tensor, means: torch.Tensor | None,
                              rounding=round_ste) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The ``(σ, μ)`` that code ``y`` in the float passes (training, refinement), from the
        hyperprior's: the hook a context model overrides (``rounding(v, offset)`` gives it the
        decoded values it may read); here the hyperprior's as they are."""
        return scales, means

    def forward(self, x: torch.Tensor, point: RatePoint | None = None, quantization: str = "noise") -> dict:
        """Training pass at the rate ``point`` (``None``: the default one): additive uniform noise for rounding
        in the rate; with ``quantization="mixed"`` g_s gets ``round(y − μ) + μ`` (straight-through),
        what the decoder will get (Minnen & Singh, ICIP 2020)."""
        point = self.rate_point() if point is None else point
        y = self.g_a(x)
        gain, inverse = point.gain, point.inverse
        if gain is not None:
            y = y * gain
        z = self.hyper_analysis(y)
        with full_precision(z):
            z_hat, z_likelihoods = self.entropy_bottleneck(z.float())
        scales = self.h_s(z_hat)[..., : y.shape[-2], : y.shape[-1]]
        means = self.means(z_hat, y.shape[-2:])
        with full_precision(y):
            y32 = y.float()
            scales, means = self.entropy_parameters_of(y32, scales.float(), None if means is None else means.float())
            y_hat, y_likelihoods = self.gaussian_conditional(y32, scales, means=means)
        if quantization == "mixed":
            y_hat = round_ste(y32, 0.0 if means is None else means)
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
        x = fixed_point(self.h_s, to_fixed(z_hat))
        return self.fixed_scale_indexes(x[..., : shape[0], : shape[1]])

    def fixed_scale_indexes(self, scales: torch.Tensor) -> torch.Tensor:
        """The table index of every scale given in fixed point (``HS_ACT_BITS`` fraction bits)."""
        table = torch.round(self.gaussian_conditional.scale_table.detach().to("cpu", torch.float64) * 2.0**HS_ACT_BITS)
        return torch.searchsorted(table[:-1].contiguous(), scales.contiguous())

    def coded_latents(self, y: torch.Tensor, point: RatePoint) -> tuple[torch.Tensor, ...]:
        """The tensors the coder codes for the analysis ``y`` at the rate ``point``: ``(y·gain, z)``."""
        gain = point.gain
        if gain is not None:
            y = y * gain
        return y, self.hyper_analysis(y)

    def rd_pass(self, latents: tuple[torch.Tensor, ...], point: RatePoint,
                rounding=round_ste) -> tuple[torch.Tensor, torch.Tensor]:
        """``(bits, x̂)`` of coding ``latents = (y·gain, z)`` as the coder will (``ẑ`` rounded about
        the medians, ``ŷ`` about its means (zero here); by default straight-through, or ``rounding(v, offset)``; σ from
        the float ``h_s``, which the coder's table rounds up), differentiable in the latents: the
        objective of ``refine``."""
        y, z = latents
        z_hat = rounding(z, medians(self.entropy_bottleneck).view(-1, 1, 1))
        scales = self.h_s(z_hat)[..., : y.shape[-2], : y.shape[-1]]
        scales, means = self.entropy_parameters_of(y, scales, self.means(z_hat, y.shape[-2:]), rounding)
        y_hat = rounding(y, 0.0 if means is None else means)
        bits = -torch.log2(gaussian_likelihood(self.gaussian_conditional, y_hat, scales, means)).sum()
        bits = bits - torch.log2(factorized_likelihood(self.entropy_bottleneck, z_hat)).sum()
        inverse = point.inverse
        return bits, self.g_s(y_hat if inverse is None else y_hat * inverse)

    @torch.no_grad()
    def compress_coded(self, latents: tuple[torch.Tensor, ...]) -> list[bytes]:
        """The payload parts ``[ẑ, ŷ]`` of ``coded_latents`` (refined or not)."""
        y, z = latents
        check_codable(z)
        z_payload = self.entropy_bottleneck.compress(z)[0]
        # ẑ exactly as the decoder will have it: decoded from the payload.
        z_hat = decode_factorized(self.entropy_bottleneck, z_payload, tuple(z.shape[-2:]))
        indexes = self.scale_indexes(z_hat, tuple(y.shape[-2:]))
        means = self.means(z_hat, y.shape[-2:])
        if means is not None:
            means = means.to(y.device)
        check_codable(y if means is None else y - means)  # the coder codes round(y - μ)
        return [z_payload, self.gaussian_conditional.compress(y, indexes, means)[0]]

    @torch.no_grad()
    def decompress_latents(self, parts, shape: tuple[int, int], point: RatePoint) -> torch.Tensor:
        """``ŷ`` (1, M, *shape), scaled back by the inverse gain, from the parts ``[ẑ, ŷ]``; checked decoding."""
        z_hat = decode_factorized(self.entropy_bottleneck, parts[0], hyper_shape(shape))
        indexes = self.scale_indexes(z_hat, shape)
        symbols = rans.decode_indexed(parts[1], coder_tables(self.gaussian_conditional), indexes.numpy())
        y_hat = torch.from_numpy(symbols).reshape(1, self.config.M, *shape).float()
        means = self.means(z_hat, shape)
        if means is not None:
            y_hat = y_hat + means.to("cpu")
        inverse = point.inverse
        return y_hat if inverse is None else y_hat * inverse.detach().to("cpu")


    # -- growth along M ----------------------------------------------------------------------------

    def latent_growth(self, M0: int) -> dict[str, tuple[dict[int, torch.Tensor], tuple[int, ...]]]:
        """How each weight that depends on M takes its ``M0``-channel source (:func:`~.base.embed`'s
        ``places`` and ``zero``); a weight not named here keeps the old entries first, the new fresh."""
        lat = torch.arange(M0)
        g_a, h_s = f"g_a.{len(self.g_a) - 1}", f"h_s.{len(self.h_s) - 2}"
        return {
            f"{g_a}.weight": ({0: lat}, (0,)), f"{g_a}.bias": ({0: lat}, (0,)),  # new y = 0
            "h_a.0.weight": ({1: self.hyper_inputs(M0)}, (1,)),  # z does not read them yet
            f"{h_s}.weight": ({0: lat}, (0,)), f"{h_s}.bias": ({0: lat}, (0,)),  # NEW_CHANNEL_SCALE
        }

    def hyper_inputs(self, M0: int) -> torch.Tensor:
        """Where the ``M0`` channels of a narrower model's ``h_a`` input go in this model's."""
        return torch.arange(M0)

    @torch.no_grad()
    def grow_latent(self, source: "ScaleHyperprior") -> None:
        """Take ``source``, this model with fewer latent channels, as the same function.

        A new channel of ``y`` starts at zero (``g_a``'s row for it zero) while ``g_s`` reads it with
        fresh weights: the image is reconstructed as before, and the distortion's gradient reaches
        ``g_a``'s new rows at once, through ``g_s``'s, with the straight-through rounding (the other
        way round — random analysis, zero synthesis — gives ``g_s`` no gradient while the rounded
        new values are zero, and learned too slowly to matter).  ``h_a`` does not read the new
        channels yet (zero columns: ``ẑ`` unchanged), their means are zero and their scale
        ``NEW_CHANNEL_SCALE``, under the table's smallest: every zero costs ~1e-4 bit.  Gains of a
        new channel: the mean of the old channels' at every level.  The gradient is there, but the
        rate holds the new channels at zero in training (a value costs bits at the smallest scale
        before it pays): ``growth.reopen_latent`` with the trainer's ``--latent-warmup`` opens them.
        """
        M0, config = source.config.M, self.config
        if (type(source), source.config.N, source.config.hyper_channels, source.config.lambdas) != (
                type(self), config.N, config.hyper_channels, config.lambdas) or M0 > config.M:
            raise ModelError(f"{config.name} (M={config.M}) does not grow from {source.config.name} (M={M0}): "
                             "only the number of latent channels may differ")
        state, rules = self.state_dict(), self.latent_growth(M0)
        for name, old in source.state_dict().items():
            if name.startswith("gain."):
                fresh = old.mean(-1, keepdim=True).expand(*old.shape[:-1], config.M - M0)
                state[name] = torch.cat([old, fresh], dim=-1)
            elif name.startswith(("entropy_bottleneck.", "gaussian_conditional.")) or name not in rules and (
                    state[name].shape == old.shape):  # compressai's load_state_dict resizes the coder's tables
                state[name] = old
            else:
                places, zero = rules.get(name, ({}, ()))
                embed(state[name], old, places, zero)
        state[f"h_s.{len(self.h_s) - 2}.bias"][M0:] = NEW_CHANNEL_SCALE
        self.load_state_dict(state)


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

    def hyper_inputs(self, M0: int) -> torch.Tensor:
        lat = torch.arange(M0)
        return torch.cat([lat, self.config.M + lat])  # [|y|, y]

    def latent_growth(self, M0: int):
        """:meth:`ScaleHyperprior.latent_growth`, and zero means for the new channels."""
        h_m = f"h_m.{len(self.h_m) - 1}"
        lat = torch.arange(M0)
        return super().latent_growth(M0) | {f"{h_m}.weight": ({0: lat}, (0,)), f"{h_m}.bias": ({0: lat}, (0,))}

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
