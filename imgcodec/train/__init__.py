"""Training: the rate–distortion loop (``loop``) and its parts.

    from imgcodec.train import TrainOptions, train

``options`` (the run's options, checked once; no torch: the command line reads its choices),
``data`` (crops), ``device`` (precision, threads, seeds), ``optimizers`` and ``averaging`` (what is
optimized, and the weights that stand for the run), ``state`` (the resumable state file),
``metrics`` (``metrics.csv``), ``validation``, ``ddp`` (several processes), ``ship`` (the final
weights, shipped with ``models.store.Store.ship``), ``timing`` (the cost of a step, for ``imgcodec bench``).  The names below
load their module on first use, so that importing the options costs no torch.
"""

from importlib import import_module

from .options import TrainOptions

_LAZY = {"train": "loop", "time_steps": "timing", "cpu_has_bf16": "device"}

__all__ = ["TrainOptions", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
