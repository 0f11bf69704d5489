"""The analysis and synthesis transforms ``g_a``/``g_s`` of the Ballé models, with a norm from the
registry (``norms``)."""

from __future__ import annotations

from torch import nn

from .config import ModelConfig
from .norms import get_norm


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
