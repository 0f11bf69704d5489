"""The end of a run: ``final.safetensors`` in the run folder (the weights that stand for the run,
on the CPU, in fp32, with the coder's tables), validated, and with ``--ship`` copied into a store's
``checkpoints/`` and its manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import write_bytes_atomic
from ..errors import CodecError
from ..models import store
from .optimizers import Trainee
from .options import TrainOptions
from .state import weights_digest
from .validation import validate

FINAL_FILE = "final.safetensors"


def finish(opts: TrainOptions, t: Trainee, step: int, seconds: float, where: str, precision: str,
           val_images: list[np.ndarray]) -> dict:
    """Write, validate and (where asked) ship the final weights; returns what goes into the summary."""
    config = opts.config
    model = t.weights().to("cpu").eval()
    model.update(force=True)
    summary = {"final_weights": weights_digest(model)}  # the average or iterate that ships
    meta = {
        "quality": store.EVERY_QUALITY if config.continuous else opts.quality or 0,
        "lambda": opts.lmbda,
        "metric": str(opts.metric),
        "steps": step,
        "train_seconds": round(seconds, 1),
        "device": where,
        "data": ", ".join(str(f) for f in opts.data),
        "precision": str(precision),
        "init": t.init_sha,
    }
    if config.continuous:
        meta["lambdas"] = list(config.lambdas)
    final = opts.out / FINAL_FILE
    summary["sha256"] = store.save_checkpoint(model, final, **meta)
    summary["checkpoint"] = str(final)
    if val_images:
        summary["val_bpp"], summary["val_psnr"] = validate(model, val_images, "cpu", opts.val_quality)
    if opts.ship:
        if not opts.quality and not config.continuous:
            raise CodecError("--ship needs --quality")
        summary["shipped"] = ship_checkpoint(final, opts.model, meta["quality"], meta,
                                             into=store.Store.at(opts.home) if opts.home else None)
    return summary


def ship_checkpoint(path: Path, model: str, quality: int, meta: dict, extra: dict | None = None,
                    into: store.Store | None = None) -> str:
    """Copy a final checkpoint into ``checkpoints/`` of the store ``into`` (default: the default
    store) and record it in the manifest (quality ``store.EVERY_QUALITY``: a continuous-rate model's
    one checkpoint)."""
    into = into or store.default_store()
    name = f"{model}.safetensors" if quality == store.EVERY_QUALITY else f"{model}-q{quality}.safetensors"
    data = Path(path).read_bytes()
    write_bytes_atomic(into.checkpoints / name, data, force=True)
    entries = [e for e in into.read_manifest() if not (e["model"] == model and e["quality"] == quality)]
    entry = {"model": model, "quality": quality, "file": name, "sha256": store.sha256_file(into.checkpoints / name)}
    entry.update({k: v for k, v in meta.items() if k != "quality"})
    entry.update(extra or {})
    entries.append(entry)
    into.write_manifest(entries)
    store.load_shipped.cache_clear()
    return name
