"""Time the pretraining-data pipeline on a whole corpus (default: the shared Wikipedia shards).

    BENCH_DATA_DIR=../shared/data python benchmarks/data_prep.py [--max-documents N] [--vocab NAME]

Prepares into a temporary cache (deleted afterwards unless --cache-dir is given), prints
the time of each phase and the dataset's statistics, then calls again to time a cache hit.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from bench.data.pretrain_data import DataSpec, load_blocks, prepare_pretraining_data

PHASES = (
    ("read", "read + parse corpus"),
    ("tokenizer", "tokenizer training / build"),
    ("split", "sentence splitting"),
    ("encode", "encoding (batched, Rust)"),
    ("pack", "packing into blocks"),
    ("save", "save + statistics"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data", type=Path, default=os.environ.get("BENCH_DATA_DIR"), help="data dir (default: $BENCH_DATA_DIR)"
    )
    parser.add_argument("--corpus", default=DataSpec.corpus)
    parser.add_argument("--vocab", default=None, help="vocab name or path (default: train one)")
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--max-documents", type=int, default=None)
    parser.add_argument("--cache-dir", type=Path, default=None, help="keep the cache here (default: a temp dir)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()

    spec = DataSpec(
        corpus=args.corpus,
        vocab=args.vocab,
        vocab_size=args.vocab_size,
        seq_len=args.seq_len,
        max_documents=args.max_documents,
    )
    with tempfile.TemporaryDirectory(prefix="bench-data-") as scratch:
        cache_dir = args.cache_dir or Path(scratch)
        start = time.perf_counter()
        data = prepare_pretraining_data(spec, args.data, cache_dir, progress=not args.no_progress)
        total = time.perf_counter() - start

        start = time.perf_counter()
        again = prepare_pretraining_data(spec, args.data, cache_dir, progress=False)
        hit = time.perf_counter() - start
        start = time.perf_counter()
        blocks = load_blocks(again)
        load = time.perf_counter() - start

    timings = data.stats["timings_s"]
    rows = [(label, f"{timings.get(name, 0.0):.2f}") for name, label in PHASES]
    rows += [
        ("total (first call, incl. imports of lazy deps)", f"{total:.2f}"),
        ("second call (cache hit)", f"{hit:.3f}"),
        ("load_blocks", f"{load:.3f}"),
    ]
    _print_table(f"phases, seconds (spec: {spec})", rows)

    stats = {key: value for key, value in data.stats.items() if key != "timings_s"}
    rows = [(key, _fmt(value)) for key, value in stats.items()]
    rows += [
        ("num_tokens (non-pad, with [CLS]/[SEP])", _fmt(data.num_tokens)),
        ("blocks tensor", f"{tuple(blocks.shape)} {blocks.dtype}"),
        ("vocab size", _fmt(data.tokens.vocab_size)),
        ("encoding throughput", f"{data.stats['tokens'] / max(timings['encode'], 1e-9):,.0f} tokens/s"),
        ("peak RSS", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB"),
        ("cache key", data.key),
    ]
    _print_table("statistics", rows)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _print_table(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    print(f"\n{title}")
    for name, value in rows:
        print(f"  {name:<{width}}  {value:>12}")


if __name__ == "__main__":
    main()
