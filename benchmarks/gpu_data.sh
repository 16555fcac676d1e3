#!/usr/bin/env bash
# The data gpu_check.sh needs, copied into .gpu_data/ (git-ignored) so it can travel to a device machine
# (../shared does not): GLUE SST-2, a 10-shard slice of the Wikipedia corpus, the BERT vocabulary. ~8 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC="${BENCH_DATA_DIR:-$(cd .. && pwd)/shared/data}"
rm -rf .gpu_data && mkdir -p .gpu_data/glue .gpu_data/corpus/enwiki-slice .gpu_data/vocab
cp -r "$SRC/glue/SST-2" .gpu_data/glue/
cp -r "$SRC/vocab/bert-base-uncased" .gpu_data/vocab/
ls "$SRC/corpus/enwiki-2015-wikiextractor"/*.gz | head -10 | xargs -I{} cp {} .gpu_data/corpus/enwiki-slice/
du -sh .gpu_data
