"""The normalization registry: one name → the layers that follow each convolution.

Every entry is registered *with its nonlinearity*: GDN is itself the nonlinearity of the
Ballé transforms, so ``gdn`` maps to GDN in the analysis transform ``g_a`` and to IGDN in the
synthesis transform ``g_s``; batch-statistics norms go with a ReLU.  Every constructor takes the
channel count first (and the config's ``norm_options`` as keywords), so the architecture code
resolves a norm once, by name, and never special-cases one.

Tests parametrize over ``NORMS``: registering a norm is enough to have it tested.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .errors import ModelError

LayerFactory = Callable[..., nn.Module]


@dataclass(frozen=True)
class NormSpec:
    """What one norm name stands for.

    ``analysis``/``synthesis`` build the layer placed after a (transposed) convolution of ``g_a``
    and ``g_s``; ``conv``/``deconv`` build those convolutions (a norm such as MABN needs
    weight-centralized ones); ``batch_dependent`` says whether the output depends on other samples
    of the batch in training (the ablation's second axis).
    """

    analysis: LayerFactory
    synthesis: LayerFactory
    conv: LayerFactory
    deconv: LayerFactory
    batch_dependent: bool = False
    description: str = ""


def conv5x5(in_ch: int, out_ch: int) -> nn.Module:
    """5×5 stride-2 convolution that halves H and W (padding 2)."""
    return nn.Conv2d(in_ch, out_ch, kernel_size=5, stride=2, padding=2)


def deconv5x5(in_ch: int, out_ch: int) -> nn.Module:
    """5×5 stride-2 transposed convolution that doubles H and W exactly."""
    return nn.ConvTranspose2d(in_ch, out_ch, kernel_size=5, stride=2, padding=2, output_padding=1)


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
    from compressai.layers import GDN

    return GDN(channels, inverse=False)


def _igdn(channels: int, **_: object) -> nn.Module:
    from compressai.layers import GDN

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


register_norm(
    "gdn",
    NormSpec(
        _gdn, _igdn, conv5x5, deconv5x5,
        description="GDN in g_a, IGDN in g_s (Ballé et al., ICLR 2016); its own nonlinearity",
    ),
)
register_norm(
    "relu",
    NormSpec(_relu, _relu, conv5x5, deconv5x5, description="no normalization, ReLU only"),
)
register_norm(
    "bn",
    NormSpec(
        _with_relu(_batchnorm), _with_relu(_batchnorm), conv5x5, deconv5x5,
        batch_dependent=True, description="BatchNorm2d + ReLU",
    ),
)
register_norm(
    "gn",
    NormSpec(
        _with_relu(_groupnorm), _with_relu(_groupnorm), conv5x5, deconv5x5,
        description="GroupNorm (groups from norm_options, 32 by default) + ReLU",
    ),
)


