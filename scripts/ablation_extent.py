"""Does a norm's output depend on the image's extent?  The ablation's runs are trained on crops and
evaluated on whole images; a norm whose statistics are taken over H×W of each sample (FRN, GroupNorm,
RBN's calibration) sees other statistics on a 768×512 photo than on a training crop, while GDN, ReLU
and BatchNorm at inference act on each position alone.

For every main-axis run of one quality, this cuts each evaluation image into non-overlapping tiles of
each size, codes every tile on its own (quantized latents, exactly what the decoder reconstructs),
puts the tiles back together and reports the mean PSNR over the images, next to the whole image
coded at once (Kodak's 768×512 is a multiple of every tile size, so both cover the same pixels).
Writes OUT/extent.json and prints a markdown table.

    python scripts/ablation_extent.py results/ablation --eval ../shared/data/kodak -q 5
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from imgcodec.atomic import write_bytes_atomic
from imgcodec.codec import tensors
from imgcodec.eval.evaluate import load_images, psnr
from imgcodec.models import store
from imgcodec.studies.ablation import load_points

TILES = (64, 128, 256)


def reconstruct(model, rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    x = tensors.array_to_tensor(np.ascontiguousarray(rgb))
    x = tensors.pad_image(x, -(-h // 16) * 16, -(-w // 16) * 16)
    return tensors.tensor_to_array(model.reconstruct(x)[..., :h, :w])


def tiled(model, rgb: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(the part of ``rgb`` that whole tiles cover, its reconstruction tile by tile)."""
    h, w = (rgb.shape[0] // size) * size, (rgb.shape[1] // size) * size
    part = rgb[:h, :w]
    out = np.empty_like(part)
    for y in range(0, h, size):
        for x in range(0, w, size):
            out[y:y + size, x:x + size] = reconstruct(model, part[y:y + size, x:x + size])
    return part, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="the study's results folder (points/, runs/)")
    ap.add_argument("--eval", type=Path, required=True, help="evaluation images (the study's)")
    ap.add_argument("--work", type=Path, help="the study's training folders (default: OUT/runs)")
    ap.add_argument("-q", "--quality", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    images = [img.rgb for img in load_images(args.eval)]
    points = [p for p in load_points(args.out) if p.settings["ablation"]["quality"] == args.quality]
    main_batch = json.loads((args.out / "summary.json").read_text())["main_batch_size"]
    rows = []
    for p in sorted(points, key=lambda p: (p.settings["ablation"]["norm"] != "gdn", p.settings["ablation"]["norm"])):
        a = p.settings["ablation"]
        if a["batch_size"] != main_batch:
            continue
        key = f"{a['norm']}-q{a['quality']}-b{a['batch_size']}"
        final = (args.work or args.out / "runs") / key / "final.safetensors"
        evaluated = p.settings["weights"][str(a["quality"])]["sha256"]
        model = store.load_checkpoint_file(final, expected_sha256=evaluated).model.eval()
        row = {"norm": a["norm"], "run": key, "patch": a["patch"], "psnr": {}}
        with torch.inference_mode():
            for size in TILES:
                # PSNR of the reassembled image (one MSE over the image, as for the whole image):
                # a mean of per-tile PSNRs would favour small tiles by itself (flat tiles score high)
                row["psnr"][str(size)] = float(np.mean([psnr(*tiled(model, img, size)) for img in images]))
            row["psnr"]["whole"] = float(np.mean([psnr(reconstruct(model, img), img) for img in images]))
        rows.append(row)
        print(key, {k: round(v, 2) for k, v in row["psnr"].items()}, flush=True)
    doc = {"quality": args.quality, "images": len(images), "tiles": list(TILES), "rows": rows}
    write_bytes_atomic(args.out / "extent.json", (json.dumps(doc, indent=1) + "\n").encode(), force=True)
    cols = [str(s) for s in TILES] + ["whole"]
    print("\n| norm | " + " | ".join(f"{c}² tiles" if c != "whole" else "whole image" for c in cols) + " | whole − 64² |")
    print("|---|" + "---:|" * (len(cols) + 1))
    for r in rows:
        ps = r["psnr"]
        print(f"| {r['norm']} | " + " | ".join(f"{ps[c]:.2f}" for c in cols) + f" | {ps['whole'] - ps['64']:+.2f} |")


if __name__ == "__main__":
    main()
