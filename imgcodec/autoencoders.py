"""Autoencoder architectures built from a ``ModelConfig``.

Not to be confused with the top-level ``models/`` folder, which holds the declarative configs.
"""

from __future__ import annotations

import math

import warnings

import torch

with warnings.catch_warnings():  # compressai 1.2 scripts a helper with the deprecated torch.jit API
    warnings.simplefilter("ignore", FutureWarning)
    import compressai.entropy_models  # noqa: F401
from compressai.entropy_models import EntropyBottleneck
from compressai.models.base import CompressionModel
from torch import nn

from .config import ModelConfig
from .errors import ModelError
from .norms import get_norm


class FactorizedPrior(CompressionModel):
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

    stride = 16

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        N, M = config.N, config.M
        norm = get_norm(config.norm)
        opts = dict(config.norm_options)
        self.g_a = nn.Sequential(
            norm.conv(3, N), norm.analysis(N, **opts),
            norm.conv(N, N), norm.analysis(N, **opts),
            norm.conv(N, N), norm.analysis(N, **opts),
            norm.conv(N, M),
        )
        self.g_s = nn.Sequential(
            norm.deconv(M, N), norm.synthesis(N, **opts),
            norm.deconv(N, N), norm.synthesis(N, **opts),
            norm.deconv(N, N), norm.synthesis(N, **opts),
            norm.deconv(N, 3),
        )
        self.entropy_bottleneck = EntropyBottleneck(M)

    def forward(self, x: torch.Tensor) -> dict:
        """Training pass: additive uniform noise stands in for rounding."""
        y = self.g_a(x)
        y_hat, y_likelihoods = self.entropy_bottleneck(y)
        x_hat = self.g_s(y_hat)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods}}

    def compress(self, x: torch.Tensor) -> dict:
        """``x``: (1, 3, H, W) with H, W multiples of ``stride``; returns the payload parts."""
        y = self.g_a(x)
        strings = self.entropy_bottleneck.compress(y)
        return {"strings": [strings], "shape": tuple(y.shape[-2:])}

    def decompress(self, strings: list, shape: tuple[int, int]) -> dict:
        y_hat = self.entropy_bottleneck.decompress(strings[0], shape)
        x_hat = self.g_s(y_hat).clamp_(0, 1)
        return {"x_hat": x_hat, "y_hat": y_hat}

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """What the decoder will output for ``x`` (rounding as the coder does), without coding."""
        y = self.g_a(x)
        medians = self.entropy_bottleneck._get_medians()
        y_hat = torch.round(y - medians) + medians
        return self.g_s(y_hat).clamp_(0, 1)


ARCHITECTURES = {"factorized": FactorizedPrior}


def build_model(config: ModelConfig) -> CompressionModel:
    try:
        cls = ARCHITECTURES[config.architecture]
    except KeyError:
        raise ModelError(
            f"unknown architecture {config.architecture!r} in model {config.name!r} "
            f"(known: {', '.join(sorted(ARCHITECTURES))})"
        ) from None
    return cls(config)


def bits_per_pixel(likelihoods: dict, num_pixels: int) -> torch.Tensor:
    """Rate estimate of a training pass: −Σ log2 p over all latents, per image pixel."""
    return sum(torch.log(l).sum() for l in likelihoods.values()) / (-math.log(2) * num_pixels)
