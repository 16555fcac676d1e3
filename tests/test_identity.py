"""Data is part of a run's identity: changed data makes new runs, unchanged data reuses them."""

from __future__ import annotations

import csv
import io
import sqlite3

from click.testing import CliRunner

from bench.cli import main


def invoke(args, cwd, monkeypatch):
    monkeypatch.chdir(cwd)
    return CliRunner().invoke(main, args, catch_exceptions=False)


def _done(project) -> dict[str, int]:
    con = sqlite3.connect(project / "results" / "bench.db")
    return dict(con.execute("SELECT kind, count(*) FROM runs WHERE status = 'done' GROUP BY kind").fetchall())


def test_one_changed_row_of_a_task_file_fine_tunes_again(micro_project, monkeypatch):
    args = ["run", "--quiet", "--seeds", "1"]
    first = invoke(args, micro_project, monkeypatch)
    assert first.exit_code == 0 and "3 pretrained, 3 fine-tuned, 0 already" in first.output
    assert "0 pretrained, 0 fine-tuned, 6 already in the store" in invoke(args, micro_project, monkeypatch).output

    train = micro_project / "task" / "train.csv"
    lines = train.read_text().splitlines()
    text, label = lines[7].rsplit(",", 1)
    lines[7] = f"{text},{'neg' if label == 'pos' else 'pos'}"  # one label flipped
    train.write_text("\n".join(lines) + "\n")
    again = invoke(args, micro_project, monkeypatch)
    assert again.exit_code == 0, again.output
    assert "0 pretrained, 3 fine-tuned, 3 already in the store" in again.output  # pretraining kept, tasks redone
    assert _done(micro_project) == {"pretrain": 3, "finetune": 6}
    # the report keeps the two task versions apart: never 2 seeds from different data in one row
    rows = list(csv.DictReader(io.StringIO(invoke(["report", "--format", "csv"], micro_project, monkeypatch).output)))
    assert len(rows) == 6 and {r["seeds"] for r in rows} == {"1"}

    train.touch()  # a new mtime, the same bytes: nothing to redo
    assert "0 pretrained, 0 fine-tuned, 6 already" in invoke(args, micro_project, monkeypatch).output


def test_a_changed_corpus_pretrains_again(micro_project, monkeypatch):
    args = ["run", "--quiet", "--seeds", "1", "--models", "bert", "--control", "none"]
    assert "1 pretrained, 1 fine-tuned" in invoke(args, micro_project, monkeypatch).output
    corpus = micro_project / "corpus" / "synthetic" / "part-0.txt"
    text = corpus.read_text()
    middle = len(text) // 2
    corpus.write_text(text[:middle] + text[middle:].replace("alpha", "omega", 1))  # one word, mid-file
    again = invoke(args, micro_project, monkeypatch)
    assert again.exit_code == 0 and "1 pretrained, 1 fine-tuned, 0 already" in again.output, again.output
    assert _done(micro_project) == {"pretrain": 2, "finetune": 2}
