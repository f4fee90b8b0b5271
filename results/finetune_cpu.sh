#!/usr/bin/env bash
# Continues the shipped CPU stages (fusionjax/weights/efrufn_cpu) through MFIF -> MEIF -> IVF on a CPU,
# with larger crops, more photographs, true blacks in the exposure data and a held-back validation
# split, then scores every checkpoint of each stage (and the stage it started from) on that split.
#
#   bash results/finetune_cpu.sh DATA [RUNS_DIR=runs/ft] [STEPS=400]
#   STAGES="meif ivf" bash results/finetune_cpu.sh DATA ...   # only these stages; the others must
#                                                            # already be in RUNS_DIR
#
# Each stage starts from the shipped stage's parameters (--config.init_ckpt) and is taught by the
# stage before it in this run, as in the paper's sequential gradient transfer. What changes from
# configs/<stage>.py:cpu (results/README.md lists the rest of that config):
#   - crops of 96 px instead of 64 (4 per step, as before);
#   - photographs from clean_natural/ and more_natural/ (309 instead of 210) for the synthetic pairs;
#   - every 8th photograph, SICE training scene and RoadScene training pair held back
#     (config.data.holdout_every=8): the validation split, never trained on and never a test set;
#   - MEIF: 40 % of the synthetic exposure pairs have random regions set to true black
#     (config.data.black_out_fraction=0.4): in half of them the photograph itself, so both exposures
#     and the reference are black there (black backgrounds stay black), in the other half one
#     exposure alone while the reference keeps the photograph (config.data.black_out_one_source=0.5:
#     what one source shows survives where the other is black, as in MRI-SPECT pairs);
#   - STEPS steps per stage, a 20-step warm-up to the usual learning rate 2e-4, then the cosine decay;
#     a checkpoint every 50 steps, all kept, for the validation curve;
#   - the teacher of MEIF and IVF is the previous stage's best checkpoint on validation data.
#
# Two settings start a new chain instead of continuing the shipped one:
#   WIDTH=32 (default 16): the network width, with WIDTH/8 heads (the paper's 32 has 4);
#   INIT=previous (default shipped): each stage starts from the previous stage of this run, at the
#     step its validation curve chose (MFIF, the first, must then already be in RUNS_DIR with its
#     validation_mfif.jsonl, e.g. a width-curve run), instead of from fusionjax/weights/efrufn_cpu.
#   WIDTH=32 INIT=previous STAGES="meif ivf" bash results/finetune_cpu.sh DATA runs/w32 800
# Every run resumes from its workdir, so rerunning after an interruption continues where it stopped.
# results/validation_curve.py writes RUNS_DIR/validation_<stage>.md after each stage.
set -euo pipefail
DATA=${1:?usage: bash results/finetune_cpu.sh DATA_DIR [RUNS_DIR] [STEPS]}
RUNS=${2:-runs/ft}
STEPS=${3:-400}
STAGES=${STAGES:-mfif meif ivf}
WIDTH=${WIDTH:-16}
INIT=${INIT:-shipped}
cd "$(dirname "$0")/.."
mkdir -p "$RUNS"
common=(
  --config.model.width="$WIDTH" --config.model.num_heads="$((WIDTH / 8))"
  --config.data.data_dir="$DATA" --config.data.patch_size=96 --config.data.holdout_every=8
  --config.num_steps="$STEPS" --config.optimizer.warmup_steps=20
  --config.checkpoint_every=50 --config.keep_checkpoints=1000
)
best_step() {  # the best validated step of a stage of this run
  python -c "import json, sys; rows = [json.loads(l) for l in open(sys.argv[1])]; \
print(next(r['step'] for r in rows if r.get('best')))" "$RUNS/validation_$1.jsonl"
}
for stage in $STAGES; do
  previous=""  # the stage before this one in this run: its teacher, and with INIT=previous its start
  extra=()
  case $stage in
    mfif) extra=("--config.data.image_sets=('clean_natural','more_natural')");;
    meif) previous=mfif
          extra=("--config.data.image_sets=('clean_natural','more_natural')"
                 --config.data.black_out_fraction=0.5 --config.data.black_out_one_source=0.5);;
    ivf) previous=meif;;
  esac
  if [ -n "$previous" ]; then
    extra+=(--config.teacher_ckpt="$RUNS/$previous" --config.teacher_step="$(best_step $previous)")
  fi
  case $INIT in
    shipped) init=(--config.init_ckpt="fusionjax/weights/efrufn_cpu/$stage");;
    previous)
      if [ -z "$previous" ]; then
        echo "INIT=previous: MFIF has no previous stage; put it in $RUNS/mfif" >&2; exit 2
      fi
      init=(--config.init_ckpt="$RUNS/$previous" --config.init_step="$(best_step $previous)");;
    *) echo "INIT must be shipped or previous, not $INIT" >&2; exit 2;;
  esac
  /usr/bin/time -f "$stage wall %e s" python train.py --config="configs/$stage.py:cpu" \
    --workdir="$RUNS/$stage" "${init[@]}" "${common[@]}" "${extra[@]}"
  python results/validation_curve.py "$RUNS/$stage" --data_dir "$DATA" --baseline shipped \
    --out "$RUNS/validation_$stage.md"
done
