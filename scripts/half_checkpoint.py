#!/usr/bin/env python
"""Store a checkpoint's convolution weights in float16 (``store.write_half_checkpoint``): about half
the file, the metadata unchanged. Validate the half file, not its source, before shipping it (the
weights it holds are the float16 values):

    python scripts/half_checkpoint.py runs/wide/final.safetensors runs/wide/final-half.safetensors
"""

from __future__ import annotations

import argparse
from pathlib import Path

from imgcodec.models import store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    args = ap.parse_args()
    digest = store.write_half_checkpoint(args.src, args.dst)
    print(f"{args.dst}: {args.dst.stat().st_size} bytes (from {args.src.stat().st_size}), sha256 {digest}")


if __name__ == "__main__":
    main()
