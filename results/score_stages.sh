#!/usr/bin/env bash
# Scores sets of trained stages beside the per-pixel average on the test sets, at full resolution,
# clean convention, and writes one comparison per set.
#
#   [SETS=tno,lytro,...] bash results/score_stages.sh DATA OUT STAGES_DIR [STAGES_DIR ...]
#
# Each STAGES_DIR holds mfif/, meif/ and ivf/ stage workdirs (a weight set such as
# fusionjax/weights/efrufn_w16_cpu, or a folder of training runs) and is scored under its folder
# name. SETS defaults to tno,roadscene,lytro,mefb,sice,harvard_mri_ct,harvard_mri_spect. Writes
# OUT/<set>/<name>/ and OUT/<set>/average/ (evaluate.py folders, reused on a rerun), the same fused
# images rescored in the paper convention (OUT/<set>/<name>_paper/, for Ma's MS-SSIM) and
# OUT/<set>/compare.md; the medical sets use the MEIF stage, as in the paper.
# `python results/score_table.py OUT` prints the table of all sets.
set -euo pipefail
usage="usage: [SETS=...] bash results/score_stages.sh DATA OUT STAGES_DIR [STAGES_DIR ...]"
DATA=${1:?$usage}
OUT=${2:?$usage}
shift 2
[[ $# -gt 0 ]] || { echo "$usage" >&2; exit 2; }
SETS=${SETS:-tno,roadscene,lytro,mefb,sice,harvard_mri_ct,harvard_mri_spect}
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
  for stages in "$@"; do
    name=$(basename "$stages")
    run "$OUT/$set/$name" --ckpt="$stages/$(stage_of "$set")"
    folders+=("$OUT/$set/$name")
  done
  run "$OUT/$set/average" --method=average
  folders+=("$OUT/$set/average")
  for folder in "${folders[@]}"; do
    run "${folder}_paper" --fused_dir="$folder/fused" --convention=paper
  done
  python evaluate.py --compare="$(IFS=,; echo "${folders[*]}")" --out="$OUT/$set/compare.md"
done
