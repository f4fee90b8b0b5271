#!/usr/bin/env bash
# Quality against CPU time at EFRUFN widths 16, 24 and 32: the MFIF stage (the first of the chain, no
# teacher) trained from scratch at each width for about the same wall time on this machine, every
# checkpoint scored on the held-back validation split (never a test set).
#
#   bash results/width_curve.sh DATA [RUNS_DIR=runs/width] [MINUTES=15]
#   WIDTHS="16 32" bash results/width_curve.sh DATA ...
#
# Each run is configs/mfif.py:cpu (3 Anderson iterations, position-bias MLP 64, 4 crops a step) with
# the fine-tune's data (96-px crops, clean_natural/ + more_natural/, every 8th photograph held back)
# and width W, W/8 heads (the paper's 32 has 4). Its step count is MINUTES of training at the step rate
# measured on its own first 20 steps (a probe run, deleted after), so every width gets the same time
# budget with a complete warm-up and cosine schedule; a checkpoint every tenth of the run is kept.
# Every run resumes from its workdir. results/width_curve.py tabulates the curve afterwards.
set -euo pipefail
DATA=${1:?usage: bash results/width_curve.sh DATA_DIR [RUNS_DIR] [MINUTES]}
RUNS=${2:-runs/width}
MINUTES=${3:-15}
WIDTHS=${WIDTHS:-16 24 32}
cd "$(dirname "$0")/.."
mkdir -p "$RUNS"
for width in $WIDTHS; do
  common=(
    --config="configs/mfif.py:cpu" --config.model.width="$width"
    --config.model.num_heads="$((width / 8))"
    --config.data.data_dir="$DATA" --config.data.patch_size=96 --config.data.holdout_every=8
    "--config.data.image_sets=('clean_natural','more_natural')"
    --config.optimizer.warmup_steps=20 --config.log_every=10
  )
  workdir="$RUNS/w$width"
  if [ ! -f "$workdir/steps" ]; then
    # The step rate of this width: 30 steps, the last 20 timed by the trainer's own log.
    rm -rf "$RUNS/probe_w$width"
    python train.py "${common[@]}" --workdir="$RUNS/probe_w$width" --config.num_steps=30 \
      --config.checkpoint_every=1000
    python - "$RUNS/probe_w$width/metrics.jsonl" "$MINUTES" > "$RUNS/steps_w$width.tmp" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
rate = rows[-1]["steps_per_sec"]  # steps 21-30, compiled
print(max(50, int(float(sys.argv[2]) * 60 * rate) // 10 * 10))
PY
    mkdir -p "$workdir" && mv "$RUNS/steps_w$width.tmp" "$workdir/steps"
    rm -rf "$RUNS/probe_w$width"
  fi
  steps=$(cat "$workdir/steps")
  echo "width $width: $steps steps"
  /usr/bin/time -f "width $width wall %e s" python train.py "${common[@]}" --workdir="$workdir" \
    --config.num_steps="$steps" --config.checkpoint_every="$((steps / 10))" \
    --config.keep_checkpoints=1000
done
runs=()
for width in $WIDTHS; do runs+=("$RUNS/w$width"); done
python results/validation_curve.py "${runs[@]}" --data_dir "$DATA" --baseline shipped \
  --out "$RUNS/validation_mfif.md"
