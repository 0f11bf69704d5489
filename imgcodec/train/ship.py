"""The end of a run: ``final.safetensors`` in the run folder (the weights that stand for the run,
on the CPU, in fp32, with the coder's tables), validated, and with ``--ship`` shipped into the
run's store (``Store.ship``)."""

from __future__ import annotations

import numpy as np

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
        # a position on the ladder, as a checkpoint stores it (0: every quality)
        "quality": store.EVERY_QUALITY if config.continuous or not opts.quality else config.stored(opts.quality),
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
        summary["shipped"] = opts.store.ship(final, opts.model, store.EVERY_QUALITY if config.continuous
                                             else opts.quality, meta)
    return summary
