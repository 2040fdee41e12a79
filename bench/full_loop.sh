#!/usr/bin/env bash
# The whole curation loop on UTKFace, end to end, resumable:
#   split -> baseline run -> audit -> score + flag-mislabels (FiftyOne) -> [human review] ->
#   export (cleaned + oversampled) -> retrain --compare (x2) -> the results table (docs/benchmarks.md).
#
# Every step is skipped when its output already exists (a complete run, a manifest, a split folder), so
# the script can be re-run after an interruption, or after reviewing in the App to redo the export and the
# retrains (FORCE=1 replaces the exported splits; delete runs/loop/cleaned etc. to retrain them).
#
# Configure with environment variables:
#   DATA=${UTKFACE_DIR:-dataset/UTKFace}  images (read-only)    ROOT=dataset        split folders
#   RUNS=runs/loop                     run folders             CONFIG=             YAML TrainConfig (empty: reference run)
#   SETS="--set threads=2"             extra training overrides (baseline only; retrains copy its config)
#   BASELINE=$RUNS/baseline            reuse a finished run here (e.g. BASELINE=runs/default)
#   FO_DATASET=utkface                 FiftyOne dataset        SKIP_FLAG=0         1: no score/flag step
#   FLAG_ARGS="--cheap"                flag-mislabels options  REVIEW=             decisions CSV (default: the dataset)
#   AUDITS=                            audits parquet (default: $RUNS/audits.parquet via `curate audit`)
#   EXPORT_ARGS="--drop-suspects --drop-low-quality"   cleaning policy (the reference notebook's filtering)
#   OVERSAMPLE_ARGS="--target mix:0.5 --max-factor 5"  oversampling targets
#   NAME=train_cleaned  FORCE=0  N_BOOT=1000  THREADS=   (THREADS empty: the baseline's own setting)
#   KINDS="cleaned oversampled"        which exported splits to retrain (e.g. KINDS=oversampled with
#                                      SKIP_FLAG=1: the effect of oversampling alone, nothing removed)
#   QUICK=1             the sample, 64 px, 2 epochs, no FiftyOne: checks the machinery in a few minutes
set -euo pipefail
cd "$(dirname "$0")/.."
# Offline model weights (ImageNet, BRISQUE) live in ../shared/torch_home unless TORCH_HOME says otherwise.
[[ -z "${TORCH_HOME:-}" && -d ../shared/torch_home ]] && export TORCH_HOME="$(cd ../shared/torch_home && pwd)"

if [[ "${QUICK:-0}" == 1 ]]; then
  DATA=${DATA:-dataset/sample}; ROOT=${ROOT:-runs/quick_loop/dataset}; RUNS=${RUNS:-runs/quick_loop}
  SETS=${SETS:-"--set image_size=64 --set batch_size=32 --set num_epochs=2 --set override_cycle_epoch_count=2 --set threads=1"}
  SKIP_FLAG=${SKIP_FLAG:-1}
fi
DATA=${DATA:-${UTKFACE_DIR:-dataset/UTKFace}}
ROOT=${ROOT:-dataset}
RUNS=${RUNS:-runs/loop}
CONFIG=${CONFIG:-}
SETS=${SETS:-}
BASELINE=${BASELINE:-$RUNS/baseline}
FO_DATASET=${FO_DATASET:-utkface}
SKIP_FLAG=${SKIP_FLAG:-0}
FLAG_ARGS=${FLAG_ARGS:---cheap}
REVIEW=${REVIEW:-}
AUDITS=${AUDITS:-}
EXPORT_ARGS=${EXPORT_ARGS:-}
OVERSAMPLE_ARGS=${OVERSAMPLE_ARGS:-}
NAME=${NAME:-train_cleaned}
FORCE=${FORCE:-0}
N_BOOT=${N_BOOT:-1000}
THREADS=${THREADS:-}
KINDS=${KINDS:-cleaned oversampled}

log() { printf '\n[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
has_cmd() { curate "$1" --help >/dev/null 2>&1; }
complete() { [[ -f "$1/metadata.json" ]] && grep -q '"status": "complete"' "$1/metadata.json"; }
mkdir -p "$RUNS"
T0=$(date +%s)

log "1/7 split $DATA -> $ROOT"
if [[ -f "$ROOT/train_8_folds_first/manifest.csv" && -f "$ROOT/test_2_folds_last/manifest.csv" ]]; then
  echo "exists: $ROOT/train_8_folds_first, $ROOT/test_2_folds_last"
else
  curate split "$DATA" --out "$ROOT" --quiet
fi

log "2/7 baseline run $BASELINE"
if complete "$BASELINE"; then
  echo "complete: $BASELINE"
else
  resume=(); [[ -f "$BASELINE/checkpoints/last.pt" ]] && resume=(--resume)
  # shellcheck disable=SC2086
  curate train ${CONFIG:+--config "$CONFIG"} --set train_path="$ROOT/train_8_folds_first" \
    --set val_path="$ROOT/test_2_folds_last" $SETS --out "$BASELINE" "${resume[@]}" --quiet
fi

log "3/7 audits (skin tone, quality)"
if [[ -z "$AUDITS" ]]; then
  AUDITS="$RUNS/audits.parquet"
  if [[ -f "$AUDITS" ]]; then echo "exists: $AUDITS"
  elif has_cmd audit; then curate audit "$DATA" --out "$AUDITS" --quiet
  else echo "no \`curate audit\` command: no skin-tone breakdown, oversampling by age bin x gender"; AUDITS=""; fi
fi
audit_opt=(); [[ -n "$AUDITS" ]] && audit_opt=(--audits "$AUDITS")

log "4/7 score + flag-mislabels ($FO_DATASET)"
if [[ "$SKIP_FLAG" == 1 ]]; then
  echo "skipped (SKIP_FLAG=1)"
else
  curate score "$DATA" --dataset "$FO_DATASET" --model "$BASELINE/checkpoints/best.pt" \
    ${AUDITS:+--audits "$AUDITS"} --quiet
  # shellcheck disable=SC2086
  curate flag-mislabels --dataset "$FO_DATASET" $FLAG_ARGS --quiet
  echo "review now in the App (curate app --dataset $FO_DATASET), then re-run this script"
fi

log "5/7 review decisions"
review_opt=()
if [[ -n "$REVIEW" ]]; then
  review_opt=(--review "$REVIEW")
elif [[ "$SKIP_FLAG" != 1 ]]; then
  curate review-status --dataset "$FO_DATASET" --csv "$RUNS/review_decisions.csv"
  review_opt=(--dataset "$FO_DATASET")   # every sample: the unreviewed suspects too (--drop-suspects)
else
  echo "no review (SKIP_FLAG=1 and no REVIEW): the cleaned split equals the training split"
fi

log "6/7 export $ROOT/$NAME and ${NAME}_oversampled"
force_opt=(); [[ "$FORCE" == 1 ]] && force_opt=(--force)
if [[ -f "$ROOT/$NAME/manifest.csv" && -f "$ROOT/${NAME}_oversampled/manifest.csv" && "$FORCE" != 1 ]]; then
  echo "exist: $ROOT/$NAME, $ROOT/${NAME}_oversampled (FORCE=1 to re-export)"
else
  # shellcheck disable=SC2086
  curate export --from "$ROOT/train_8_folds_first" --root "$ROOT" --name "$NAME" "${review_opt[@]}" \
    "${audit_opt[@]}" --oversample $EXPORT_ARGS $OVERSAMPLE_ARGS "${force_opt[@]}" --quiet
fi

log "7/7 retrain --compare"
thr=(); [[ -n "$THREADS" ]] && thr=(--threads "$THREADS")
runs_done=()
for kind in $KINDS; do
  split="$ROOT/$NAME"; [[ $kind == oversampled ]] && split="$ROOT/${NAME}_oversampled"
  curate retrain --split "$split" --baseline "$BASELINE" --out "$RUNS/$kind" --compare "${review_opt[@]}" \
    "${audit_opt[@]}" --n-boot "$N_BOOT" "${thr[@]}" --quiet
  runs_done+=("$RUNS/$kind")
done

python bench/loop_table.py "$BASELINE" "${runs_done[@]}" | tee "$RUNS/README_table.md"
log "done in $(( ($(date +%s) - T0) / 60 )) min: reports $(printf '%s/compare/report.md ' "${runs_done[@]}")"
