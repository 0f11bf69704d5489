#!/usr/bin/env python
"""Ship a run's final weights as a model's checkpoint: copy it into checkpoints/ with its manifest
entry (the training metadata the trainer stored in the file, plus notes), then export its ONNX
graphs. Ship only what validation showed better (scripts/val_bdrate.sh); afterwards regenerate the
golden file (scripts/make_golden.py) and measure Kodak (imgcodec eval, scripts/record_kodak.py).

    python scripts/ship_run.py runs/cb/final.safetensors checkerboard-gdn \
        --note device="cpu: …" --note recipe="…" --note init_note="…"
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from safetensors import safe_open

from imgcodec.models import store

ROOT = Path(__file__).resolve().parents[1]
# Metadata of a final checkpoint that its manifest entry keeps (the rest is the config and format).
KEPT = ("lambda", "metric", "steps", "train_seconds", "device", "data", "precision", "init", "lambdas")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("model")
    ap.add_argument("--note", action="append", default=[], help="KEY=VALUE added to the manifest entry")
    args = ap.parse_args()
    with safe_open(str(args.checkpoint), "pt") as f:
        meta = f.metadata() or {}
    home = store.default_store()
    config = home.load_config(args.model)
    stored = json.loads(meta.get("config", "{}"))
    if stored.get("name") not in (None, args.model):
        sys.exit(f"{args.checkpoint} holds model {stored.get('name')!r}, not {args.model!r}")
    entry = {}
    for key in KEPT:
        if key in meta:
            try:
                entry[key] = json.loads(meta[key])
            except json.JSONDecodeError:
                entry[key] = meta[key]
    extra = dict(note.split("=", 1) for note in args.note)
    # the checkpoint's metadata holds the position on the ladder; ship takes the common scale
    quality = store.EVERY_QUALITY if config.continuous else config.from_stored(int(meta.get("quality", 0)))
    name = home.ship(args.checkpoint, args.model, quality, entry, extra)
    print(f"shipped {name}")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "export_onnx.py"), args.model], check=True)


if __name__ == "__main__":
    main()
