"""Validation with the real codec: the bytes of actual bitstreams and the PSNR of the decoded
8-bit images (the rate term of the loss is only an estimate)."""

from __future__ import annotations

import copy

import numpy as np
import torch

from ..codec.api import code_array
from ..eval.evaluate import bpp, psnr


@torch.no_grad()
def validate(model, images: list[np.ndarray], device: str = "cpu", quality=None) -> tuple[float, float]:
    """``(bpp, PSNR)`` of ``model`` at ``quality`` (``None``: the config's default), averaged over ``images``."""
    # On a copy: update() resizes the entropy models' CDF buffers, and a training model's buffers
    # must not change under it (DDP broadcasts them from rank 0 at the next step; a resized one
    # breaks that collective).
    model = copy.deepcopy(model).eval()
    model.update(force=True)
    point = model.rate_point(quality)
    bpps, psnrs = [], []
    for img in images:
        nbytes, decoded = code_array(model, img, device, point)
        bpps.append(bpp(nbytes, img.shape[1], img.shape[0]))
        psnrs.append(psnr(img, decoded))
    return float(np.mean(bpps)), float(np.mean(psnrs))
