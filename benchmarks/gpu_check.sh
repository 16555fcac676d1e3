#!/usr/bin/env bash
# The GPU checks as one command that fits a lent device's lease (at most 8 minutes, cold caches included):
#
#   bash benchmarks/gpu_check.sh [--dry-run] [OUT_DIR]
#
# Sections, each under its own time limit (seconds, overridable by the variable named):
#   0. device                                                      device.txt
#   1. the tests that need a GPU, and the CPU-provable GPU tests    tests.txt      T_TESTS=75
#   2. the pretraining step, harness vs the stock HF classes:      speed.md       T_SPEED=150
#      electra and bert at Small (Base too when T_BASE > 0), steps/s, tokens/s, MFU, peak memory
#   3. electra vs bert at Small on SST-2 under a wall-clock budget  run.md         T_RUN=240
#      (RUN_BUDGET per model, default 1min; fine-tuning capped at FT_MAX examples, 1 epoch, 2 seeds)
#      and its pretraining speed (steps/s, MFU)                    run_speed.md
#   the whole log                                                    log.txt
# At most 8 files land in OUT_DIR (default $OUT on a lent machine, else gpu_check/); everything else
# (results store, checkpoints, caches) goes under /tmp.
#
# --dry-run runs the same sections on the CPU at the tiny size with small limits, so CI keeps the
# script working (tests/test_gpu_check.py). What travels to the device (one line, see docs):
#   bash benchmarks/gpu_wheels.sh && bash benchmarks/gpu_data.sh     # here, once: .whl/ and .gpu_data/
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl", ".gpu_data"], timeout_s=540)
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
DIR="${1:-${OUT:-gpu_check}}"
mkdir -p "$DIR"
WORK="$(mktemp -d /tmp/gpu_check.XXXXXX)"
LOG="$DIR/log.txt"
: > "$LOG"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 TQDM_MININTERVAL=20
export BENCH_CACHE_DIR="$WORK/cache" TORCHINDUCTOR_CACHE_DIR="$WORK/inductor"
PY=python3

if [ "$DRY" = 1 ]; then
  SIZE=tiny; SPEED_SIZES=tiny; SPEED_ARGS="--steps 2 --rounds 1 --batch 8"; RUN_BUDGET="${RUN_BUDGET:-8s}"
  FT_MAX="${FT_MAX:-200}"; T_TESTS="${T_TESTS:-120}"; T_SPEED="${T_SPEED:-240}"; T_RUN="${T_RUN:-300}"; T_BASE=0
  TEST_ARGS="tests/test_pretrain_step.py tests/test_gpu_properties.py -k mfu_is_per_device"  # the section, quickly
  MAX_DOCS=150
  DATA="${BENCH_DATA_DIR:-$(cd .. && pwd)/shared/data}"
else
  SIZE=small; SPEED_SIZES=small; SPEED_ARGS="--steps 30 --rounds 2"; RUN_BUDGET="${RUN_BUDGET:-1min}"
  FT_MAX="${FT_MAX:-5000}"; T_TESTS="${T_TESTS:-75}"; T_SPEED="${T_SPEED:-150}"; T_RUN="${T_RUN:-240}"
  T_BASE="${T_BASE:-0}"
  TEST_ARGS="tests"; MAX_DOCS=400
  DATA="${BENCH_DATA_DIR:-$(pwd)/.gpu_data}"
  [ -d "$DATA/glue/SST-2" ] || DATA="$(cd .. && pwd)/shared/data"
fi
[ "${T_BASE:-0}" -gt 0 ] && SPEED_SIZES="$SPEED_SIZES,base"
export BENCH_DATA_DIR="$DATA"

# the device image lacks datasets/evaluate (and what they need): carried wheels, installed under /tmp
if ! $PY -c "import datasets, evaluate, submitit" 2>/dev/null; then
  if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" .whl/*.whl \
      && export PYTHONPATH="$WORK/site:${PYTHONPATH:-}"
  else
    echo "datasets/evaluate missing and no .whl/ folder: run benchmarks/gpu_wheels.sh where pip works" | tee -a "$LOG"
  fi
fi
export PYTHONPATH="$(pwd):${PYTHONPATH:-}"

section() { echo; echo "== $*"; }
note() { echo "$1" | tee -a "$2" | tee -a "$LOG"; }
run_for() {  # run_for SECONDS FILE CMD...: the command's output to FILE, the log and stdout, stopped at SECONDS
  local limit="$1" file="$2"; shift 2
  local t0; t0=$(date +%s)
  timeout -s TERM -k 20 "$limit" "$@" 2>&1 | grep --line-buffered -v "it/s\]$" | tee "$file" | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 124 ] && note "(stopped at its limit of ${limit} s)" "$file"
  note "(section took $(( $(date +%s) - t0 )) s, exit $rc)" "$file"
}

start=$(date +%s)
section "0. device" | tee -a "$LOG"
{ if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  else echo "no GPU (dry run on the CPU: $(nproc) cores)"; fi
  $PY -c "import torch, transformers, accelerate; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'transformers', transformers.__version__, 'accelerate', accelerate.__version__)"
  echo "data: $BENCH_DATA_DIR"; echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
} 2>&1 | tee "$DIR/device.txt" | tee -a "$LOG"

section "1. GPU tests (pytest -m gpu) and the CPU-provable GPU properties" | tee -a "$LOG"
if [ "$DRY" = 1 ]; then
  run_for "$T_TESTS" "$DIR/tests.txt" bash -c "$PY -m pytest -q -p no:cacheprovider $TEST_ARGS"
else
  run_for "$T_TESTS" "$DIR/tests.txt" bash -c "$PY -m pytest -q -p no:cacheprovider -m gpu $TEST_ARGS; \
    $PY -m pytest -q -p no:cacheprovider tests/test_gpu_properties.py -k 'not compiled_step_agrees'"
fi

section "2. pretraining step: harness vs stock HF ($SPEED_SIZES)" | tee -a "$LOG"
# shellcheck disable=SC2086
run_for "$T_SPEED" "$DIR/speed.md" $PY benchmarks/pretrain_speed.py --sizes "$SPEED_SIZES" --baseline hf $SPEED_ARGS

section "3. electra vs bert at $SIZE on SST-2, $RUN_BUDGET of pretraining each, fine-tuning capped at $FT_MAX" | tee -a "$LOG"
cat > "$WORK/gpu_check.toml" <<EOF
[run]
models = ["electra", "bert"]
task = "sst2"
size = "$SIZE"
budget = "$RUN_BUDGET"
seeds = 2
control = "scratch"
results = "$WORK/results"
[data]
corpus = "$( [ -d "$BENCH_DATA_DIR/corpus/enwiki-slice" ] && echo enwiki-slice || echo enwiki-2015-wikiextractor )"
vocab = "bert-base-uncased"
max_documents = $MAX_DOCS
[finetune]
max_train_examples = $FT_MAX
epochs = 1
EOF
run_for "$T_RUN" "$DIR/run.md" $PY -m bench run --config "$WORK/gpu_check.toml" --quiet
$PY benchmarks/run_summary.py --results "$WORK/results" 2>&1 | tee "$DIR/run_speed.md" | tee -a "$LOG"

echo; echo "== wall: $(( $(date +%s) - start )) s in all; $(ls "$DIR" | wc -l) files in $DIR" | tee -a "$LOG"
