#!/usr/bin/env bash
# GPU checks and the GPU rows of BENCHMARKS.md, in one run on a CUDA machine.
#
#   bash benchmarks/gpu_check.sh OUT_DIR [CHECKPOINT]
#
# 1. the CUDA tests (tests/test_cuda.py): fp16/bf16 training, pinned batches, GPU augmentation,
#    GPU vs CPU scoring, deterministic resume, two DDP ranks on one GPU, SAM, compiled training;
# 2. model throughput (benchmarks/bench_models.py) at batch 32 and 128, fp32 / bf16 / fp16, and the
#    seed's literal network at full length, batch 8 (the prototype's 38 s per batch);
# 3. an hour of audio scored on the GPU (benchmarks/bench_inference.py);
# 4. end-to-end training throughput through `rawguard train` against the bare step (bench_train.py),
#    and eager against compiled training (`train.compile`, bench_compile.py);
# 5. CHECKPOINT (if given) evaluated on the shared corpus dev set on the GPU and on the CPU;
# 6. `rawguard demo` on the GPU;
# 7. the whole test suite with the GPU present (pytest-xdist, 8 workers), if pytest-xdist is installed.
#
# ONLY="name ..." runs a subset of the steps (names as in the summary), e.g. ONLY="cuda_tests suite".
# Needs ../shared/corpus (dev split at least) for 4 and 5, and rawguard importable (pip install -e .,
# or PYTHONPATH=src). Each step has its own time limit and the script goes on after a failure; logs
# and JSON results land in OUT_DIR (named as in benchmarks/results/gpu/), a summary table at the end
# of the output.
set -u
OUT_DIR=${1:?usage: gpu_check.sh OUT_DIR [CHECKPOINT]}
CHECKPOINT=${2:-}
mkdir -p "$OUT_DIR"
WORK=$(mktemp -d)  # scratch: the dev cache and the demo's folder
trap 'rm -rf "$WORK"' EXIT
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
declare -a SUMMARY=()

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to OUT_DIR/NAME.log
    local name=$1 limit=$2
    shift 2
    if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return; fi
    echo "=== $name ($(date +%T), limit ${limit}s)"
    local start=$SECONDS
    timeout "$limit" "$@" >"$OUT_DIR/$name.log" 2>&1
    local rc=$?
    tail -n 25 "$OUT_DIR/$name.log"
    SUMMARY+=("$(printf '%-16s rc=%-3s %4ss' "$name" "$rc" "$((SECONDS - start))")")
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'cuDNN', torch.backends.cudnn.version(), torch.cuda.get_device_name())"

step cuda_tests 240 $PY -m pytest -q -rA -p no:cacheprovider tests/test_cuda.py
step models_b32 75 $PY benchmarks/bench_models.py --device cuda --models rawnet-lite,rawnet2 \
    --precisions fp32,bf16,fp16 --batch 32 --out "$OUT_DIR/models_b32.json"
step models_b128 60 $PY benchmarks/bench_models.py --device cuda --models rawnet-lite,rawnet2 \
    --precisions fp32,bf16 --batch 128 --out "$OUT_DIR/models_b128.json"
step seed_literal 75 $PY benchmarks/bench_models.py --device cuda --models seed-literal --seed-shrink 1 \
    --precisions fp32 --batch 8 --out "$OUT_DIR/models_seed_literal_b8.json"
step inference 60 $PY benchmarks/bench_inference.py --device cuda --batch-sizes 64,256,1024 --repeats 3
step train_e2e 120 $PY benchmarks/bench_train.py --device cuda --train-split dev --models rawnet-lite rawnet2 \
    --precisions fp32 bf16 --batch 64 --steps 40 --rounds 1 --threads 4 --out "$OUT_DIR/train_end_to_end_b64.json"
step train_e2e_b256 120 $PY benchmarks/bench_train.py --device cuda --train-split dev --models rawnet-lite \
    --precisions fp32 --batch 256 --steps 30 --rounds 2 --threads 4 --prefetch 4 --out "$OUT_DIR/train_end_to_end_b256.json"
step compile_b32 200 $PY benchmarks/bench_compile.py --device cuda --train-split dev --batch 32 --threads 4 \
    --warmup 20 --steps 200 --rounds 2 --out "$OUT_DIR/compile_b32.json"
step compile_b128 150 $PY benchmarks/bench_compile.py --device cuda --train-split dev --batch 128 --threads 4 \
    --warmup 20 --steps 100 --rounds 2 --out "$OUT_DIR/compile_b128.json"
if [ -n "$CHECKPOINT" ]; then
    step prepare_dev 45 $PY -m rawguard.cli prepare ../shared/corpus/protocols/dev.txt \
        --audio-dir ../shared/corpus/flac --out "$WORK/dev" --quiet
    step eval_gpu 45 $PY -m rawguard.cli evaluate --checkpoint "$CHECKPOINT" --data "$WORK/dev" \
        --out "$OUT_DIR/eval_gpu" --device cuda
    step eval_cpu 60 $PY -m rawguard.cli evaluate --checkpoint "$CHECKPOINT" --data "$WORK/dev" \
        --out "$OUT_DIR/eval_cpu" --device cpu
fi
step demo 120 $PY -m rawguard.cli demo --out "$WORK/demo" --no-progress
cp "$WORK/demo"/report.md "$OUT_DIR/demo_report.md" 2>/dev/null
if $PY -c "import xdist" 2>/dev/null; then
    step suite 180 $PY -m pytest -q -p no:cacheprovider -n 8 tests
fi

echo "=== summary"
printf '%s\n' "${SUMMARY[@]}"
