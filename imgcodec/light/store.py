"""The light runtime's loader: ``LightStore(store, threads)``, a model store's weights built into the
models of ``light.models``, without torch.

A ``LightStore`` resolves (model, quality) by the store's own rule (``Store.shipped_entry``: the
manifest entry, the quality normalized), reads the checkpoint, verified against its sha256
(``checkpoint.read_entry``, through ``Store.read_checkpoint``'s checks), with the ONNX graphs its
entry records (each verified when a session is made from it), and builds the model of its
architecture, whose ONNX Runtime sessions run ``threads`` intra-op threads.  Over a plain ``Store``
every load reads, verifies and builds anew: the model is its caller's.  Over a ``CachedStore``
(``LightStore.cached()``, or a ``LightStore`` of ``Store.cached()``) the weights, and the models
built from them with their sessions, are kept in that store (``CachedStore.hold``) for as long as
its owner holds it, shared between its owner's calls only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from ..models.store import Store, default_store
from .checkpoint import LightWeights, onnx_record, read_entry
from .models import LightModel, build

THREADS_ENV = "IMGCODEC_THREADS"


def env_threads() -> int | None:
    """``$IMGCODEC_THREADS`` as a thread count, read at each call (unset, empty or 0: ``None``,
    ONNX Runtime's default)."""
    return int(os.environ.get(THREADS_ENV, "0") or 0) or None


@dataclass(frozen=True)
class LightStore:
    """The light runtime's models of ``store``'s weights; their sessions run ``threads`` intra-op
    threads (``None``: ONNX Runtime's default; not given: ``$IMGCODEC_THREADS`` when the loader is
    made)."""

    store: Store
    threads: int | None = field(default_factory=env_threads)

    def _resolve(self, model: str | None, quality) -> tuple[LightWeights, tuple, int | float]:
        """The verified weights of (model, quality), the key of its entry and graphs, and the
        normalized quality."""
        entry, quality = self.store.shipped_entry(model, quality)
        record = onnx_record(entry)
        key = (entry["file"], entry["sha256"], record)
        weights = self.store.hold(("light weights",) + key, lambda: read_entry(self.store.checkpoints, entry, record))
        return weights, key, quality

    def weights(self, model: str | None, quality) -> tuple[LightWeights, int | float]:
        """The verified weights of (model, quality), with its graphs (``Store.load_shipped``'s rule: one
        checkpoint for every quality of a continuous-rate model) and the normalized quality.  A
        ``ModelError`` where the entry records no graphs, or graphs exported from other weights."""
        weights, _, quality = self._resolve(model, quality)
        return weights, quality

    def load(self, model: str | None, quality) -> tuple[LightModel, int | float]:
        """The model of (model, quality) and the normalized quality: a new model, the caller's,
        unless this loader's store is a ``CachedStore``, which keeps it for its owner."""
        weights, key, quality = self._resolve(model, quality)
        return self.store.hold(("light model", self.threads) + key, lambda: build(weights, self.threads)), quality

    def cached(self) -> "LightStore":
        """This loader over its store's ``cached()``: the weights, models and sessions it loads are
        kept for the life of the returned object (a rate search, an evaluation, a batch of files)."""
        return replace(self, store=self.store.cached())


def light_store(store: Store | LightStore | None = None) -> LightStore:
    """The loader of ``store``: ``store`` itself where it is a ``LightStore``, else a ``LightStore``
    of it (``default_store()`` where it is ``None``), its threads ``$IMGCODEC_THREADS``."""
    if isinstance(store, LightStore):
        return store
    return LightStore(store or default_store())
