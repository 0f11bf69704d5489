"""What the means of a mean-scale model are worth on its own weights: the files it writes, against
the same weights with the means forced to zero (``h_m``'s last layer zeroed; ẑ, σ and everything
else unchanged), at every whole quality, over a folder of images (real bitstreams, 8-bit PSNR).

    python scripts/means_share.py KODAK_DIR [--model meanscale-gdn]
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
import torch

from imgcodec.codec import api as codec
from imgcodec.eval import evaluate
from imgcodec.models import store


def measure(model, images, q) -> tuple[float, float]:
    """Mean payload bpp (no header) and mean 8-bit PSNR of real round trips at quality ``q``."""
    bpp, psnr = [], []
    for im in images:
        nbytes, out = codec.code_array(model, im.rgb, quality=q)
        bpp.append(evaluate.bpp(nbytes, im.width, im.height))
        psnr.append(evaluate.psnr(im.rgb, out))
    return float(np.mean(bpp)), float(np.mean(psnr))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", type=Path)
    ap.add_argument("--model", default="meanscale-gdn")
    args = ap.parse_args()
    images = evaluate.load_images(args.data)
    loaded = store.default_store().load_shipped(args.model, store.EVERY_QUALITY)
    zero = copy.deepcopy(loaded.model)
    with torch.no_grad():
        zero.h_m[-1].weight.zero_()
        zero.h_m[-1].bias.zero_()
    print(f"{args.model} on {len(images)} images of {args.data}")
    print("| quality | with means bpp / PSNR | means zeroed bpp / PSNR | rate saved by the means |")
    print("|---:|---|---|---:|")
    for q in loaded.config.qualities:
        (b1, p1), (b0, p0) = measure(loaded.model, images, q), measure(zero, images, q)
        print(f"| {q} | {b1:.4f} / {p1:.2f} | {b0:.4f} / {p0:.2f} | {100 * (1 - b1 / b0):.1f} % |")


if __name__ == "__main__":
    main()
