#!/usr/bin/env bash
# The GPU checks, on a machine with one GPU, offline:
#
#   bash benchmarks/gpu_check.sh [OUT_DIR] [MINUTES]
#
# prints and writes under OUT_DIR (default gpu_check/; $OUT when set, as on a lent device machine):
#   1. the tests that need a GPU (pytest -m gpu)                          -> tests.txt
#   2. pretrain_speed.py --sizes small,base --baseline hf, electra and bert -> pretrain_speed.md
#   3. bench run --models electra,bert --size small --budget electra-small@6.25% on sst2 and every other
#      GLUE task the data folder holds: scores (run.md), wall-clock, steps/s, MFU (run_speed.md), results/
# Section 3 is stopped with SIGTERM after MINUTES (default 4, so the script fits in 10 minutes): a pretraining run saves its
# resume state and the next call of this script (same OUT_DIR) continues it, so the paper's 6.25%
# point can be reached in several calls of a per-call time limit.
#
# Packages: torch with CUDA, transformers, accelerate, click, tabulate, pandas. `datasets` and
# `evaluate` (fine-tuning data and metrics) are installed from wheels in .whl/ when missing:
# benchmarks/gpu_wheels.sh downloads them on a machine with a package index.
set -uo pipefail
cd "$(dirname "$0")/.."
DIR="${1:-${OUT:-gpu_check}}"
MINUTES="${2:-4}"
# overridable for a smoke test of the script itself on a CPU, e.g.
#   SPEED_SIZES=tiny RUN_SIZE=tiny RUN_BUDGET=2e12 RUN_ARGS="--seeds 1" bash benchmarks/gpu_check.sh /tmp/gc 3
SPEED_SIZES="${SPEED_SIZES:-small,base}"
RUN_SIZE="${RUN_SIZE:-small}"
RUN_BUDGET="${RUN_BUDGET:-electra-small@6.25%}"
RUN_ARGS="${RUN_ARGS:-}"
mkdir -p "$DIR"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 TQDM_MININTERVAL=20
export BENCH_DATA_DIR="${BENCH_DATA_DIR:-$(pwd)/shared/data}"
[ -d "$BENCH_DATA_DIR" ] || BENCH_DATA_DIR="$(cd .. && pwd)/shared/data"
PY=python3
if ! $PY -c "import datasets, evaluate" 2>/dev/null; then
  if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      && export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
  else
    echo "datasets/evaluate missing and no .whl/ folder: run benchmarks/gpu_wheels.sh where pip works" >&2
  fi
fi
export PYTHONPATH="$(pwd):${PYTHONPATH:-}"

echo "== device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$DIR/device.txt"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$DIR/device.txt"

echo "== 1. tests that need a GPU"
$PY -m pytest -q -m gpu -p no:cacheprovider tests 2>&1 | tail -15 | tee "$DIR/tests.txt"

echo "== 2. pretraining step: harness vs the stock HF classes (best of 3 alternating rounds)"
$PY benchmarks/pretrain_speed.py --sizes "$SPEED_SIZES" --baseline hf 2>&1 | tee "$DIR/pretrain_speed.md"

echo "== 3. bench run: Small at the paper's 6.25% budget (stops after ${MINUTES} min; re-run to continue)"
TASKS=sst2
for pair in CoLA:cola MRPC:mrpc STS-B:stsb RTE:rte QNLI:qnli QQP:qqp MNLI:mnli; do
  [ -d "$BENCH_DATA_DIR/glue/${pair%%:*}" ] && TASKS="$TASKS ${pair##*:}"
done
start=$(date +%s)
for task in $TASKS; do
  left=$(( MINUTES * 60 - ($(date +%s) - start) ))
  [ "$left" -gt 10 ] || { echo "time is up before $task: run the script again to continue"; break; }
  # shellcheck disable=SC2086
  timeout -s TERM -k 60 "$left" $PY -m bench run --models electra,bert --size "$RUN_SIZE" \
    --budget "$RUN_BUDGET" --task "$task" --results "$DIR/results" $RUN_ARGS 2>&1 \
    | grep -v "it/s\]$" | tee -a "$DIR/run.log"
done
$PY -m bench report --results "$DIR/results" 2>&1 | tee "$DIR/run.md"
$PY benchmarks/run_summary.py --results "$DIR/results" 2>&1 | tee "$DIR/run_speed.md"   # steps/s, MFU
echo "== wall: $(( $(date +%s) - start )) s of bench run; tables under $DIR"
