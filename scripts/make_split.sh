#!/usr/bin/env bash
# The training/validation split of the shipped models, as folders of symlinks under runs/split/:
#
#   train/    ../shared/data/train/001-036           (36 photos)
#   photos/   ../shared/data/photos/ less the 8 held out below (400 photos)
#   val/      ../shared/data/train/037-040 and the 8 held-out photos (12 photos, never trained on)
#
# Kodak is evaluation only and appears in none of them.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
RUNS=${RUNS:-runs}
HELD_OUT=(debian-lomiri-16.04-007 debian-mate-030 debian-plasma-018 github-deepin-129
          github-elementary-042 github-pop-os-109 github-ubuntu-162 github-ubuntu-180)
rm -rf "$RUNS/split/photos" "$RUNS/split/val"
mkdir -p "$RUNS/split/train" "$RUNS/split/photos" "$RUNS/split/val"
for f in "$SHARED"/data/train/0{01..36}.png; do ln -sf "$(realpath "$f")" "$RUNS/split/train/"; done
for f in "$SHARED"/data/train/0{37..40}.png; do ln -sf "$(realpath "$f")" "$RUNS/split/val/"; done
for f in "$SHARED"/data/photos/*.jpg; do
    name=$(basename "$f" .jpg)
    if [[ " ${HELD_OUT[*]} " == *" $name "* ]]; then dest=val; else dest=photos; fi
    ln -sf "$(realpath "$f")" "$RUNS/split/$dest/"
done
echo "train: $(ls "$RUNS/split/train" | wc -l), photos: $(ls "$RUNS/split/photos" | wc -l), val: $(ls "$RUNS/split/val" | wc -l)"
