"""Gain units: one set of weights for every quality of a λ ladder (continuous rate)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ModelError


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

    @torch.no_grad()
    def extend_from(self, source: "GainUnits", source_lambdas, lambdas) -> None:
        """Take a trained ``source`` whose ladder ``source_lambdas`` is a run of consecutive levels
        of ``lambdas``: its levels unchanged, each new level's gain (and inverse) moved from its
        neighbour by the high-rate rule, :math:`\tfrac12 \\log(\\lambda_{l+1} / \\lambda_l)` in every
        channel (down for a level below, up for one above)."""
        source_lambdas, lambdas = tuple(source_lambdas), tuple(lambdas)
        k = len(source_lambdas)
        offsets = [o for o in range(len(lambdas) - k + 1) if lambdas[o:o + k] == source_lambdas]
        if not offsets or source.log_gain.shape != self.log_gain.shape:
            raise ModelError("gain units grow only onto a longer λ ladder of the same channels "
                             "that holds the source's levels in a row")
        o = offsets[0]

        def step(level: int) -> float:  # from level - 1 up to level
            return max(0.5 * math.log(lambdas[level] / lambdas[level - 1]), 1e-3)

        below = sum(step(level) for level in range(1, o + 1))
        self.log_gain.copy_(source.log_gain - below)
        self.log_step[o:o + k - 1] = source.log_step
        self.log_inverse[o:o + k] = source.log_inverse
        for level in range(o, 0, -1):
            self.log_step[level - 1] = math.log(math.expm1(step(level)))
            self.log_inverse[level - 1] = self.log_inverse[level] + step(level)
        for level in range(o + k, len(lambdas)):
            self.log_step[level - 1] = math.log(math.expm1(step(level)))
            self.log_inverse[level] = self.log_inverse[level - 1] - step(level)


def grown_gain_state(own: GainUnits, source: GainUnits | None, source_lambdas, lambdas) -> dict:
    """The ``gain.*`` entries of a state dict: ``own`` grown from ``source`` (:meth:`GainUnits.extend_from`)."""
    if source is None:
        raise ModelError("a model without gain units cannot give a model with them its gains")
    own.extend_from(source, source_lambdas, lambdas)
    return {f"gain.{k}": v for k, v in own.state_dict().items()}
