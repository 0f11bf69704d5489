"""Running the transforms fast on the CPU, with the same numbers (docs/performance.md).

* ``fast_layout``: activations channels-last (NHWC), so that oneDNN's convolutions skip a reorder of
  every activation on the way in and out.  One catch: a (1, C, H, W) tensor made by permuting an
  (H, W, C) array has a batch stride that makes torch's layout heuristic read it as NCHW, and every
  layer then runs NCHW; ``fast_layout`` gives it the canonical channels-last strides.
* ``run``: a ``Sequential`` layer by layer, with compressai's GDN/IGDN evaluated in bands of rows
  (``gdn``): the normalisation of a band — ``x²``, the 1×1 convolution as one matrix product,
  ``rsqrt``/``sqrt``, the product with ``x`` — stays in the cache instead of streaming five
  full-size tensors through memory.  Each output value is the same sum in the same order as
  compressai's ``F.conv2d`` on the whole tensor (``tests/test_bench.py`` checks equality).

Only inference on the CPU takes this path; training and other devices run the modules as they are.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.compressai_parts import GDN

CL = torch.channels_last
GDN_BAND_BYTES = 1 << 20  # rows of a band: about 1 MiB of activations (it stays in L2)


def fast_layout(x: torch.Tensor) -> torch.Tensor:
    """``x`` channels-last with unambiguous strides on the CPU (unchanged elsewhere)."""
    if x.device.type != "cpu" or x.dim() != 4:
        return x
    x = x.contiguous(memory_format=CL)
    n, c, h, w = x.shape
    return x.as_strided(x.shape, (h * w * c, 1, w * c, c))


def _is_gdn(m: nn.Module) -> bool:
    return type(m) is GDN


def gdn(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """compressai's ``GDN.forward`` (``x · rsqrt(β + γ·x²)``, IGDN ``x · sqrt(…)``) in bands of rows
    of a channels-last ``x``; the same numbers."""
    n, c, h, w = x.shape
    gamma_t = m.gamma_reparam(m.gamma).t()  # (C_in, C_out): x² (pixels × C_in) @ γᵀ
    beta = m.beta_reparam(m.beta)
    out = torch.empty_like(x, memory_format=CL)
    xs, os_ = x.permute(0, 2, 3, 1), out.permute(0, 2, 3, 1)  # NHWC views
    rows = max(1, GDN_BAND_BYTES // max(1, w * c * x.element_size()))
    for b in range(n):
        for r0 in range(0, h, rows):
            band = xs[b, r0 : r0 + rows].reshape(-1, c)
            norm = torch.addmm(beta, band * band, gamma_t)
            (norm.sqrt_() if m.inverse else norm.rsqrt_()).mul_(band)
            os_[b, r0 : r0 + rows] = norm.view(-1, w, c)
    return out


def run(seq: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``seq(x)``; on the CPU in inference, channels-last with the banded GDN."""
    if x.device.type != "cpu" or torch.is_grad_enabled() or seq.training:
        return seq(x)
    x = fast_layout(x)
    if "forward" in vars(seq):  # a forward set on this instance (a wrapper, a test's probe): keep it
        return seq(x)
    return _layers(seq, x)


def _layers(seq: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    for m in seq:
        if type(m) is nn.Sequential and "forward" not in vars(m):  # a norm's layers (GroupNorm, activation)
            x = _layers(m, x)
        elif _is_gdn(m) and x.is_contiguous(memory_format=CL):
            x = gdn(m, x)
        elif isinstance(m, nn.GroupNorm):
            # channels-last, torch sums a group's statistics in float32 position by position into
            # one running sum per thread (off the float64 statistics by ~1e-5, differently for each
            # thread count); on NCHW by cascaded moments, whose pixels agree with the ONNX graph's
            x = fast_layout(m(x.contiguous()))
        else:
            x = m(x)
    return x

