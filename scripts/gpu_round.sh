#!/usr/bin/env bash
# Training runs side by side on one lent GPU (the `device` tool); weights and logs come back in $OUT.
#
#   ../shared/tools/device-kit .device-kit      # here, once: compressai's wheel + photos to carry
#   device run (carry [".device-kit"]):
#     bash scripts/gpu_round.sh 7.5 "a:--lr 5e-4 --batch-size 32 --seed 5" "b:--lr 2e-4 ..."
#
# Each "NAME:ARGS" is one `imgcodec train` of MODEL (default hyperprior-gdn) from INIT (default its
# shipped weights) on the kit's photos for MINUTES; all start at once, since several processes keep
# a GPU busier than one (a small model's step is bound by kernel launches, not arithmetic).
# $OUT gets NAME.safetensors for each run (its final weights; its last periodic training state,
# NAME.state.safetensors, if it did not finish) and logs.tgz (every run's log and metrics.csv).
# DEVICE=cpu runs the same on this machine, to rehearse the call before spending device time.
set -u
minutes=$1
shift
kit=${KIT:-.device-kit}
model=${MODEL:-hyperprior-gdn}
init=${INIT:-checkpoints/$model.safetensors}
device=${DEVICE:-cuda}
out=${OUT:?OUT must name the folder that comes back}
runs=${RUNS:-/tmp/runs}
# Each run stops itself after MINUTES of steps; this bound only catches a hung one (start-up and
# the final update() take well under a minute), early enough that the copies below still happen.
limit=$(python3 -c "print(int(float('$minutes') * 60 + 100))")

if ! python3 -c "import compressai" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site "$kit"/wheels/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, compressai; print('torch', torch.__version__, 'compressai', compressai.__version__)" || exit 1

mkdir -p "$runs"
for spec in "$@"; do
  name=${spec%%:*}
  args=${spec#*:}
  # shellcheck disable=SC2086  # ARGS is a list of words
  timeout "$limit" python3 -m imgcodec.cli train --model "$model" --init "$init" --data "$kit/train" \
    --device "$device" --minutes "$minutes" --checkpoint-seconds 60 --threads 2 --workers 3 \
    --out "$runs/$name" $args >"$runs/$name.log" 2>&1 &
done
wait

for spec in "$@"; do
  name=${spec%%:*}
  cp "$runs/$name/final.safetensors" "$out/$name.safetensors" 2>/dev/null ||
    cp "$runs/$name/state.safetensors" "$out/$name.state.safetensors" 2>/dev/null
  cp "$runs/$name/metrics.csv" "$runs/$name.csv" 2>/dev/null
  echo "== $name: $(tail -c 600 "$runs/$name.log" | tr '\r' '\n' | tail -n 4)"
done
tar -czf "$out/logs.tgz" -C "$runs" $(cd "$runs" && ls ./*.log ./*.csv 2>/dev/null)
ls -la "$out"
