"""The factorized-prior model: one latent ``ŷ`` under a non-parametric factorized density."""

from __future__ import annotations

import torch

from .base import CodecModel, RatePoint, check_codable, full_precision, round_ste
from .compressai_parts import EntropyBottleneck, decode_factorized, factorized_likelihood, medians
from .config import ModelConfig
from .transforms import build_transforms


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

    def forward(self, x: torch.Tensor, point: RatePoint | None = None, quantization: str = "noise") -> dict:
        """Training pass: additive uniform noise stands in for rounding in the rate; with
        ``quantization="mixed"`` g_s gets the rounded latents (straight-through) instead, as the
        decoder will.  ``point`` is unused: one set of weights is one rate point."""
        y = self.g_a(x)
        with full_precision(y):
            y_hat, y_likelihoods = self.entropy_bottleneck(y.float())
        if quantization == "mixed":
            y_hat = round_ste(y.float(), medians(self.entropy_bottleneck).view(1, -1, 1, 1))
        x_hat = self.g_s(y_hat)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods}}

    def coded_latents(self, y: torch.Tensor, point: RatePoint) -> tuple[torch.Tensor, ...]:
        """The tensors the coder codes for the analysis ``y``: here ``(y,)``."""
        return (y,)

    def rd_pass(self, latents: tuple[torch.Tensor, ...], point: RatePoint,
                rounding=round_ste) -> tuple[torch.Tensor, torch.Tensor]:
        """``(bits, x̂)`` of coding ``latents`` as the coder will (rounding about the medians; by
        default straight-through, or ``rounding(v, offset)``), differentiable in the latents: the
        objective of ``refine``."""
        (y,) = latents
        y_hat = rounding(y, medians(self.entropy_bottleneck).view(1, -1, 1, 1))
        bits = -torch.log2(factorized_likelihood(self.entropy_bottleneck, y_hat)).sum()
        return bits, self.g_s(y_hat)

    def compress_coded(self, latents: tuple[torch.Tensor, ...]) -> list[bytes]:
        """The payload parts ``[ŷ]`` of ``coded_latents`` (refined or not)."""
        (y,) = latents
        check_codable(y)
        return [self.entropy_bottleneck.compress(y)[0]]

    @torch.no_grad()
    def decompress_latents(self, parts, shape: tuple[int, int], point: RatePoint) -> torch.Tensor:
        """``ŷ`` (1, M, *shape) from the part ``[ŷ]``; checked decoding (compressai's own decoder
        reads past its buffer on crafted payloads)."""
        return decode_factorized(self.entropy_bottleneck, parts[0], shape)
