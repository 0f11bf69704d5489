r"""Encoder-side refinement: optimize, for one image, the latents the encoder writes.

The analysis transform ``g_a`` is trained to give good latents for all images on average; for one
given image, better ones exist (the "amortization gap"). ``refine`` starts from the analysis and
takes ``steps`` Adam steps on the latents the coder codes (``ŷ``; and ``ẑ`` for the hyperprior),
minimizing the model's own training objective (``rd_loss``: the trainer's too) for that image at
the chosen quality,

.. math::
    J = \frac{\text{bits}(\hat y, \hat z)}{\text{pixels}} + \lambda \cdot 255^2 \cdot \mathrm{MSE}(x, g_s(\hat y)),

with the same λ as the quality's training (interpolated for a fractional quality of a continuous
model). The gradient comes from a soft rounding annealed towards hard rounding
(``models.base.round_soft``, τ from 0.5 to 0.1) with the learning rate on a cosine to zero, as in
the "stochastic Gumbel annealing" of Yang, Bamler, Mandt, "Improving Inference for Neural Image
Compression", NeurIPS 2020 (here without the sampling); Campos, Meierhans, Djelouah, Schroers,
"Content Adaptive Optimization for Neural Image Compression", CVPR Workshops 2019, first refined
the latents of a trained codec. Every step also evaluates ``J`` with hard rounding, the coder's
(up to the scale table's rounding of σ), and the best latents so far are kept, the unrefined ones
included: refinement never raises ``J`` as estimated.

On the held-out validation photos, straight-through rounding stalled after 10–20 steps where this
schedule kept improving (docs/refinement.md).

The decoder and the file format are untouched: a refined file is an ordinary file of the same model
and quality, only smaller for its quality. The price is encoding time, about one training step of
the synthesis per step, and memory: the whole image's synthesis is held for the backward pass, so
refinement is refused above ``MAX_PIXELS``.
"""

from __future__ import annotations

import contextlib
import math
from contextvars import ContextVar
from dataclasses import replace

import numpy as np
import torch

from ..errors import CodecError
from ..models.base import round_soft
from . import tiling
from .tensors import array_to_tensor

# 2048 × 2048. A step's backward pass holds the synthesis's activations: a 2-megapixel image peaked
# 1.2 GB above the process's baseline (hyperprior-gdn, N = 64), ~2.5 GB at this cap.
MAX_PIXELS = 4_194_304
# Adam's step on the latents, in quantization bins. Chosen on the held-out validation photos
# (docs/refinement.md), never on Kodak.
DEFAULT_LR = 0.01
TAU_START, TAU_END = 0.5, 0.1  # the soft rounding's temperature, annealed geometrically
# ``callback(step, steps)`` of the innermost ``reporting`` block, told after each step.
_PROGRESS: ContextVar = ContextVar("imgcodec_refine_progress", default=None)


@contextlib.contextmanager
def reporting(callback):
    """Within the block, ``callback(step, steps)`` is called after each step of every refinement
    (the command line counts them on a terminal); a context variable, so other threads are not told."""
    token = _PROGRESS.set(callback)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def rd_loss(bpp: torch.Tensor, x_hat: torch.Tensor, x: torch.Tensor, lmbda: float,
            metric: str = "mse") -> tuple[torch.Tensor, torch.Tensor]:
    """The rate–distortion objective the models are trained for and refinement minimizes:
    ``J = bpp + λ·255²·MSE(x̂, x)``, or ``bpp + λ·(1 − MS-SSIM(x̂, x))`` with ``metric="ms-ssim"``
    (x̂ clamped to [0, 1] for it); returns ``(J, MSE)``."""
    mse = torch.mean((x_hat - x) ** 2)
    if metric == "mse":
        distortion = lmbda * 255**2 * mse
    else:
        from pytorch_msssim import ms_ssim  # deferred: only this metric needs it

        distortion = lmbda * (1 - ms_ssim(x_hat.clamp(0, 1), x, data_range=1.0))
    return bpp + distortion, mse


def refine_latents(model, rgb: np.ndarray, quality=None, steps: int = 50, lr: float = DEFAULT_LR,
                   device: str = "cpu", y=None) -> tuple:
    """The coded latents of an (H, W, 3) uint8 image after ``steps`` steps of refinement: the tuple
    of ``model.coded_latents``, to pass to ``model.compress_coded``.  ``quality``: a quality
    (``None``: the config's default) or a ``RatePoint`` of ``model``.

    ``y``: the analysis ``tiling.analysis(model, rgb)``, if already computed.
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise CodecError(f"refinement steps must be a whole number of at least 0, not {steps!r}")
    h, w, _ = rgb.shape
    if h * w > MAX_PIXELS:
        raise CodecError(
            f"--refine works on images of up to {MAX_PIXELS / 1e6:.1f} megapixels (it holds the whole "
            f"image's synthesis in memory); this one has {h * w / 1e6:.1f}"
        )
    config = model.config
    if config.training.metric != "mse":
        raise CodecError(f"--refine optimizes MSE; model {config.name!r} was trained for {config.training.metric}")
    with torch.no_grad():  # the gains are constants here, and ordinary tensors (not inference ones)
        point = model.rate_point(quality)
        if point.gain is not None:
            point = replace(point, gain=point.gain.clone(), inverse=point.inverse.clone())
    lmbda = point.lmbda
    with torch.inference_mode():
        if y is None:
            y = tiling.analysis(model, rgb, device)
        start = model.coded_latents(y, point)
    # Outside inference mode, as ordinary tensors that can carry a gradient.
    with torch.inference_mode(False), torch.enable_grad():
        x = array_to_tensor(rgb, device).clone()

        def objective(rd, as_tensor=False):
            bits, x_hat = rd
            j, _ = rd_loss(bits / (h * w), x_hat[..., :h, :w].clamp(0, 1), x, lmbda)
            return j if as_tensor else float(j)

        latents = [t.clone().requires_grad_(True) for t in start]
        params = [p for p in model.parameters() if p.requires_grad]
        for p in params:  # the weights stay as they are: no gradient wasted on them
            p.requires_grad_(False)
        try:
            best_j, best = float("inf"), None
            report = _PROGRESS.get()
            optimizer = torch.optim.Adam(latents, lr=lr)
            for step in range(steps + 1):
                with torch.no_grad():  # J of what the coder would write now
                    j = objective(model.rd_pass(tuple(latents), point))
                if j < best_j:
                    best_j, best = j, [t.detach().clone() for t in latents]
                if step == steps:
                    break
                progress = step / steps
                tau = TAU_START * (TAU_END / TAU_START) ** progress
                for group in optimizer.param_groups:
                    group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * progress))
                soft = model.rd_pass(tuple(latents), point, rounding=lambda v, offset: round_soft(v, offset, tau))
                optimizer.zero_grad(set_to_none=True)
                objective(soft, as_tensor=True).backward()
                optimizer.step()
                if report is not None:
                    report(step + 1, steps)
        finally:
            for p in params:
                p.requires_grad_(True)
    return tuple(best)
