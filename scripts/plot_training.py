#!/usr/bin/env python
"""Plot validation bpp and PSNR against training time from runs' metrics.csv files.

    python scripts/plot_training.py runs/base-q5/metrics.csv runs/ft-q*/metrics.csv -o docs/training-curve.png

Each run's curve starts where its --init base left off (fine-tunes are offset by the base's time),
so the x axis is the CPU wall time spent on that rate point, base included.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path: Path, validated: bool = True) -> list[dict]:
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if r.get("val_bpp") or not validated]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("metrics", nargs="+", type=Path)
    ap.add_argument("--base", type=Path, help="metrics.csv of the base run the others were fine-tuned from")
    ap.add_argument("-o", "--output", type=Path, required=True)
    args = ap.parse_args()
    offset = 0.0
    if args.base:
        base_rows = read(args.base, validated=False)  # the base ends at its last logged step
        offset = float(base_rows[-1]["seconds"]) if base_rows else 0.0
    fig, (ax_bpp, ax_psnr) = plt.subplots(1, 2, figsize=(11, 4))
    for path in args.metrics:
        rows = read(path)
        if not rows:
            continue
        shift = 0.0 if args.base is None or path.resolve() == args.base.resolve() else offset
        minutes = [(float(r["seconds"]) + shift) / 60 for r in rows]
        label = path.parent.name
        ax_bpp.plot(minutes, [float(r["val_bpp"]) for r in rows], marker="o", ms=3, label=label)
        ax_psnr.plot(minutes, [float(r["val_psnr"]) for r in rows], marker="o", ms=3, label=label)
    ax_bpp.set(xlabel="training time [min, CPU]", ylabel="validation bpp (real bitstream)")
    ax_psnr.set(xlabel="training time [min, CPU]", ylabel="validation PSNR [dB]")
    for ax in (ax_bpp, ax_psnr):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = args.output.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(args.output)


if __name__ == "__main__":
    main()
