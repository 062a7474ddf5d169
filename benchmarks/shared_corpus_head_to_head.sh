#!/usr/bin/env bash
# rawnet-lite vs the RawNet2 baseline on the shared corpus, under the same CPU time budget.
# Both select best.pt on dev (unseen speakers) and are evaluated on dev; the table and plot land in
# $OUT/comparison.{md,png,json}. Usage (from the repository root):
#   MINUTES=15 THREADS=2 bash benchmarks/shared_corpus_head_to_head.sh
# Every step resumes if interrupted: re-run the same command.
set -euo pipefail
CORPUS=${CORPUS:-../shared/corpus}
OUT=${OUT:-runs/shared}
MINUTES=${MINUTES:-15}
THREADS=${THREADS:-2}
MODELS=${MODELS:-"lite:shared_corpus rawnet2:shared_corpus_rawnet2"}

rawguard prepare "$CORPUS/protocols/train.txt" --audio-dir "$CORPUS/flac" --out "$OUT/caches/train" --quiet
rawguard prepare "$CORPUS/protocols/dev.txt" --audio-dir "$CORPUS/flac" --out "$OUT/caches/dev" --quiet
runs=()
for entry in $MODELS; do
  name=${entry%%:*}
  recipe=${entry#*:}
  rawguard train --train "$OUT/caches/train" --dev "$OUT/caches/dev" --out "$OUT/$name" --config "$recipe" \
    --set "train.max_minutes=$MINUTES" "train.threads=$THREADS" --no-progress
  rawguard evaluate --checkpoint "$OUT/$name/best.pt" --data "$OUT/caches/dev" --out "$OUT/$name/eval-dev" \
    --threads "$THREADS"
  runs+=("$OUT/$name")
done
python benchmarks/compare_runs.py "${runs[@]}" --out "$OUT/comparison"
