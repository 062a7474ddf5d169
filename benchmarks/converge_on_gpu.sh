#!/usr/bin/env bash
# rawnet-lite and RawNet2 trained to convergence on one GPU, side by side, on the shared corpus
# alone (no copy synthesis), dev = its unseen speakers. The CPU recipe compares the two models at
# the same 15 minutes of 2-core CPU, where RawNet2 gets through ~1 epoch; this asks the other
# question: how good is each when compute is not the limit?
#
#   bash benchmarks/converge_on_gpu.sh CORPUS OUT_DIR [MINUTES]
#
# CORPUS holds protocols/{train,dev}.txt and flac/. Three runs share the GPU for MINUTES (default 5)
# each, selecting best.pt on dev EER as every rawguard run does:
#   lite       the recipe's rawnet-lite (configs/shared_corpus.yaml) without copies (copy_share 0), batch 256 instead of 32 and
#              lr 4e-3, cosine over LITE_STEPS (default 6,000) steps: ~2x the clips of the CPU recipe
#   lite_wide  the same with 64 front-end filters, blocks of 64/128 channels and a 128-unit GRU
#   rawnet2    configs/shared_corpus_rawnet2.yaml (the baseline's own optimiser: Adam 1e-4, constant,
#              batch 32, 4 s windows), no early stopping: ~100 epochs of the corpus in 5 minutes
# Then best.pt of each is evaluated on dev (per-system EERs). Logs, metrics.jsonl files, the
# evaluations and a summary (summary.json) are packed into OUT_DIR/converge.tar.gz; the summary
# is also printed. Needs rawguard importable (pip install -e ., or PYTHONPATH=src).
set -u
CORPUS=${1:?usage: converge_on_gpu.sh CORPUS OUT_DIR [MINUTES]}
OUT_DIR=${2:?usage: converge_on_gpu.sh CORPUS OUT_DIR [MINUTES]}
MINUTES=${3:-5}
LITE_STEPS=${LITE_STEPS:-6000}
LITE_BATCH=${LITE_BATCH:-256}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
RESULTS="$WORK/results"
mkdir -p "$OUT_DIR" "$RESULTS"
export PYTHONUNBUFFERED=1

for split in train dev; do
    $PY -m rawguard.cli prepare "$CORPUS/protocols/$split.txt" --audio-dir "$CORPUS/flac" \
        --out "$WORK/$split" --quiet || exit 1
done

train() {  # train NAME ARGS...: one run in the background, log in RESULTS/NAME.log
    local name=$1
    shift
    timeout $((MINUTES * 60 + 240)) $PY -m rawguard.cli train --train "$WORK/train" --dev "$WORK/dev" \
        --out "$WORK/$name" --no-progress "$@" \
        --set train.max_minutes="$MINUTES" train.threads=4 train.device="$DEVICE" >"$RESULTS/$name.log" 2>&1 &
}

LITE_SETTINGS=(data.sampling.copy_share=0 data.batch_size="$LITE_BATCH" optim.lr=4e-3 train.max_steps="$LITE_STEPS" eval.every=250
    train.log_every=50 train.checkpoint_every=1000000)
echo "=== training, $MINUTES min each ($(date +%T))"
train lite --config shared_corpus --set "${LITE_SETTINGS[@]}"
train lite_wide --config shared_corpus --set "${LITE_SETTINGS[@]}" model.frontend_channels=64 \
    "model.block_channels=[64, 128]" model.gru_hidden=128
train rawnet2 --config shared_corpus_rawnet2 --set train.max_steps=1000000 eval.every=300 eval.patience=0 \
    train.checkpoint_every=1000000
wait
echo "=== evaluating best.pt on dev ($(date +%T))"
for name in lite lite_wide rawnet2; do
    tail -n 3 "$RESULTS/$name.log"
    cp "$WORK/$name/metrics.jsonl" "$RESULTS/$name.metrics.jsonl" 2>/dev/null
    cp "$WORK/$name/training_curves.png" "$RESULTS/$name.training_curves.png" 2>/dev/null
    $PY -m rawguard.cli evaluate --checkpoint "$WORK/$name/best.pt" --data "$WORK/dev" \
        --out "$RESULTS/${name}_eval" --device "$DEVICE" >"$RESULTS/${name}_eval.log" 2>&1 ||
        tail -n 5 "$RESULTS/${name}_eval.log"
done

$PY - "$RESULTS" <<'EOF'
"""Summarise each run: parameters, steps, clips/s, best dev EER and where, and best.pt's per-system EERs."""
import json, sys
from pathlib import Path

from rawguard.training.log import read_metrics

results = Path(sys.argv[1])
summary = {}
for name in ("lite", "lite_wide", "rawnet2"):
    log = results / f"{name}.metrics.jsonl"
    rows = read_metrics(log) if log.exists() else []
    train = [r for r in rows if r.get("type") == "train"]
    dev = [r for r in rows if r.get("type") == "dev"]
    entry = {"steps": train[-1]["step"] if train else None,
             "elapsed_s": train[-1]["elapsed_s"] if train else None,
             "clips_per_s_median": sorted(r["clips_per_s"] for r in train)[len(train) // 2] if train else None,
             "dev_curve": [[r["step"], round(100 * r["dev_eer"], 2)] for r in dev]}
    if dev:
        best = min(dev, key=lambda r: r["dev_eer"])
        entry.update(best_step=best["step"], best_dev_eer=round(100 * best["dev_eer"], 2),
                     last_dev_eer=round(100 * dev[-1]["dev_eer"], 2))
    metrics = results / f"{name}_eval" / "metrics.json"
    if metrics.exists():
        entry["best_pt_eval"] = json.loads(metrics.read_text())
    summary[name] = entry
    print(name, {k: v for k, v in entry.items() if k not in ("dev_curve", "best_pt_eval")})
(results / "summary.json").write_text(json.dumps(summary, indent=1))
EOF
tar -czf "$OUT_DIR/converge.tar.gz" -C "$WORK" results
cp "$RESULTS/summary.json" "$OUT_DIR/summary.json"
echo "=== done ($(date +%T))"
