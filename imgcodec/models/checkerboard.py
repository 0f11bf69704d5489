"""The mean-scale hyperprior with a checkerboard context model: ``ŷ`` decoded in two passes, the
second half conditioned on the first."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import BitstreamError
from ..format import rans
from .base import RatePoint, check_codable, round_ste
from .compressai_parts import coder_tables, decode_factorized, medians
from .config import ModelConfig
from .gain import grown_gain_state
from .hyperprior import HS_ACT_BITS, MeanScaleHyperprior, ScaleHyperprior, fixed_point, hyper_shape, to_fixed

ONE = 2.0**HS_ACT_BITS  # 1.0 in the fixed point of the entropy parameters


def anchor_mask(shape: tuple[int, int], device=None) -> torch.Tensor:
    """(H, W) bool: the anchors of the checkerboard, the positions with ``i + j`` even."""
    i = torch.arange(shape[0], device=device)[:, None]
    j = torch.arange(shape[1], device=device)[None, :]
    return (i + j) % 2 == 0


class CheckerboardMeanScale(MeanScaleHyperprior):
    r"""Mean-scale hyperprior with a checkerboard context model.

    D. He, Y. Zheng, B. Sun, Y. Wang, H. Qin, "Checkerboard Context Model for Efficient Learned
    Image Compression", CVPR 2021, on the mean-scale hyperprior of :class:`MeanScaleHyperprior`.

    The latent positions split like the squares of a checkerboard: the *anchors* (``i + j`` even)
    are coded first, with the hyperprior's parameters alone; the others then with parameters that
    also see the decoded anchors around them:

    .. math::
        \sigma_0 = h_s(\hat z), \quad \mu_0 = h_m(\hat z), \quad
        c = g_{cm}(\hat y \odot A), \quad
        (\Delta\sigma, \Delta\mu) = g_{ep}([\sigma_0, \mu_0, c]),

        (\sigma, \mu) = (\sigma_0, \mu_0) \text{ on anchors}, \quad
        (\mathrm{ReLU}(\sigma_0 + \Delta\sigma), \mu_0 + \Delta\mu) \text{ elsewhere},

    where ``A`` is the anchor mask, ``g_cm`` a 5×5 convolution (M → 2M; reading ``ŷ ⊙ A``, it sees
    only anchors, the paper's checkerboard-masked convolution) and ``g_ep`` the entropy-parameter
    network, three 1×1 convolutions (4M → 2M → 2M → 2M) with ReLUs.  Decoding takes two passes
    whatever the image size.  Unlike the paper, the context corrects the hyperprior's parameters
    (``Δσ``, ``Δμ``) instead of replacing them: with ``g_ep``'s last layer at zero the model *is*
    the mean-scale hyperprior, so that it grows from trained weights as the same function
    (:meth:`grow_from`).

    The file holds three latent parts, ``[ẑ, ŷ anchors, ŷ others]`` (each ``ŷ`` part channel-major,
    positions in raster order).  Every parameter the coder needs — ``σ`` and ``μ`` of both passes,
    and the anchors' ``ŷ = q + μ_0`` the context reads — is computed in the exact fixed point of
    :func:`~imgcodec.models.hyperprior.fixed_point`, so the scale indexes, and with them the way the
    stream parses, are the same on every machine and thread count; the means too, so the decoded
    ``ŷ`` is bit-identical everywhere.
    """

    latent_parts = 3
    grows_from = ("meanscale", "hyperprior")

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        M = config.M
        self.context_prediction = nn.Conv2d(M, 2 * M, kernel_size=5, stride=1, padding=2)
        self.entropy_parameters = nn.Sequential(
            nn.Conv2d(4 * M, 2 * M, kernel_size=1), nn.ReLU(inplace=True),
            nn.Conv2d(2 * M, 2 * M, kernel_size=1), nn.ReLU(inplace=True),
            nn.Conv2d(2 * M, 2 * M, kernel_size=1),
        )

    # -- float parameters (training and refinement) --------------------------------------------

    def context_parameters(self, scales0, means0, anchors_hat):
        """``(σ, μ)`` of every position from the hyperprior's ``(σ_0, μ_0)`` and the anchors' ``ŷ``."""
        a = anchor_mask(scales0.shape[-2:], scales0.device)
        c = self.context_prediction(anchors_hat * a)
        d_scales, d_means = self.entropy_parameters(torch.cat([scales0, means0, c], dim=1)).chunk(2, dim=1)
        return torch.where(a, scales0, F.relu(scales0 + d_scales)), torch.where(a, means0, means0 + d_means)

    def entropy_parameters_of(self, y, scales0, means0, rounding=round_ste):
        """The context's ``(σ, μ)``: it reads the anchors rounded as the decoder will have them
        (straight-through in training, whatever the quantization of ``g_s``'s input)."""
        return self.context_parameters(scales0, means0, rounding(y, means0))

    # -- exact parameters (the coder) ------------------------------------------------------------

    def fixed_hyper_parameters(self, z_hat: torch.Tensor, shape) -> tuple[torch.Tensor, torch.Tensor]:
        """``(σ_0, μ_0)`` in fixed point (float64 integers on the CPU), exactly."""
        zf = to_fixed(z_hat)
        crop = (..., slice(0, shape[0]), slice(0, shape[1]))
        return fixed_point(self.h_s, zf)[crop], fixed_point(self.h_m, zf)[crop]

    def fixed_context_parameters(self, scales0, means0, anchors_fixed) -> tuple[torch.Tensor, torch.Tensor]:
        """``(σ, μ)`` of the non-anchors in fixed point, from the anchors' ``ŷ`` in fixed point
        (zero elsewhere), exactly."""
        c = fixed_point([self.context_prediction], anchors_fixed)
        d = fixed_point(self.entropy_parameters, torch.cat([scales0, means0, c], dim=1))
        d_scales, d_means = d.chunk(2, dim=1)
        return (scales0 + d_scales).clamp_(min=0), means0 + d_means

    def _code(self, symbols: torch.Tensor, scales: torch.Tensor) -> bytes:
        if symbols.shape[-1] == 0:  # a 1×1 latent has no second pass
            return b""
        return self.gaussian_conditional.compress(symbols, self.fixed_scale_indexes(scales))[0]

    def _decode(self, payload: bytes, scales: torch.Tensor) -> torch.Tensor:
        if scales.shape[-1] == 0:
            if payload:
                raise BitstreamError("corrupt payload: a latent part where the image has none")
            return torch.zeros(scales.shape, dtype=torch.float64)
        indexes = self.fixed_scale_indexes(scales).numpy()
        symbols = rans.decode_indexed(payload, coder_tables(self.gaussian_conditional), indexes)
        return torch.from_numpy(symbols).reshape(scales.shape).to(torch.float64)

    def _quantize(self, y: torch.Tensor, z_hat: torch.Tensor):
        """The coder's two passes over ``y`` (gain applied) given ``ẑ``: the anchor mask, the
        symbols ``q0`` (coded at the anchors) and ``q1`` (coded elsewhere), their scales, and
        ``ŷ`` in fixed point as the decoder rebuilds it, all exactly (float64 integers, CPU)."""
        shape = tuple(y.shape[-2:])
        scales0, means0 = self.fixed_hyper_parameters(z_hat, shape)
        a = anchor_mask(shape)
        y64 = y.detach().to("cpu", torch.float64)
        q0 = torch.round(y64 - means0 / ONE)
        anchors = torch.where(a, q0 * ONE + means0, 0.0)
        scales1, means1 = self.fixed_context_parameters(scales0, means0, anchors)
        q1 = torch.round(y64 - means1 / ONE)
        y_fixed = torch.where(a, anchors, q1 * ONE + means1)
        return a, q0, scales0, q1, scales1, y_fixed

    @torch.no_grad()
    def compress_coded(self, latents) -> list[bytes]:
        """The payload parts ``[ẑ, ŷ anchors, ŷ others]`` of ``coded_latents`` (refined or not)."""
        y, z = latents
        check_codable(z)
        z_payload = self.entropy_bottleneck.compress(z)[0]
        z_hat = decode_factorized(self.entropy_bottleneck, z_payload, tuple(z.shape[-2:]))
        a, q0, scales0, q1, scales1, _ = self._quantize(y, z_hat)
        check_codable(q0[..., a])
        check_codable(q1[..., ~a])
        return [z_payload, self._code(q0[..., a], scales0[..., a]), self._code(q1[..., ~a], scales1[..., ~a])]

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, point: RatePoint | None = None) -> torch.Tensor:
        """What the decoder will output for ``x``, without entropy coding: ``ŷ`` from the coder's
        fixed-point passes (:meth:`rd_pass`'s float parameters differ from them by ~1e-4, enough
        to move a rounding)."""
        point = self.rate_point() if point is None else point
        y, z = self.coded_latents(self.g_a(x), point)
        m = medians(self.entropy_bottleneck).view(1, -1, 1, 1)
        z_hat = torch.round(z - m) + m  # as decode_factorized gives it back
        y_hat = (self._quantize(y, z_hat)[-1] / ONE).float()
        inverse = point.inverse
        if inverse is not None:
            y_hat = y_hat * inverse.detach().to("cpu")
        return self.g_s(y_hat.to(x.device)).clamp_(0, 1)

    @torch.no_grad()
    def decompress_latents(self, parts, shape: tuple[int, int], point: RatePoint) -> torch.Tensor:
        """``ŷ`` (1, M, *shape), scaled back by the inverse gain, from the three parts; checked decoding."""
        z_hat = decode_factorized(self.entropy_bottleneck, parts[0], hyper_shape(shape))
        scales0, means0 = self.fixed_hyper_parameters(z_hat, shape)
        a = anchor_mask(shape)
        y_fixed = torch.zeros_like(means0)
        y_fixed[..., a] = self._decode(parts[1], scales0[..., a]) * ONE + means0[..., a]
        scales1, means1 = self.fixed_context_parameters(scales0, means0, y_fixed)
        y_fixed[..., ~a] = self._decode(parts[2], scales1[..., ~a]) * ONE + means1[..., ~a]
        y_hat = (y_fixed / ONE).float()
        inverse = point.inverse
        return y_hat if inverse is None else y_hat * inverse.detach().to("cpu")

    # -- growth ----------------------------------------------------------------------------------

    def latent_growth(self, M0: int):
        """:meth:`MeanScaleHyperprior.latent_growth`, and the context: ``g_cm`` does not read the
        new channels' anchors yet; ``g_ep`` grows as Net2Net does (Chen, Goodfellow, Shlens, ICLR
        2016: its new units read with fresh weights and write with zero ones) and gives the new
        channels zero corrections."""
        M = self.config.M
        lat = torch.arange(M0)
        params = torch.cat([lat, M + lat])  # (σ, μ) of each channel
        first, last = "entropy_parameters.0", f"entropy_parameters.{len(self.entropy_parameters) - 1}"
        rules = {"context_prediction.weight": ({1: lat}, (1,)),
                 f"{first}.weight": ({1: torch.cat([params, 2 * M + torch.arange(2 * M0)])}, (1,)),
                 f"{last}.weight": ({0: params}, (0, 1)), f"{last}.bias": ({0: params}, (0,))}
        for i in range(2, len(self.entropy_parameters) - 1, 2):
            rules[f"entropy_parameters.{i}.weight"] = ({}, (1,))
        return super().latent_growth(M0) | rules

    @torch.no_grad()
    def grow_from(self, source: ScaleHyperprior) -> None:
        """Take a trained mean-scale (or scale) hyperprior of the same widths as the same function:
        ``g_ep``'s last layer starts at zero, so the context changes no parameter until trained.
        A source with a shorter λ ladder, whose levels this model's holds in a row, gives those
        levels; the new ones get their gains by the high-rate rule (:meth:`GainUnits.extend_from`)."""
        if not isinstance(source, MeanScaleHyperprior):
            grown = MeanScaleHyperprior(source.config)
            grown.grow_from(source)
            source = grown
        own_gain, source_gain = self.gain, source.gain
        state = {k: v for k, v in source.state_dict().items() if not k.startswith("gain.")}
        own = self.state_dict()
        for name in own:
            if name.startswith(("context_prediction.", "entropy_parameters.")):
                state[name] = own[name]
        last = f"entropy_parameters.{len(self.entropy_parameters) - 1}."
        for name in (last + "weight", last + "bias"):
            state[name] = torch.zeros_like(own[name])
        if own_gain is not None:
            state.update(grown_gain_state(own_gain, source_gain, source.config.lambdas, self.config.lambdas))
        self.load_state_dict(state)
