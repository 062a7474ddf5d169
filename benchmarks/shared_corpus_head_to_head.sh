#!/usr/bin/env bash
# rawnet-lite vs the RawNet2 baseline on the shared corpus, under the same CPU time budget.
# Both select best.pt on dev (unseen speakers) and are evaluated on dev; the table and plot land in
# $OUT/comparison.{md,png,json}. Usage (from the repository root):
#   MINUTES=15 THREADS=2 bash benchmarks/shared_corpus_head_to_head.sh
# SYNTH lists the copy-synthesis methods (as `rawguard recipe shared-corpus`): copies of the train
# bona fide clips join the train cache as extra spoofs, so both models train on the same data.
# SYNTH="" trains on the corpus alone. Changing SYNTH changes the train cache, and `rawguard train`
# would resume an existing $OUT/<model> on it: give each SYNTH its own OUT (an OUT from before SYNTH
# existed holds runs trained without copies).
# Every step resumes if interrupted: re-run the same command.
set -euo pipefail
CORPUS=${CORPUS:-../shared/corpus}
OUT=${OUT:-runs/shared}
MINUTES=${MINUTES:-15}
THREADS=${THREADS:-2}
MODELS=${MODELS:-"lite:shared_corpus rawnet2:shared_corpus_rawnet2"}
SYNTH=${SYNTH-"lpc sinusoidal world griffin_lim neural"}  # '-', not ':-': an empty SYNTH means none
VOCODER_STEPS=${VOCODER_STEPS:-5000}     # training steps of the neural method's vocoder (as the recipe)
VOCODER_MINUTES=${VOCODER_MINUTES:-15}  # and its wall-clock cap

train_protocols=("$CORPUS/protocols/train.txt")
audio_dirs=(--audio-dir "$CORPUS/flac")
if [[ " $SYNTH " == *" neural "* ]]; then
  # The neural method's vocoder learns from the train split's bona fide clips (never dev).
  rawguard prepare "$CORPUS/protocols/train.txt" --audio-dir "$CORPUS/flac" --format asvspoof2019 \
    --out "$OUT/caches/train_corpus" --quiet
  rawguard train-vocoder "$OUT/caches/train_corpus" --out "$OUT/vocoder" --max-steps "$VOCODER_STEPS" \
    --minutes "$VOCODER_MINUTES" --quiet
fi
for method in $SYNTH; do
  vocoder=()
  [[ $method == neural ]] && vocoder=(--vocoder "$OUT/vocoder/vocoder.pt")
  # Train split only: copies of dev speakers in training would leak them.
  rawguard synth-spoof --protocol "$CORPUS/protocols/train.txt" --audio-dir "$CORPUS/flac" --format asvspoof2019 \
    "$OUT/synth/$method" --method "$method" "${vocoder[@]}" --quiet
  train_protocols+=("$OUT/synth/$method/protocol.csv")
  audio_dirs+=(--audio-dir -)  # each protocol.csv finds its copies beside itself
done
# No --format: prepare would apply it to the CSVs too; the train protocol's format is detected.
rawguard prepare "${train_protocols[@]}" "${audio_dirs[@]}" --out "$OUT/caches/train" --quiet
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
