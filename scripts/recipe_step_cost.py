#!/usr/bin/env python
"""CPU cost of one training step under each recipe choice, measured in one process so that the
figures compare: the optimizers (Adam, schedule-free AdamW, SOAP) and the quantizations (noise,
mixed), at the model's recipe shape (batch, patch) and precision.

    python scripts/recipe_step_cost.py runs/split/train --model meanscale-gdn --steps 20

Each line: seconds of CPU per step (this process, one torch thread, after two untimed steps on
batches loaded beforehand), steps and crops per CPU second, and the ratio to the first choice.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from imgcodec.models import store
from imgcodec.train import TrainOptions, time_steps

CHOICES = [
    ("schedulefree", "mixed"),
    ("schedulefree", "noise"),
    ("adam", "mixed"),
    ("soap", "mixed"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--model", default="meanscale-gdn")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--precision", default="auto")
    args = ap.parse_args()
    torch.set_num_threads(1)
    recipe = store.default_store().load_config(args.model).training
    print(f"{args.model}: batch {recipe.batch_size} of {recipe.patch}², {args.steps} steps, precision {args.precision}")
    first = None
    for optimizer, quantization in CHOICES:
        with tempfile.TemporaryDirectory() as tmp:
            d = time_steps(TrainOptions(model=args.model, data=[args.data], out=Path(tmp) / "run", threads=1,
                                        precision=args.precision, optimizer=optimizer, quantization=quantization,
                                        schedule="constant"), args.steps)
        s = d["cpu"] / args.steps
        first = first or s
        print(f"{optimizer:>12} {quantization:>5}: {s:.3f} CPU s/step, {1 / s:.2f} steps/s, "
              f"{recipe.batch_size / s:.1f} crops/s, {first / s:.2f}x the first")


if __name__ == "__main__":
    main()
