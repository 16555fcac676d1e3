"""Is WordPiece training deterministic across processes, and what does that cost?

    BENCH_DATA_DIR=../shared/data python benchmarks/tokenizer_determinism.py \
        [--runs 3] [--baseline HEAD] [--baseline-runs 1] [--max-documents N] [--vocab-size 8192]

Trains the vocabulary `bench.data.tokenizer.train_wordpiece` makes, once per separate process
(tokenizers' hash maps get a new random seed in each), and prints one row per process: the
sha256 of vocab.txt, the training time, the part of it spent choosing the alphabet and the
continuing (`##c`) tokens, and how many `##c` tokens the vocab holds. `--baseline REF` also
runs the `train_wordpiece` of bench/data/tokenizer.py at that git revision, for comparison.
Each process reads the corpus itself; reading is timed apart from training.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

REPO = Path(__file__).resolve().parent.parent
TOKENIZER_MODULE = "bench/data/tokenizer.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=os.environ.get("BENCH_DATA_DIR"), help="default: $BENCH_DATA_DIR")
    parser.add_argument("--corpus", default="enwiki-2015-wikiextractor")
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--max-documents", type=int, default=None)
    parser.add_argument("--runs", type=int, default=3, help="processes training with this checkout's code")
    parser.add_argument("--baseline", default=None, help="git revision whose train_wordpiece to compare (e.g. HEAD)")
    parser.add_argument("--baseline-runs", type=int, default=1)
    parser.add_argument("--worker", nargs=2, metavar=("MODULE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args, Path(args.worker[0]), Path(args.worker[1]))
        return

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-tokdet-") as scratch:
        jobs = [("this checkout", REPO / TOKENIZER_MODULE, run) for run in range(args.runs)]
        if args.baseline:
            old = Path(scratch) / "baseline_tokenizer.py"
            show = ["git", "show", f"{args.baseline}:{TOKENIZER_MODULE}"]
            source = subprocess.run(show, cwd=REPO, check=True, capture_output=True, text=True).stdout
            old.write_text(source, encoding="utf-8")
            jobs += [(f"baseline {args.baseline}", old, run) for run in range(args.baseline_runs)]
        for label, module, run in jobs:
            out = Path(scratch) / f"tok-{len(rows)}"
            command = [sys.executable, __file__, "--worker", str(module), str(out)]
            command += ["--corpus", args.corpus, "--vocab-size", str(args.vocab_size)]
            command += ["--data", str(args.data)] if args.data else []
            command += ["--max-documents", str(args.max_documents)] if args.max_documents else []
            result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
            rows.append({"code": label, "process": run + 1, **result})
            print(f"  {label}, process {run + 1}: {result['vocab_sha256'][:16]}, {result['train_s']} s", file=sys.stderr)

    print(f"corpus {args.corpus}, {rows[0]['documents']} documents, vocab size {args.vocab_size}")
    table = [{**row, "vocab_sha256": row["vocab_sha256"][:16]} for row in rows]
    print(tabulate([{k: v for k, v in row.items() if k != "documents"} for row in table], headers="keys", tablefmt="github"))
    for label in dict.fromkeys(row["code"] for row in rows):
        hashes = {row["vocab_sha256"] for row in rows if row["code"] == label}
        runs = sum(row["code"] == label for row in rows)
        verdict = "identical" if len(hashes) == 1 else f"{len(hashes)} different vocabularies"
        print(f"{label}: {runs} process(es), vocab.txt {verdict}" if runs > 1 else f"{label}: 1 process")


def _worker(args: argparse.Namespace, module_file: Path, out: Path) -> None:
    """One process: read the corpus, train with `module_file`'s train_wordpiece, print JSON."""
    from bench.data.corpus import resolve_corpus

    spec = importlib.util.spec_from_file_location("tokenizer_under_test", module_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    alphabet_s = [0.0]
    if hasattr(module, "wordpiece_alphabet"):  # time the deterministic alphabet apart
        inner = module.wordpiece_alphabet

        def timed(*a, **k):
            start = time.perf_counter()
            try:
                return inner(*a, **k)
            finally:
                alphabet_s[0] += time.perf_counter() - start

        module.wordpiece_alphabet = timed

    start = time.perf_counter()
    docs = list(resolve_corpus(args.corpus, args.data).documents(args.max_documents))
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    module.train_wordpiece(docs, args.vocab_size, out)
    train_s = time.perf_counter() - start
    vocab = (out / "vocab.txt").read_text(encoding="utf-8").splitlines()
    print(json.dumps({
        "vocab_sha256": hashlib.sha256((out / "vocab.txt").read_bytes()).hexdigest(),
        "vocab": len(vocab),
        "continuing_##c": sum(token.startswith("##") and len(token) == 3 for token in vocab),
        "read_s": round(read_s, 2),
        "train_s": round(train_s, 2),
        "alphabet_s": round(alphabet_s[0], 2),
        "documents": len(docs),
    }))


if __name__ == "__main__":
    main()
