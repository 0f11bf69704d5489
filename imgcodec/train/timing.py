"""The cost of a training step alone, for ``imgcodec bench`` and the recipe comparisons."""

from __future__ import annotations

import dataclasses
import time

import torch

from ..errors import CodecError
from .data import crop_loader
from .device import setup_device
from .loop import start, train_step
from .options import Precision, TrainOptions


def time_steps(opts: TrainOptions, steps: int, warm: int = 2) -> dict[str, float]:
    """Seconds (``wall``, and ``cpu`` of this process) that ``steps`` training steps of ``opts``
    take after ``warm`` untimed ones, on batches loaded beforehand: the step itself (forward,
    backward, both optimizers), without start-up, data loading or checkpoints."""
    if steps < 1:
        raise CodecError(f"steps must be at least 1, not {steps}")
    opts = dataclasses.replace(opts, steps=opts.steps or warm + steps).resolve()
    device, precision = setup_device(opts, 0)
    t = start(opts, device, precision, resuming=False)
    batches = []
    for x in crop_loader(dataclasses.replace(opts, workers=0), 0, 0, 1, device):
        batches.append(x.to(device))
        if len(batches) == warm + steps:
            break
    if precision is Precision.BF16:
        batches = [x.contiguous(memory_format=torch.channels_last) for x in batches]
    t.model.train()

    def run(xs, first):
        for i, x in enumerate(xs):
            quality, lmbda = opts.step_target(first + i, 0)
            train_step(t.model, t, opts, x, quality, lmbda, precision, 1)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    run(batches[:warm], 0)
    w0, c0 = time.perf_counter(), time.process_time()
    run(batches[warm:], warm)
    return {"wall": time.perf_counter() - w0, "cpu": time.process_time() - c0}
