#!/usr/bin/env bash
# Validation BD-rate of a trained checkpoint against the shipped weights of its model, on the
# held-out photos of scripts/make_split.sh (real bitstreams at every quality level):
#
#   scripts/val_bdrate.sh runs/rd/NAME/final.safetensors meanscale-gdn [NAME]
#
# writes runs/val/NAME.json (and runs/val/shipped-MODEL.json once) and prints the BD-rate table.
set -euo pipefail
cd "$(dirname "$0")/.."
CKPT=$1
MODEL=$2
NAME=${3:-$(basename "$(dirname "$CKPT")")}
VAL=${VAL:-runs/split/val}
mkdir -p runs/val
if [[ ! -f runs/val/shipped-$MODEL.json ]]; then
    imgcodec eval --model "$MODEL" -q all --data "$VAL" -o "runs/val/shipped-$MODEL.json" --name "shipped" -f > /dev/null
fi
imgcodec eval --checkpoint "$CKPT" -q all --data "$VAL" -o "runs/val/$NAME.json" --name "$NAME" -f > /dev/null
imgcodec compare "runs/val/shipped-$MODEL.json" "runs/val/$NAME.json" --anchor shipped
