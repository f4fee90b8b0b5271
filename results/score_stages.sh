#!/usr/bin/env bash
# Scores a set of trained stages beside the shipped ones and the per-pixel average on the test sets,
# at full resolution, clean convention, and writes one comparison per set.
#
#   bash results/score_stages.sh DATA OUT [STAGES_DIR] [SETS]
#
# STAGES_DIR holds mfif/, meif/ and ivf/ stage workdirs (default: only the shipped stages and the
# average are scored). SETS is a comma-separated list (default: tno,roadscene,lytro,mefb,
# harvard_mri_ct,harvard_mri_spect). Writes OUT/<set>/{candidate,shipped,average}/ (evaluate.py
# folders, reused on a rerun), the same fused images rescored in the paper convention
# (OUT/<set>/<method>_paper/, for Ma's MS-SSIM) and OUT/<set>/compare.md; the medical sets use the
# MEIF stage, as in the paper. `python results/score_table.py OUT` prints the table of all sets.
set -euo pipefail
DATA=${1:?usage: bash results/score_stages.sh DATA OUT [STAGES_DIR] [SETS]}
OUT=${2:?usage: bash results/score_stages.sh DATA OUT [STAGES_DIR] [SETS]}
STAGES=${3:-}
SETS=${4:-tno,roadscene,lytro,mefb,harvard_mri_ct,harvard_mri_spect}
cd "$(dirname "$0")/.."

stage_of() {
  case $1 in
    tno|roadscene) echo ivf;;
    lytro|mfi_whu) echo mfif;;
    *) echo meif;;
  esac
}

run() {  # run OUT_DIR ARGS...: one evaluation, skipped when it already has a summary
  local dir=$1; shift
  if [[ -f $dir/summary.json ]]; then return; fi
  python evaluate.py --dataset="$set" --data_dir="$DATA" --out="$dir" --noflops --overwrite "$@"
}

IFS=, read -ra sets <<< "$SETS"
for set in "${sets[@]}"; do
  folders=()
  if [[ -n $STAGES ]]; then
    run "$OUT/$set/candidate" --ckpt="$STAGES/$(stage_of "$set")"
    folders+=("$OUT/$set/candidate")
  fi
  run "$OUT/$set/shipped" --ckpt=shipped
  run "$OUT/$set/average" --method=average
  folders+=("$OUT/$set/shipped" "$OUT/$set/average")
  for folder in "${folders[@]}"; do
    run "${folder}_paper" --fused_dir="$folder/fused" --convention=paper
  done
  python evaluate.py --compare="$(IFS=,; echo "${folders[*]}")" --out="$OUT/$set/compare.md"
done
