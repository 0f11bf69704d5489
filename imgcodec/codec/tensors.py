"""Images as tensors: uint8 (H, W, 3) arrays to (1, 3, H, W) floats in [0, 1] and back, and the
padding of a frame to the model's stride."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def pad_image(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pad (N, C, h, w) at the bottom/right to (height, width): reflect, then replicate.

    Reflection continues the picture's texture, which costs fewer bits than a flat border.
    """
    dh, dw = height - x.shape[-2], width - x.shape[-1]
    if dh == 0 and dw == 0:
        return x
    rh, rw = min(dh, x.shape[-2] - 1), min(dw, x.shape[-1] - 1)
    if rh > 0 or rw > 0:
        x = F.pad(x, (0, max(rw, 0), 0, max(rh, 0)), mode="reflect")
    return F.pad(x, (0, width - x.shape[-1], 0, height - x.shape[-2]), mode="replicate")


def padded_size(h: int, w: int, stride: int) -> tuple[int, int]:
    return -(-h // stride) * stride, -(-w // stride) * stride


def array_to_tensor(rgb: np.ndarray, device: str = "cpu") -> torch.Tensor:
    if not rgb.flags.writeable:
        rgb = rgb.copy()
    return torch.from_numpy(rgb).to(device).permute(2, 0, 1)[None].float().div_(255)


def tensor_to_array(x: torch.Tensor) -> np.ndarray:
    return x[0].mul(255).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
