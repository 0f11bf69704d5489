"""How much of a model's distortion is its transforms' own, not the quantization's: the PSNR of
``g_s(g_a(x))`` with no quantization at all, against ``g_s(round(g_a(x)))`` (the latent rounded as
the coder rounds it, without the means of a mean-scale model), at every whole quality, over a folder
of images (the codec's own padded analysis and 8-bit synthesis, ``tiling``; 8-bit PSNR).

Where the two are close, more rate cannot buy much more PSNR: the top of the curve is bound by what
the transforms can reconstruct (docs/training.md).

    python scripts/transform_ceiling.py DIR [--model meanscale-gdn | --checkpoint FILE]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from imgcodec.codec import tiling
from imgcodec.eval import evaluate
from imgcodec.models import store


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", type=Path)
    ap.add_argument("--model", default="meanscale-gdn")
    ap.add_argument("--checkpoint", type=Path, help="A checkpoint file instead of a shipped model.")
    args = ap.parse_args()
    if args.checkpoint:
        loaded = store.load_checkpoint_file(args.checkpoint)
    else:
        loaded = store.default_store().load_shipped(args.model, store.EVERY_QUALITY)
    model = loaded.model.eval()
    images = evaluate.load_images(args.data)
    print(f"{loaded.config.name} on {len(images)} images of {args.data}")
    print("| quality | g_s(g_a(x)) PSNR | g_s(round(g_a(x))) PSNR |")
    print("|---:|---:|---:|")
    # a continuous model codes every quality; another checkpoint, its own
    qualities = loaded.config.qualities if loaded.config.continuous else [loaded.quality]
    for q in qualities:
        with torch.no_grad():
            point = model.rate_point(q if loaded.config.continuous else None)
        gain, inverse = point.gain, point.inverse
        exact, rounded = [], []
        for im in images:
            y = tiling.analysis(model, im.rgb)
            y = y if gain is None else y * gain
            for latent, psnrs in ((y, exact), (torch.round(y), rounded)):
                x_hat = tiling.synthesis(model, latent if inverse is None else latent * inverse, im.height, im.width)
                psnrs.append(evaluate.psnr(im.rgb, x_hat))
        print(f"| {q} | {np.mean(exact):.2f} | {np.mean(rounded):.2f} |")


if __name__ == "__main__":
    main()
