"""The parts of compressai the models use (entropy models, GDN, the model base class), imported
without compressai's package ``__init__`` and its data sets (``_light``): every module of the
models imports compressai through here, so that ``_light.load()`` always runs first, and only the
functions below touch the entropy models' private members."""

from __future__ import annotations

import warnings

import torch

from ..format import rans
from . import _light

_light.load()
with warnings.catch_warnings():  # compressai 1.2 scripts a helper with the deprecated torch.jit API
    warnings.simplefilter("ignore", FutureWarning)
    from compressai.entropy_models import EntropyBottleneck, GaussianConditional  # noqa: E402
from compressai.layers import GDN  # noqa: E402
from compressai.models.base import CompressionModel  # noqa: E402

__all__ = ["EntropyBottleneck", "GaussianConditional", "GDN", "CompressionModel", "medians",
           "factorized_likelihood", "gaussian_likelihood", "coder_tables", "decode_factorized"]


def medians(eb: EntropyBottleneck):
    """(C,): the median of each channel's density, about which the coder rounds (no gradient)."""
    return eb._get_medians().detach().reshape(-1)


def factorized_likelihood(eb: EntropyBottleneck, values):
    """``p(values)`` under an ``EntropyBottleneck``'s density, values (1, C, H, W) already rounded
    (its ``forward`` would add noise or round without a gradient)."""
    c = values.shape[1]
    likelihood, _, _ = eb._likelihood(values.permute(1, 0, 2, 3).reshape(c, 1, -1))
    return eb.likelihood_lower_bound(likelihood)


def gaussian_likelihood(gc: GaussianConditional, values, scales, means=None):
    """``p(values)`` of already rounded ``values`` under ``gc``'s Gaussians (scales lower-bounded)."""
    return gc.likelihood_lower_bound(gc._likelihood(values, scales, means))


def coder_tables(em) -> list[tuple[list[int], int, int]]:
    """The rANS tables of an ``EntropyBottleneck`` or ``GaussianConditional`` (``rans.cdf_tables``
    of its quantized CDFs, lengths and offsets), checked."""
    return rans.cdf_tables(*(t.to("cpu").numpy() for t in (em._quantized_cdf, em._cdf_length, em._offset)))


def decode_factorized(eb: EntropyBottleneck, payload: bytes, shape: tuple[int, int]):
    """``ŷ`` (1, C, h, w) float32 from a payload, exactly as ``EntropyBottleneck.decompress`` gives
    it, decoded by the bounds-checked ``rans.decode_symbols``."""
    tables = coder_tables(eb)
    symbols = rans.decode_symbols(payload, tables, shape[0] * shape[1])
    m = medians(eb).to("cpu").reshape(1, -1, 1, 1)
    return torch.from_numpy(symbols).reshape(1, len(tables), *shape).to(m.dtype) + m
