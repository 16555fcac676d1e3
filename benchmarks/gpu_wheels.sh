#!/usr/bin/env bash
# Wheels for a GPU machine that has torch, transformers and accelerate but no package index:
# `datasets` and `evaluate` and what they need beyond that image, saved in .whl/ (git-ignored),
# for benchmarks/gpu_check.sh to install. Run here, where pip reaches a registry.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl datasets evaluate dill multiprocess submitit
ls .whl
