"""Whether a model's latent channels FROM.. (the ones a growth along M added) carry anything: on one
crop of an image, per quality, the share of nonzero values of ``round(y·gain)`` and the mean
|y·gain| in the channels before FROM and from FROM on, the PSNR of ``g_s`` on the rounded latent and with
channels FROM.. set to zero, and the norms of ``g_s``'s columns that read each group.

    python scripts/latent_usage.py runs/wide/state.safetensors --from 96
    python scripts/latent_usage.py checkpoints/checkerboard-gdn-wide.safetensors --from 96 -q 5 -q 10

FILE is a checkpoint or a training run's state file (``state.safetensors``, whose recorded options
name the model; its weights are the training iterate).  docs/training.md quotes its output.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from imgcodec.eval.evaluate import psnr
from imgcodec.models import store
from imgcodec.models.registry import build_model


def load_any(path: Path):
    """The model in a checkpoint or in a training state file."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "config" in meta:
        return store.load_checkpoint_file(path).model
    name = json.loads(meta["options"])["model"]
    model = build_model(store.default_store().load_config(name))
    model.load_state_dict({k[6:]: v for k, v in load_file(str(path)).items() if k.startswith("model.")})
    return model


def pixels(x_hat: torch.Tensor) -> np.ndarray:
    """The 8-bit image of a synthesis output, as the codec writes it."""
    return (x_hat[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file", type=Path)
    ap.add_argument("--from", dest="first", type=int, required=True, help="The first grown channel.")
    ap.add_argument("--image", type=Path, default=store.repo_root() / "runs/split/val/037.png")
    ap.add_argument("--crop", type=int, default=512, help="The top-left square used (a multiple of 64).")
    ap.add_argument("-q", "--quality", type=float, action="append", help="Qualities (default: 5 and the top).")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_any(args.file).eval()
    first, M = args.first, model.config.M
    if not 0 < first < M:
        raise SystemExit(f"--from must lie in 1..{M - 1}")
    rgb = np.array(Image.open(args.image).convert("RGB"))[: args.crop, : args.crop]
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    y = model.g_a(x)
    qualities = args.quality or [5, model.config.qualities[-1]]
    reader = model.g_s[0].weight  # ConvTranspose2d: (M, N, k, k)
    cols = reader.flatten(1).norm(dim=1)
    print(f"{args.file}: channels 0..{first - 1} and {first}..{M - 1}, {args.image.name} {rgb.shape[1]}×{rgb.shape[0]}")
    print(f"g_s column norm (mean): {float(cols[:first].mean()):.4f} and {float(cols[first:].mean()):.4f}")
    print("| quality | nonzero, old | nonzero, grown | mean abs y·gain, old | grown | PSNR | PSNR, grown zeroed |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for q in qualities:
        point = model.rate_point(q)
        scaled = y * point.gain
        q_y = torch.round(scaled)
        nonzero = (q_y != 0).float().mean(dim=(0, 2, 3))
        y_hat = q_y * point.inverse
        cut = y_hat.clone()
        cut[:, first:] = 0
        print(f"| {q:g} | {float(nonzero[:first].mean()):.3f} | {float(nonzero[first:].mean()):.3f} "
              f"| {float(scaled[:, :first].abs().mean()):.3f} | {float(scaled[:, first:].abs().mean()):.3f} "
              f"| {psnr(pixels(model.g_s(y_hat)), rgb):.2f} | {psnr(pixels(model.g_s(cut)), rgb):.2f} |")


if __name__ == "__main__":
    main()
