"""Starting a model from another's trained weights: widening ``g_a``/``g_s`` as the same function,
and the trainer's ``--init`` rules."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..errors import ModelError
from .base import CodecModel
from .gain import grown_gain_state
from .registry import build_model


@torch.no_grad()
def widen(source: CodecModel, N: int) -> CodecModel:
    """``source`` with ``g_a``/``g_s`` widened to ``N`` channels, as the same function.

    Every old channel keeps its weights.  A new channel gets the fresh model's initial weights into
    it and zero weights out of it into an old channel (a convolution's new input columns; a GDN's
    coupling γ of an old channel to a new one, which its initial γ already has at zero).  The new
    channels compute something from the start while the output stays the source's, and their
    outgoing weights learn from a nonzero gradient: function-preserving growth as in Net2Net (Chen,
    Goodfellow, Shlens, ICLR 2016), with zero rather than copied units.  The hyperprior keeps its
    width (``hyper_N``), so a widened model codes images as its source did.

    Only norms that act per channel widen this way.  One that mixes channels (GroupNorm: its groups
    change with N) or weight-centralized convolutions (MABN) would change the function, which a
    probe through both transforms detects: :class:`ModelError`.
    """
    config = source.config
    if N < config.N:
        raise ModelError(f"cannot narrow model {config.name!r} from N={config.N} to N={N}")
    wide = build_model(dataclasses.replace(config, N=N, hyper_N=config.hyper_channels))
    state = wide.state_dict()
    for key, old in source.state_dict().items():
        new = state[key]
        if not key.startswith(("g_a.", "g_s.")) or new.shape == old.shape:
            state[key] = old  # compressai's load_state_dict resizes the coder's CDF tables
            continue
        module = wide.get_submodule(key.rpartition(".")[0])
        if key.endswith(".weight") and isinstance(module, nn.ConvTranspose2d):  # (in, out, kH, kW)
            new[old.shape[0]:, : old.shape[1]] = 0
        elif key.endswith(".weight") and isinstance(module, nn.Conv2d):  # (out, in, kH, kW)
            new[: old.shape[0], old.shape[1]:] = 0
        new[tuple(slice(0, n) for n in old.shape)] = old
    wide.load_state_dict(state)
    _check_same_transforms(source, wide)
    return wide


@torch.no_grad()
def grow(source: CodecModel, M: int) -> CodecModel:
    """``source`` with ``M`` latent channels, as the same function (:meth:`CodecModel.grow_latent`):
    it reconstructs every image as ``source`` did and codes it to nearly the same size."""
    config = source.config
    if M < config.M:
        raise ModelError(f"cannot narrow the latent of model {config.name!r} from M={config.M} to M={M}")
    grown = build_model(dataclasses.replace(config, M=M))
    grown.grow_latent(source)
    probe = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    modes = source.training, grown.training
    source.eval(), grown.eval()
    try:
        same = close(grown.reconstruct(probe), source.reconstruct(probe))
    finally:
        source.train(modes[0]), grown.train(modes[1])
    if not same:
        raise ModelError(f"model {config.name!r} does not grow along M as the same function")
    return grown


def close(a: torch.Tensor, b: torch.Tensor, tolerance: float = 1e-4) -> bool:
    """Equal up to float rounding, measured against the size of the whole tensor: an element near 0
    inherits the rounding error of large intermediate values (IGDN multiplies)."""
    return bool((a - b).abs().max() <= tolerance * (1 + b.abs().max()))


def _check_same_transforms(source: CodecModel, other: CodecModel) -> None:
    probe = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    modes = source.training, other.training
    source.eval(), other.eval()
    try:
        y = source.g_a(probe)
        same = close(other.g_a(probe), y) and close(other.g_s(y), source.g_s(y))
    finally:
        source.train(modes[0]), other.train(modes[1])
    if not same:
        raise ModelError(
            f"norm {source.config.norm!r} does not widen as the same function: "
            "train the wider model from scratch"
        )


@torch.no_grad()
def init_from(model: CodecModel, source: CodecModel) -> None:
    """Start ``model`` from the trained ``source``, as much of it as carries over.

    - The same architecture and widths: every weight; with another λ ladder that holds the source's
      levels in a row, the gains of the new levels by the high-rate rule.
    - ``g_a``/``g_s`` narrower than ``model``'s: widened first (:func:`widen`); fewer latent
      channels (M): grown first (:func:`grow`); then as below.
    - An architecture that ``model`` grows from (``grows_from``: a mean-scale from a scale
      hyperprior) with the same hyperprior widths: :meth:`grow_from`, the same function.
    - Otherwise, with the same norm and latent (a hyperprior from a factorized model): ``g_a`` and
      ``g_s`` carry over; the entropy models and gains start fresh.

    :class:`ModelError` for another norm, or a wider N or M than ``model``'s.
    """
    s, d = source.config, model.config
    if (s.norm, dict(s.norm_options)) != (d.norm, dict(d.norm_options)) or s.N > d.N or s.M > d.M:
        raise ModelError(
            f"a {s.name} checkpoint (norm {s.norm}, N={s.N}, M={s.M}) is of another shape "
            f"than {d.name} (norm {d.norm}, N={d.N}, M={d.M})"
        )
    if s.N < d.N:
        source = widen(source, d.N)
        s = source.config
    if s.M < d.M:
        source = grow(source, d.M)
        s = source.config
    same_hyperprior = (s.hyper_channels, s.gain_units) == (d.hyper_channels, d.gain_units)
    if s.architecture == d.architecture and same_hyperprior and s.gain_units and s.lambdas != d.lambdas:
        state = {k: v for k, v in source.state_dict().items() if not k.startswith("gain.")}
        state.update(grown_gain_state(model.gain, source.gain, s.lambdas, d.lambdas))
        model.load_state_dict(state)
    elif s.architecture == d.architecture and same_hyperprior:
        model.load_state_dict(source.state_dict())
    elif same_hyperprior and s.architecture in model.grows_from:
        model.grow_from(source)
    else:
        model.g_a.load_state_dict(source.g_a.state_dict())
        model.g_s.load_state_dict(source.g_s.state_dict())


@torch.no_grad()
def reopen_latent(model: CodecModel, first: int, seed: int = 0) -> None:
    """Re-initialise latent channels ``first..`` (those a growth along M added and the rate kept
    at zero) the other way round from :meth:`CodecModel.grow_latent`: ``g_a``'s rows for them
    random, at the mean norm of the other rows, so that their rounded values are nonzero from the
    first step; ``g_s``'s columns for them, and the hyperprior's and the context's inputs from
    them, zero, so that nothing reads them until training makes them worth reading; their scales
    the hyperprior's for old channels (its last rows copied), so that their values cost what an old
    channel's do rather than bits at the smallest scale.  The image is reconstructed as before but
    for those readers' trained weights; the new values cost bits, which the trainer's
    ``--latent-warmup`` lets in gradually.  Hyperprior family only."""
    M = model.config.M
    if not 0 < first < M or not hasattr(model, "hyper_inputs"):
        raise ModelError(f"model {model.config.name!r} has no latent channels {first}..{M - 1} to reopen "
                         f"(M={M}; the hyperprior family only)")
    last = model.g_a[len(model.g_a) - 1]
    rows = torch.rand(last.weight[first:].shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    norms = last.weight[:first].flatten(1).norm(dim=1).mean()
    last.weight[first:] = rows * (norms / rows.flatten(1).norm(dim=1)).view(-1, 1, 1, 1)
    if last.bias is not None:
        last.bias[first:] = 0
    # their scale follows ẑ as an old channel's does (the hyperprior's last rows copied, k from k mod first)
    scales = model.h_s[len(model.h_s) - 2]
    like = torch.arange(first, M) % first
    scales.weight[first:] = scales.weight[like]
    scales.bias[first:] = scales.bias[like]
    reader = model.g_s[0]
    (reader.weight[first:] if isinstance(reader, nn.ConvTranspose2d) else reader.weight[:, first:]).zero_()
    kept = torch.zeros(model.h_a[0].weight.shape[1], dtype=torch.bool)
    kept[model.hyper_inputs(first)] = True
    model.h_a[0].weight[:, ~kept] = 0
    context = getattr(model, "context_prediction", None)
    if context is not None:
        context.weight[:, first:] = 0
