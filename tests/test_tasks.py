"""Task adapters (GLUE readers, bench.toml table tasks) and the metrics, on tiny files."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import datasets
import pytest

from bench import fingerprint
from bench.errors import ConfigError, DataError
from bench.metrics import KNOWN_METRICS, compute_metrics
from bench.metrics import bench_metric
from bench.registry import TASKS
from bench.task import Task, TaskSpec
from tasks.glue import GLUE_TASKS, HUB_ID, available_glue_tasks
from tasks.table import TableTask, table_task_from_config

GLUE_NAMES = ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"]


# ---------------------------------------------------------------- metrics


def test_metric_functions_match_hand_computed_values():
    p, r = [0, 1, 1, 0, 1], [0, 1, 0, 0, 1]
    # TP 2, TN 2, FP 1, FN 0
    assert bench_metric.accuracy(p, r) == pytest.approx(4 / 5)
    assert bench_metric.f1(p, r) == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))  # P 2/3, R 1
    assert bench_metric.matthews_correlation(p, r) == pytest.approx((2 * 2 - 1 * 0) / math.sqrt(3 * 2 * 3 * 2))
    # 3 classes: per-class F1 0.5, 0.8, 2/3
    assert bench_metric.f1_macro([0, 1, 1, 1, 2, 0], [0, 0, 1, 1, 2, 2]) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    # deviations (-1.5, -.5, .5, 1.5) and (-1.5, .5, -.5, 1.5): cov 4, variances 5 -> 0.8
    assert bench_metric.pearson([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert bench_metric.spearmanr([1, 2, 3, 10], [1, 3, 2, 4]) == pytest.approx(0.8)  # same ranks
    # a constant predictor has no correlation: 0, not NaN
    assert bench_metric.pearson([2, 2, 2], [1, 2, 3]) == 0.0
    assert bench_metric.matthews_correlation([1, 1, 1], [0, 1, 1]) == 0.0


def test_compute_metrics_through_the_local_evaluate_module():
    assert tuple(bench_metric.METRICS) == KNOWN_METRICS
    got = compute_metrics(["matthews_correlation", "accuracy", "f1"], [0, 1, 1, 0, 1], [0, 1, 0, 0, 1])
    assert list(got) == ["matthews_correlation", "accuracy", "f1"]  # order kept: headline first
    assert got == pytest.approx({"matthews_correlation": 2 / 3, "accuracy": 0.8, "f1": 0.8})
    got = compute_metrics(["pearson", "spearmanr"], [0.5, 1.0, 2.5, 2.0], [0.0, 1.0, 3.0, 2.5])
    assert got["spearmanr"] == pytest.approx(1.0)
    assert all(isinstance(v, float) for v in got.values())
    with pytest.raises(ValueError, match="known metrics: accuracy"):
        compute_metrics(["acuracy"], [0], [0])


def test_metric_module_config_name():
    assert bench_metric.parse_names("accuracy, f1") == ["accuracy", "f1"]
    assert bench_metric.parse_names(None) == ["accuracy"]


def test_metric_module_has_one_import_per_line():
    # evaluate's dependency scanner misreads `import a, b`.
    for line in Path(bench_metric.__file__).read_text().splitlines():
        if line.startswith("import "):
            assert "," not in line, line


# ---------------------------------------------------------------- GLUE


def write(path: Path, text: str, *, bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


@pytest.fixture()
def glue_dir(tmp_path: Path) -> Path:
    """A GLUE-layout folder with the real files' quirks, a few rows each."""
    g = tmp_path / "glue"
    cola = "gj04\t1\t\tThe sailors rode the breeze clear of the rocks.\ngj04\t0\t*\tThe more does Bill smoke.\n"
    write(g / "CoLA/train.tsv", cola)
    write(g / "CoLA/dev.tsv", cola.rstrip("\n"))  # the real dev.tsv has no final newline
    sst = 'sentence\tlabel\n" the movie \'s charm \t1\nunflinchingly bleak and "desperate \t0\n'
    write(g / "SST-2/train.tsv", sst)
    write(g / "SST-2/dev.tsv", sst)
    mrpc = (
        "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
        '1\t1355540\t1355592\tHe said the pie business doesn\'t fit.\t"The pie business does not fit.\n'
        "0\t2029631\t2029565\tMagnarelli said Racicot hated the regime.\tHis wife said he was behind Bush.\n"
    )
    write(g / "MRPC/train.tsv", mrpc, bom=True)
    write(g / "MRPC/dev.tsv", mrpc, bom=True)
    sts = (
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
        "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane is taking off.\tAn air plane is taking off.\t5.000\n"
        "1\tmain-captions\tMSRvid\t2012test\t0004\tnone\tnone\tA man is playing a flute.\tA man plays a guitar.\t1.750\n"
    )
    write(g / "STS-B/train.tsv", sts)
    write(g / "STS-B/dev.tsv", sts)
    head = "index\tpromptID\tpairID\tgenre\ts1b\ts2b\ts1p\ts2p\tsentence1\tsentence2\tlabel1\tgold_label\n"
    mnli = head + "0\t1\t1e\tgov\t(\t(\t(\t(\tA man eats.\tSomeone eats.\tentailment\tentailment\n"
    mnli += "1\t2\t2c\tgov\t(\t(\t(\t(\tA man eats.\tNobody eats.\tcontradiction\tcontradiction\n"
    mnli += "2\t3\t3n\tgov\t(\t(\t(\t(\tA man eats.\tHe is hungry.\tneutral\tneutral\n"
    write(g / "MNLI/train.tsv", mnli)
    write(g / "MNLI/dev_matched.tsv", mnli)
    write(g / "MNLI/dev_mismatched.tsv", mnli.replace("A man eats.", "A woman reads."))
    qnli = "index\tquestion\tsentence\tlabel\n0\tWho?\tHe did.\tentailment\n1\tWhen?\tBlue.\tnot_entailment\n"
    write(g / "QNLI/train.tsv", qnli)
    write(g / "QNLI/dev.tsv", qnli)
    return tmp_path


def test_all_nine_glue_tasks_are_registered():
    for name in GLUE_NAMES:
        task = TASKS.get(name)
        assert task.spec.name == name
        assert task.spec.metrics[0] == task.spec.headline
    assert TASKS.get("cola").spec.metrics == ("matthews_correlation",)
    assert TASKS.get("mrpc").spec.metrics == ("f1", "accuracy")
    assert TASKS.get("qqp").spec.metrics == ("accuracy", "f1")
    assert TASKS.get("stsb").spec.num_labels == 1 and TASKS.get("stsb").spec.is_regression
    assert TASKS.get("stsb").spec.metrics == ("pearson", "spearmanr")
    assert TASKS.get("rte").spec.finetune_overrides == {"epochs": 10}
    assert TASKS.get("stsb").spec.finetune_overrides == {"epochs": 10}
    assert TASKS.get("mnli").spec.num_labels == 3
    assert TASKS.get("mnli").spec.reported_metrics == ("accuracy", "accuracy_mismatched")
    assert TASKS.get("sst2").spec.reported_metrics == ("accuracy",)


def test_cola_without_header(glue_dir: Path):
    ds = GLUE_TASKS["cola"].load("dev", glue_dir)
    assert ds.column_names == ["sentence", "label"]
    assert ds["sentence"] == ["The sailors rode the breeze clear of the rocks.", "The more does Bill smoke."]
    assert ds["label"] == [1, 0]


def test_sst2_quotes_are_text(glue_dir: Path):
    ds = GLUE_TASKS["sst2"].load("train", glue_dir)
    assert ds["sentence"] == ["\" the movie 's charm ", 'unflinchingly bleak and "desperate ']
    assert ds["label"] == [1, 0]


def test_mrpc_with_bom(glue_dir: Path):
    ds = GLUE_TASKS["mrpc"].load("train", glue_dir)
    assert ds.column_names == ["sentence1", "sentence2", "label"]
    assert ds["label"] == [1, 0]
    assert ds[0]["sentence2"] == '"The pie business does not fit.'


def test_stsb_scores_are_floats(glue_dir: Path):
    ds = GLUE_TASKS["stsb"].load("dev", glue_dir)
    assert ds["label"] == pytest.approx([5.0, 1.75])
    assert ds.features["label"].dtype == "float32"


def test_mnli_matched_and_mismatched(glue_dir: Path):
    task = GLUE_TASKS["mnli"]
    dev = task.load("dev", glue_dir)
    assert dev.column_names == ["premise", "hypothesis", "label"]
    assert dev["label"] == [0, 2, 1]  # the hub's order: entailment, neutral, contradiction
    assert task.load("dev_mismatched", glue_dir)["premise"][0] == "A woman reads."
    with pytest.raises(DataError, match="splits: train, dev, dev_mismatched"):
        task.load("test", glue_dir)


def test_qnli_string_labels(glue_dir: Path):
    ds = GLUE_TASKS["qnli"].load("train", glue_dir)
    assert ds.column_names == ["question", "sentence", "label"]
    assert ds["label"] == [0, 1]


def test_malformed_rows(tmp_path: Path):
    good = "".join(f"{i}\tq{i}\ta{i}\t{i % 2}\n" for i in range(1, 300))
    head = "id\tquestion1\tquestion2\tis_duplicate\n"
    write(tmp_path / "glue/QQP/train.tsv", head + "0\tbroken row\n" + good)
    ds = GLUE_TASKS["qqp"].load("train", tmp_path)  # one bad row in 300 is skipped, as the hub does
    assert len(ds) == 299
    write(tmp_path / "glue/QQP/dev.tsv", head + "0\tbroken\n1\tbroken\n2\tq\ta\t1\n")
    with pytest.raises(DataError, match=r"2 of 3 rows are malformed \(first at line 2\)"):
        GLUE_TASKS["qqp"].load("dev", tmp_path)
    write(tmp_path / "glue/RTE/train.tsv", "index\ts1\ts2\tlabel\n0\ta\tb\tentailment\n")
    with pytest.raises(DataError, match="columns sentence1, sentence2 in the header; found: index, s1, s2, label"):
        GLUE_TASKS["rte"].load("train", tmp_path)


def test_missing_glue_data_names_local_path_and_hub(tmp_path: Path, monkeypatch):
    import tasks.glue

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the hub (offline)")

    monkeypatch.setattr(tasks.glue.datasets, "load_dataset", offline)
    with pytest.raises(DataError) as e:
        GLUE_TASKS["rte"].load("train", tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "glue" / "RTE" / "train.tsv") in msg
    assert HUB_ID in msg and "'rte'" in msg
    assert "BENCH_DATA_DIR" in msg and "glue/RTE/train.tsv" in msg


def test_available_glue_tasks(glue_dir: Path, tmp_path: Path):
    assert available_glue_tasks(glue_dir) == ["cola", "sst2", "mrpc", "stsb", "mnli", "qnli"]
    assert available_glue_tasks(tmp_path / "nothing") == []


REAL = Path(os.environ.get("BENCH_DATA_DIR", "/nonexistent"))


@pytest.mark.skipif(not (REAL / "glue/SST-2/train.tsv").is_file(), reason="BENCH_DATA_DIR has no GLUE data")
@pytest.mark.parametrize(
    "name, n_train, n_dev, positives",
    [("sst2", 67349, 872, 444), ("cola", 8551, 1043, 721), ("mrpc", 3668, 408, 279)],
)
def test_real_glue_files(name, n_train, n_dev, positives):
    task = GLUE_TASKS[name]
    train, dev = task.load("train", REAL), task.load("dev", REAL)
    assert (len(train), len(dev)) == (n_train, n_dev)
    assert sum(dev["label"]) == positives
    assert dev.column_names == [*task.spec.text_fields, "label"]
    assert all(isinstance(s, str) and s.strip() for f in task.spec.text_fields for s in train[f])
    assert set(available_glue_tasks(REAL)) >= {"sst2", "cola", "mrpc"}


# ---------------------------------------------------------------- bench.toml table tasks


def table(tmp_path: Path, train_text: str, dev_text: str, ext: str = "csv", **cfg):
    (tmp_path / f"train.{ext}").write_text(train_text)
    (tmp_path / f"dev.{ext}").write_text(dev_text)
    base = {"adapter": ext, "train": f"train.{ext}", "dev": f"dev.{ext}", "text": "query", "label": "urgency"}
    return table_task_from_config("urgency", {**base, **cfg}, tmp_path / "bench.toml")


CSV = "query,urgency\nserver down,high\n\"hello, there\",low\nplease call,medium\n"


def test_csv_string_labels_sorted(tmp_path: Path):
    task = table(tmp_path, CSV, "query,urgency\nall good,low\n")
    assert task.label_names == ["high", "low", "medium"]
    assert task.spec.num_labels == 3 and task.spec.metrics == ("accuracy", "f1_macro")
    train = task.load("train")
    assert train["query"] == ["server down", "hello, there", "please call"]
    assert train["label"] == [0, 1, 2]
    assert task.load("dev")["label"] == [1]


def test_int_labels_sort_numerically(tmp_path: Path):
    task = table(tmp_path, "query,urgency\na,10\nb,9\nc,10\n", "query,urgency\nd,9\n")
    assert task.label_names == ["9", "10"]
    assert task.load("train")["label"] == [1, 0, 1]
    assert task.spec.metrics == ("accuracy", "f1")


def test_float_labels_make_regression(tmp_path: Path):
    task = table(tmp_path, "query,urgency\na,0.5\nb,2\n", "query,urgency\nc,1.25\n")
    assert task.spec.num_labels == 1 and task.spec.metrics == ("pearson", "spearmanr")
    assert task.load("dev")["label"] == [1.25]


def test_pair_task_tsv(tmp_path: Path):
    train = "a\tb\turgency\tother\nx\ty\t1\tz\nx\tw\t0\tz\n"
    task = table(tmp_path, train, train, "tsv", text=["a", "b"], metrics=["accuracy"])
    assert task.spec.text_fields == ("a", "b")
    assert task.load("train").column_names == ["a", "b", "label"]


def test_jsonl(tmp_path: Path):
    rows = [{"query": "x", "urgency": "hi"}, {"query": "y", "urgency": "lo"}]
    text = "\n".join(json.dumps(r) for r in rows) + "\n\n"
    task = table(tmp_path, text, text, "jsonl")
    assert task.load("train")["label"] == [0, 1]


def test_table_task_is_not_registered_at_import(tmp_path: Path):
    table(tmp_path, CSV, CSV)
    assert "urgency" not in TASKS.names()


@pytest.mark.parametrize(
    "cfg, error, pattern",
    [
        ({"labels": "x"}, ConfigError, r"unknown key\(s\) labels in \[tasks.urgency\] in .*bench.toml; valid keys: adapter"),
        ({"adapter": "xlsx"}, ConfigError, r"adapter = 'xlsx' .*bench.toml is not known; use one of: csv, tsv, jsonl"),
        ({"train": "nope.csv"}, DataError, r"train file .*nope.csv \(key 'train' of \[tasks.urgency\]"),
        ({"metrics": ["accuracy", "bleu"]}, ConfigError, r"unknown metric\(s\) bleu .*known metrics: accuracy, f1,"),
        ({"metrics": ["pearson"]}, ConfigError, r"metrics pearson .* are for regression"),
        ({"text": "question"}, DataError, r"train.csv: no column 'question'; the csv header has columns: query, urgency"),
        ({"label": "priority"}, DataError, r"no column 'priority'; the csv header has columns: query, urgency"),
        ({"text": ["a", "b", "c"]}, ConfigError, r"text = \['a', 'b', 'c'\] .*one column name or a list of two"),
    ],
)
def test_config_errors(tmp_path: Path, cfg, error, pattern):
    with pytest.raises(error, match=pattern):
        table(tmp_path, CSV, CSV, **cfg)


def test_missing_key(tmp_path: Path):
    (tmp_path / "train.csv").write_text(CSV)
    with pytest.raises(ConfigError, match=r"missing key\(s\) dev, label"):
        table_task_from_config("t", {"adapter": "csv", "train": "train.csv", "text": "query"}, tmp_path / "b.toml")


def test_empty_split(tmp_path: Path):
    with pytest.raises(DataError, match=r"dev.csv \(from \[tasks.urgency\] .*\) has no data rows"):
        table(tmp_path, CSV, "query,urgency\n")


def test_unseen_dev_label(tmp_path: Path):
    with pytest.raises(DataError, match=r"dev.csv, line 3: label 'urgent' does not occur in the train file .*train.csv"):
        table(tmp_path, CSV, "query,urgency\nfine,low\nhelp,urgent\n")


def test_unparseable_rows(tmp_path: Path):
    with pytest.raises(DataError, match=r"train.csv, line 3: unparseable row: 3 fields where the header has 2"):
        table(tmp_path, "query,urgency\nok,high\nhello, there,low\n", CSV)
    with pytest.raises(DataError, match=r"dev.jsonl, line 2: unparseable row \(invalid JSON"):
        good = '{"query": "x", "urgency": 1}\n{"query": "y", "urgency": 0}\n'
        table(tmp_path, good, '{"query": "x", "urgency": 1}\n{"query": \n', "jsonl")
    with pytest.raises(DataError, match=r"train.jsonl, line 2: no column 'urgency'; this row has columns: query"):
        table(tmp_path, '{"query": "x", "urgency": 1}\n{"query": "y"}\n', good, "jsonl")
    with pytest.raises(DataError, match=r"train.csv, line 3: unparseable row \(label 'n/a' in a column of numbers"):
        table(tmp_path, "query,urgency\na,0.5\nb,n/a\n", CSV)
    with pytest.raises(DataError, match=r"dev.csv, line 2: unparseable row \(label 'high' is not a number\)"):
        table(tmp_path, "query,urgency\na,0.5\nb,1.5\n", CSV)
    with pytest.raises(DataError, match=r"single value"):
        table(tmp_path, "query,urgency\na,x\nb,x\n", CSV)


# ---------------------------------------------------------------- data identity (fingerprints)


def settle(*paths: Path, seconds_ago: float = 60.0) -> None:
    """Give files an mtime in the past: files changed within RACY_SECONDS are never cached."""
    stamp = time.time_ns() - int(seconds_ago * 1e9)
    for path in paths:
        os.utime(path, ns=(stamp, stamp))


@pytest.fixture
def hashed(monkeypatch) -> list[str]:
    """Names of the files whose bytes were actually read to hash them."""
    calls: list[str] = []
    real = fingerprint._hash_file

    def counting(path: Path) -> str:
        calls.append(path.name)
        return real(path)

    monkeypatch.setattr(fingerprint, "_hash_file", counting)
    return calls


def test_glue_fingerprint_follows_the_tsv_bytes_not_their_mtime(glue_dir: Path, tmp_path: Path, hashed: list[str]):
    task, cache = GLUE_TASKS["sst2"], tmp_path / "hash-cache"
    train, dev = glue_dir / "glue/SST-2/train.tsv", glue_dir / "glue/SST-2/dev.tsv"
    settle(train, dev)
    first = task.fingerprint(glue_dir, cache)
    assert sorted(hashed) == ["dev.tsv", "train.tsv"]
    assert task.fingerprint(glue_dir, cache) == first and len(hashed) == 2  # served from the cache
    settle(train, seconds_ago=30)  # touched: a new mtime, the same bytes
    assert task.fingerprint(glue_dir, cache) == first and hashed[2:] == ["train.tsv"]
    write(train, train.read_text(encoding="utf-8").replace("bleak", "bleaK"))  # one row changed
    assert task.fingerprint(glue_dir, cache) != first
    write(train, train.read_text(encoding="utf-8").replace("bleaK", "bleak"))
    assert task.fingerprint(glue_dir, cache) == first
    write(dev, dev.read_text(encoding="utf-8").replace("\t1\n", "\t0\n", 1))  # one dev label changed
    assert task.fingerprint(glue_dir, cache) != first


def test_glue_fingerprint_covers_every_eval_split(glue_dir: Path):
    task = GLUE_TASKS["mnli"]
    first = task.fingerprint(glue_dir)
    mismatched = glue_dir / "glue/MNLI/dev_mismatched.tsv"
    write(mismatched, mismatched.read_text(encoding="utf-8").replace("A woman reads.", "A woman writes."))
    assert task.fingerprint(glue_dir) != first


def test_glue_fingerprint_of_the_hub_fallback_names_it_offline(tmp_path: Path, glue_dir: Path, monkeypatch):
    import tasks.glue

    def no_hub(*args, **kwargs):
        raise AssertionError("a fingerprint must not load the hub")

    monkeypatch.setattr(tasks.glue.datasets, "load_dataset", no_hub)
    monkeypatch.delenv("BENCH_DATA_DIR", raising=False)
    hub = GLUE_TASKS["rte"].fingerprint(None)
    assert hub == GLUE_TASKS["rte"].fingerprint(tmp_path / "empty") != GLUE_TASKS["wnli"].fingerprint(None)
    assert GLUE_TASKS["sst2"].fingerprint(None) != GLUE_TASKS["sst2"].fingerprint(glue_dir)
    monkeypatch.setenv("BENCH_DATA_DIR", str(glue_dir))  # load's own default data folder
    assert GLUE_TASKS["sst2"].fingerprint(None) == GLUE_TASKS["sst2"].fingerprint(glue_dir)


def test_table_task_fingerprint_follows_files_and_how_they_are_read(tmp_path: Path, hashed: list[str]):
    cache = tmp_path / "hash-cache"
    task = table(tmp_path, CSV, "query,urgency\nall good,low\n")
    settle(tmp_path / "train.csv", tmp_path / "dev.csv")
    first = task.fingerprint(None, cache)
    assert sorted(hashed) == ["dev.csv", "train.csv"]
    assert task.fingerprint(None, cache) == first and len(hashed) == 2  # served from the cache
    settle(tmp_path / "dev.csv", seconds_ago=30)  # touched: same bytes
    assert task.fingerprint(None, cache) == first
    changed = table(tmp_path, CSV.replace("please call", "please text"), "query,urgency\nall good,low\n")
    assert changed.fingerprint(None, cache) != first
    same = table(tmp_path, CSV, "query,urgency\nall good,low\n")
    assert same.fingerprint(None, cache) == first
    pair = "query,other,urgency\na,b,high\nc,d,low\n"
    by_query, by_other = (table(tmp_path, pair, pair, text=column) for column in ("query", "other"))
    assert by_query.fingerprint(None) != by_other.fingerprint(None)  # same files, other rows


class InMemoryTask(Task):
    """A plug-in task with no files: the default fingerprint hashes what `load` returns."""

    spec = TaskSpec("plug", ("text",), 2, ("accuracy",), eval_splits={"dev": "", "test": "_test"})

    def __init__(self, rows: dict[str, list], names: tuple[str, str] = ("neg", "pos")) -> None:
        self.rows, self.names = rows, names

    def load(self, split: str, data_dir: Path | None) -> datasets.Dataset:
        features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=self.names)})
        texts, labels = self.rows[split]
        return datasets.Dataset.from_dict({"text": texts, "label": labels}, features=features)


def test_default_fingerprint_hashes_every_loaded_split():
    rows = {"train": (["good", "bad"], [1, 0]), "dev": (["fine"], [1]), "test": (["meh"], [0])}
    first = InMemoryTask(rows).fingerprint(None)
    assert InMemoryTask({k: (list(t), list(y)) for k, (t, y) in rows.items()}).fingerprint(None) == first
    assert InMemoryTask({**rows, "train": (["good", "bad"], [1, 1])}).fingerprint(None) != first  # one label
    assert InMemoryTask({**rows, "test": (["meh!"], [0])}).fingerprint(None) != first  # an eval split's text
    assert InMemoryTask({**rows, "train": (["bad", "good"], [0, 1])}).fingerprint(None) != first  # row order
    assert InMemoryTask(rows, names=("pos", "neg")).fingerprint(None) != first  # what the label ids mean
    table_task = TableTask(TaskSpec("t", ("text",), 2, ("accuracy",)), ["neg", "pos"],
                           {split: InMemoryTask(rows).load(split, None) for split in ("train", "dev")})
    assert len(table_task.fingerprint(None)) == 16  # built without files: the default applies
