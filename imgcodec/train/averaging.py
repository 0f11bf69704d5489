"""The weights that stand for a run: a moving average of the iterates (``--ema``), or schedule-free
AdamW's average, or else the last iterate.  They are what validation measures and what ships."""

from __future__ import annotations

import copy
from typing import Callable

import torch


def start_average(model: torch.nn.Module, decay: float, skip: Callable[[str], bool]) -> dict[str, torch.Tensor] | None:
    """The moving average's start, the model's parameters less those ``skip`` names (none when
    ``decay`` is 0).  It holds exactly the parameters the optimizer steps, in their order."""
    if not decay:
        return None
    return {n: p.detach().clone() for n, p in model.named_parameters() if not skip(n)}


@torch.no_grad()
def update_average(average: dict[str, torch.Tensor] | None, params: list, decay: float) -> None:
    """One step of the average towards ``params`` (in the average's order)."""
    if average is not None:
        torch._foreach_lerp_(list(average.values()), params, 1 - decay)


@torch.no_grad()
def inference_model(model, opt, ema: dict[str, torch.Tensor] | None):
    """A copy of ``model`` holding the weights to validate and ship: the moving average where there
    is one, schedule-free AdamW's average x = y + (1 − 1/β₁)(z − y) where that optimizer trains,
    else the weights themselves.  The training model is left untouched (bit for bit)."""
    copy_ = copy.deepcopy(model)
    params = dict(copy_.named_parameters())
    if ema:
        for k, v in ema.items():
            params[k].copy_(v)
    elif "train_mode" in opt.param_groups[0]:  # schedule-free AdamW
        names = {id(p): k for k, p in model.named_parameters()}
        for group in opt.param_groups:
            beta1 = group["betas"][0]
            for p in group["params"]:
                z = opt.state.get(p, {}).get("z")
                if z is not None:
                    params[names[id(p)]].copy_(torch.lerp(p, z, 1 - 1 / beta1))
    return copy_.to(memory_format=torch.contiguous_format)
