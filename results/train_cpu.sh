#!/usr/bin/env bash
# Trains the shipped reference weights (configs/<stage>.py:cpu) through MFIF -> MEIF -> IVF, plus the
# gradient-transfer ablation (the IVF stage again without its teacher, same seed, steps and data order),
# on a CPU. `bash results/train_cpu.sh DATA runs/cpu meif` adds the same ablation for the MEIF stage.
#
#   bash results/train_cpu.sh /path/to/data [runs/cpu] [meif]
#
# Each run resumes from its workdir's latest checkpoint, so rerunning after an interruption continues.
# Wall time on a 2-core CPU: see results/README.md. Copy the stages into the package with
#   python results/export_weights.py runs/cpu
set -euo pipefail
DATA=${1:?usage: bash results/train_cpu.sh DATA_DIR [RUNS_DIR] [meif]}
RUNS=${2:-runs/cpu}
cd "$(dirname "$0")/.."
for stage in mfif meif ivf; do
  teacher=()
  case $stage in meif) teacher=(--config.teacher_ckpt="$RUNS/mfif");; ivf) teacher=(--config.teacher_ckpt="$RUNS/meif");; esac
  /usr/bin/time -f "$stage wall %e s" python train.py --config="configs/$stage.py:cpu" --workdir="$RUNS/$stage" \
    --config.data.data_dir="$DATA" "${teacher[@]}"
done
for stage in ivf "${@:3}"; do
  /usr/bin/time -f "${stage}_no_teacher wall %e s" python train.py --config="configs/$stage.py:cpu" \
    --workdir="$RUNS/${stage}_no_teacher" --config.data.data_dir="$DATA" --config.use_teacher=False
done
