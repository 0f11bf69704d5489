#!/usr/bin/env bash
# Train the shipped rate points of factorized-gdn on ../shared/data/train (docs/training.md).
#
#   scripts/train_rate_points.sh            # base model (q6, λ 0.025), then q2-q5 and q7 fine-tuned from it
#
# Qualities are on the common scale (README, "Qualities"); the shipped files are named by the
# position on the model's ladder (factorized-gdn-q5.safetensors is quality 6).
#
# Resumable: every run keeps its state in runs/; rerun the script after an interruption.
# Budgets (wall-clock minutes) and threads are environment variables; defaults are the recipe.
# A later session continues from the shipped weights with INIT_FROM_SHIPPED=1 (optimizer restarts).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
RUNS=${RUNS:-runs}
BASE_Q=${BASE_Q:-6}
BASE_MIN=${BASE_MIN:-70}
FT_MIN=${FT_MIN:-15}
THREADS=${THREADS:-1}
PARALLEL=${PARALLEL:-2}       # fine-tunes side by side (one per core)
FT_QUALITIES=${FT_QUALITIES:-"2 3 4 5 7"}

# Validation split: photos 037-040 are held out (never trained on); Kodak is evaluation only.
mkdir -p "$RUNS/split/train" "$RUNS/split/val"
for f in "$SHARED"/data/train/0{01..36}.png; do ln -sf "$(realpath "$f")" "$RUNS/split/train/"; done
for f in "$SHARED"/data/train/0{37..40}.png; do ln -sf "$(realpath "$f")" "$RUNS/split/val/"; done

common=(--model factorized-gdn --data "$RUNS/split/train" --val "$RUNS/split/val" --val-every 1000 --threads "$THREADS" --resume --ship)
init_base=()
if [[ "${INIT_FROM_SHIPPED:-0}" == 1 ]]; then init_base=(--init "checkpoints/factorized-gdn-q$((BASE_Q - 1)).safetensors"); fi

imgcodec train "${common[@]}" -q "$BASE_Q" --minutes "$BASE_MIN" --out "$RUNS/base-q$BASE_Q" "${init_base[@]}"

for q in $FT_QUALITIES; do
  echo "$q"
done | xargs -P "$PARALLEL" -I{} imgcodec train "${common[@]}" -q {} --minutes "$FT_MIN" \
  --init "$RUNS/base-q$BASE_Q/final.safetensors" --out "$RUNS/ft-q{}"
