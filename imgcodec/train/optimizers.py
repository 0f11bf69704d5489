"""The optimizers of a run and what they optimize.

The network's parameters follow the R-D loss with the run's optimizer (``Optimizer``); the entropy
bottleneck's quantiles follow their own auxiliary loss with their own Adam.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .averaging import inference_model, start_average
from .options import Optimizer, TrainOptions


def is_aux(name: str) -> bool:
    """Whether the parameter ``name`` follows the auxiliary loss (an entropy bottleneck's quantiles)."""
    return name.endswith(".quantiles")


def make_optimizer(name: Optimizer | str, params: list, lr: float) -> torch.optim.Optimizer:
    """The optimizer of the network's parameters:

    - ``adam``;
    - ``schedulefree``: schedule-free AdamW (A. Defazio et al., "The Road Less Scheduled",
      NeurIPS 2024), which needs no decay and no known end: training can continue from its state
      indefinitely.  It trains at the interpolation y of its iterates z and their average x, and x
      is the model to evaluate (``averaging.inference_model``);
    - ``soap``: Adam in the eigenbasis of Shampoo's preconditioner, refreshed every 10 steps
      (N. Vyas et al., "SOAP: Improving and Stabilizing Shampoo using Adam", ICLR 2025), with the
      paper's betas.
    """
    name = Optimizer.parse(name)
    if name is Optimizer.ADAM:
        return torch.optim.Adam(params, lr=lr)
    if name is Optimizer.SCHEDULEFREE:
        import schedulefree  # deferred: only this optimizer needs it

        opt = schedulefree.AdamWScheduleFree(params, lr=lr, warmup_steps=0, weight_decay=0.0)
        opt.train()
        return opt
    from pytorch_optimizer import SOAP  # deferred: only this optimizer needs it

    return SOAP(params, lr=lr, betas=(0.95, 0.95), weight_decay=0.0, precondition_frequency=10)


@dataclass
class Trainee:
    """What one run optimizes, and how: the model, its two optimizers and the moving average."""

    model: torch.nn.Module
    opt: torch.optim.Optimizer
    aux_opt: torch.optim.Optimizer
    ema: dict[str, torch.Tensor] | None
    net_params: list
    aux_params: list
    init_sha: str | None = None  # the checkpoint the run started from (--init)

    @classmethod
    def around(cls, model: torch.nn.Module, opts: TrainOptions, init_sha: str | None = None) -> Trainee:
        """``model`` with the optimizers and the average of the (resolved) options."""
        net_params = [p for n, p in model.named_parameters() if not is_aux(n)]
        aux_params = [p for n, p in model.named_parameters() if is_aux(n)]
        return cls(model, make_optimizer(opts.optimizer, net_params, opts.lr),
                   torch.optim.Adam(aux_params, lr=opts.config.training.aux_lr),
                   start_average(model, opts.ema, is_aux), net_params, aux_params, init_sha)

    def weights(self) -> torch.nn.Module:
        """A copy of the model holding the weights to validate and ship (``averaging.inference_model``)."""
        return inference_model(self.model, self.opt, self.ema)
