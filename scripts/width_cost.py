#!/usr/bin/env python
"""What a wider g_a/g_s costs at inference: encode and decode CPU seconds (one thread, best of 3) of
one image with the shipped checkerboard-gdn widened to each N (as the same function: the same file),
against meanscale-gdn.

    python scripts/width_cost.py ../shared/data/kodak/kodim05.png 64 96 128
"""

from __future__ import annotations

import dataclasses
import sys
import time

import numpy as np
import torch
from PIL import Image

from imgcodec.codec import api
from imgcodec.codec.imageio import CanonicalImage
from imgcodec.models.growth import widen
from imgcodec.models.store import default_store


def best_cpu(fn, reps: int = 3) -> float:
    times = []
    for _ in range(reps):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return min(times)


def main(path: str, widths: list[int]) -> None:
    torch.set_num_threads(1)
    store = default_store()
    img = CanonicalImage(np.asarray(Image.open(path).convert("RGB")), None, False)
    reference = store.load_shipped("meanscale-gdn", 4)
    shipped = store.load_shipped("checkerboard-gdn", 4)
    rows = [("meanscale-gdn", reference)]
    for n in widths:
        model = widen(shipped.model, n) if n != shipped.model.config.N else shipped.model
        model.eval()
        model.update(force=True)
        rows.append((f"checkerboard-gdn N={n}", dataclasses.replace(shipped, model=model)))
    base = None
    print("| model | bytes | encode s | decode s | decode × meanscale-gdn |\n|---|---:|---:|---:|---:|")
    for name, loaded in rows:
        data = api.encode_canonical(img, loaded)
        enc = best_cpu(lambda: api.encode_canonical(img, loaded))
        dec = best_cpu(lambda: api.decode(data, loaded=loaded))
        base = base or dec
        print(f"| {name} | {len(data)} | {enc:.3f} | {dec:.3f} | {dec / base:.2f} |")


if __name__ == "__main__":
    main(sys.argv[1], [int(v) for v in sys.argv[2:]] or [64, 96, 128])
