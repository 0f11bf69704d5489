"""The architectures by name, as a config's ``architecture`` names them."""

from __future__ import annotations

from ..errors import ModelError
from .base import CodecModel
from .checkerboard import CheckerboardMeanScale
from .config import ModelConfig
from .factorized import FactorizedPrior
from .hyperprior import MeanScaleHyperprior, ScaleHyperprior

ARCHITECTURES = {"factorized": FactorizedPrior, "hyperprior": ScaleHyperprior, "meanscale": MeanScaleHyperprior,
                 "checkerboard": CheckerboardMeanScale}


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
