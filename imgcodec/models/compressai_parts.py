"""The parts of compressai the models use (entropy models, GDN, the model base class), imported
without compressai's package ``__init__`` and its data sets (``_light``): every module of the
models imports compressai through here, so that ``_light.load()`` always runs first."""

from __future__ import annotations

import warnings

from . import _light

_light.load()
with warnings.catch_warnings():  # compressai 1.2 scripts a helper with the deprecated torch.jit API
    warnings.simplefilter("ignore", FutureWarning)
    from compressai.entropy_models import EntropyBottleneck, GaussianConditional  # noqa: E402
from compressai.layers import GDN  # noqa: E402
from compressai.models.base import CompressionModel  # noqa: E402

__all__ = ["EntropyBottleneck", "GaussianConditional", "GDN", "CompressionModel"]
