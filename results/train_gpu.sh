#!/usr/bin/env bash
# Trains the full-size chain MFIF -> MEIF -> IVF (configs/<stage>.py: EFRUFN width 32, batch 8, 128 px
# crops) on one accelerator within a wall-time budget, unattended, and writes each stage's workdir (its
# checkpoint with optimiser state, metrics.jsonl, sample grids) and log to OUT_DIR.
#
#   python results/pack_training_data.py DATA                 # once, where the data is: runs/gpu_data
#   bash results/train_gpu.sh OUT_DIR [--data DIR] [--budget_s 540] [--cpu-smoke]
#
# How the budget is spent: a short calibration run of the MFIF stage measures this machine's step rate
# and compile time; the time left, less one compile per stage, is shared 40/30/30 between the stages,
# each given the number of steps that fits (warm-up a tenth of them, at most 500; the cosine schedule
# then ends at the last step). A stage that overruns its share by 30 % (plus twice the measured compile
# time) is stopped with SIGINT, which makes train.py save a checkpoint of the steps done, and the next
# stage is taught by that checkpoint. Every stage resumes from its workdir: running the script again
# on the same OUT_DIR continues each stage from its checkpoint (with step counts planned again).
# --cpu-smoke runs the same steps with the :smoke configs on the shipped samples on CPU (a few minutes).
# Afterwards, here: python results/export_weights.py OUT_DIR --name NAME copies the stages into the package.
set -euo pipefail
cd "$(dirname "$0")/.."
out="" data="" budget=540 smoke=false
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-smoke) smoke=true ;;
    --data) data="${2:?--data needs a folder}"; shift ;;
    --budget_s) budget="${2:?--budget_s needs seconds}"; shift ;;
    -*) echo "error: unknown option $1; usage: bash results/train_gpu.sh OUT_DIR [--data DIR] [--budget_s S] [--cpu-smoke]" >&2; exit 2 ;;
    *) out="$1" ;;
  esac
  shift
done
if [ -z "$out" ]; then
  echo "error: give the output folder: bash results/train_gpu.sh OUT_DIR [--data DIR] [--budget_s S] [--cpu-smoke]" >&2
  exit 2
fi
variant="" calibration_steps=40
if $smoke; then
  variant=":smoke" calibration_steps=4
  data="${data:-fusionjax/data/samples}"
  export JAX_PLATFORMS=cpu
fi
data="${data:-runs/gpu_data}"
if [ ! -d "$data" ]; then
  echo "error: no training data at $data; pack it with 'python results/pack_training_data.py DATA' or pass --data DIR." >&2
  exit 2
fi
mkdir -p "$out"
. benchmarks/ensure_deps.sh
start=$(date +%s)
common=(--config.data.data_dir="$data" --config.keep_checkpoints=1 --config.sample_every=0)

echo "== calibration: $calibration_steps steps of configs/mfif.py$variant" | tee "$out/train_gpu.log"
t0=$(date +%s)
python3 train.py --config="configs/mfif.py$variant" --workdir="$out/calibration" "${common[@]}" \
  --config.num_steps=$calibration_steps --config.log_every=$((calibration_steps / 2)) \
  --config.checkpoint_every=100000 > "$out/calibration.log" 2>&1
calibration_wall=$(( $(date +%s) - t0 ))
plan=$(python3 - "$out/calibration/metrics.jsonl" "$calibration_steps" "$calibration_wall" "$budget" "$start" <<'PY'
import json, sys, time
log, steps, wall, budget, start = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
rows = [json.loads(line) for line in open(log) if line.strip()]
rate = rows[-1]["steps_per_sec"]  # the second half of the calibration: compilation excluded
compile_s = max(0.0, wall - steps / rate)  # start-up and compilation of one stage
left = budget - (time.time() - start) - 20  # 20 s for the last checkpoint writes
# Step cost of each stage relative to MFIF (teacher forward, ColorNet, IVF's extra loss terms),
# from benchmarks/train_benchmark.py on CPU; the SIGINT stop covers a machine where they differ.
shares = {"mfif": (0.4, 1.0), "meif": (0.3, 1.46), "ivf": (0.3, 1.33)}
train_s = max(0.0, left - 3 * compile_s)
for stage, (share, cost) in shares.items():
    n = max(2, int(share * train_s * rate / cost))
    limit = int(1.3 * share * train_s + 2 * compile_s + 30)
    print(stage, n, max(1, min(500, n // 10)), limit)
print("rate", f"{rate:.3f}", "compile_s", f"{compile_s:.0f}", "train_s", f"{train_s:.0f}")
PY
)
printf '== plan: %s\n' "$(echo "$plan" | grep '^rate')" | tee -a "$out/train_gpu.log"
echo "$plan" | grep -v '^rate' | sed 's/^/   stage, steps, warm-up, time limit (s): /' | tee -a "$out/train_gpu.log"

teacher=()
status=0
while read -r stage steps warmup limit; do
  echo "== $stage: $steps steps, stopped after $limit s at the latest" | tee -a "$out/train_gpu.log"
  t0=$(date +%s)
  set +e
  timeout -s INT -k 30 "$limit" python3 train.py --config="configs/$stage.py$variant" --workdir="$out/$stage" \
    "${common[@]}" "${teacher[@]}" --config.num_steps="$steps" --config.optimizer.warmup_steps="$warmup" \
    --config.log_every=$(( steps / 20 > 0 ? steps / 20 : 1 )) --config.checkpoint_every=$(( steps / 4 > 0 ? steps / 4 : 1 )) \
    > "$out/$stage.log" 2>&1
  code=$?
  set -e
  echo "   $stage exit $code after $(( $(date +%s) - t0 )) s; last line: $(tail -n 1 "$out/$stage.log")" | tee -a "$out/train_gpu.log"
  if [ ! -d "$out/$stage/checkpoints" ]; then
    echo "error: $stage wrote no checkpoint (see $out/$stage.log); stopping." | tee -a "$out/train_gpu.log" >&2
    exit 1
  fi
  [ "$code" -eq 0 ] || status=1
  teacher=(--config.teacher_ckpt="$out/$stage")
done < <(echo "$plan" | grep -v '^rate')
echo "== done in $(( $(date +%s) - start )) s (budget $budget s); stages in $out" | tee -a "$out/train_gpu.log"
exit $status
