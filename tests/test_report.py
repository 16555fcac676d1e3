"""Reports from a synthetic store: tables, leaderboard, claims, csv/json round trips, plots, the HTML file."""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import re
import shutil
import sqlite3
import statistics
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import main
from bench.results.claims import pair_claims, verdict_lines
from bench.results.report import build_report
from bench.results.store import Metric, Store
from bench.results.tables import COLUMNS, comparison_table, leaderboard

# --- a synthetic store: runs written straight into a Store, no training ------------------------------

FRACTIONS = (0.0625, 0.125, 0.25, 0.5, 1.0)
BUDGET = 1.6e13
ENV = {"device": "cpu", "python": "3.11", "packages": {"torch": "2.13.0", "pandas": "3.0"},
       "code_version": "src-test", "git_sha": "abc123"}
# median score per curve point (1/16 ... 1 of the budget): electra reaches bert's best (0.80) at 1/4
CURVES = {"electra": [0.70, 0.76, 0.80, 0.83, 0.85], "bert": [0.66, 0.70, 0.74, 0.78, 0.80]}
SPREAD = (-0.01, 0.0, 0.01)  # three seeds around each median


def add_pretrain(store: Store, model: str, *, size: str = "tiny", budget: float = BUDGET, pretrains: bool = True,
                 flops_per_step: float = 1e11) -> str:
    run_id = f"pt-{model}-{size}-{budget:g}"
    spec = {"model": model, "size": size, "convention": "paper", "pretrains": pretrains, "external": None,
            "budget": {"kind": "flops", "value": budget if pretrains else 0.0, "text": f"{budget:g}"}, "lr": 5e-4}
    store.claim(run_id, kind="pretrain", model=model, spec=spec, code_version="src-test", size=size,
                budget=budget if pretrains else 0.0, git_sha="abc123", environment=ENV)
    if not pretrains:
        store.finish(run_id, [Metric("steps", 0), Metric("wall_s", 0.0), Metric("flops_paper", 0.0),
                              Metric("flops_executed", 0.0)])
        return run_id
    steps = int(budget / flops_per_step)
    metrics = [Metric("steps", steps), Metric("wall_s", 120.0), Metric("tokens_per_s", 5000.0),
               Metric("flops_paper", steps * flops_per_step), Metric("flops_executed", steps * flops_per_step * 0.8),
               Metric("params", 5.0e6), Metric("encoder_params", 4.0e6), Metric("budget_flops", budget)]
    for f in FRACTIONS:
        s = max(1, round(steps * f))
        metrics.append(Metric("checkpoint", f, step=s, flops=s * flops_per_step))
    names = ("loss", "gen_loss", "disc_loss", "disc_base_entropy") if model == "electra" else ("loss", "mlm_loss")
    for step in range(10, steps + 1, 10):
        for name in names:
            value = {"gen_loss": 7.0 - step / steps, "disc_loss": 0.45 - 0.1 * step / steps, "loss": 20.0,
                     "disc_base_entropy": 0.41, "mlm_loss": 7.2 - step / steps}[name]
            metrics.append(Metric(name, value, step=step, flops=step * flops_per_step, wall_s=step * 0.75))
    store.finish(run_id, metrics)
    return run_id


def add_finetune(store: Store, parent: str, model: str, task: str, scores: list[float], *, size: str = "tiny",
                 fraction: float = 1.0, budget: float = BUDGET) -> None:
    for seed, score in enumerate(scores):
        run_id = f"ft-{model}-{size}-{task}-{fraction:g}-{seed}-{budget:g}"
        spec = {"model": model, "task": task, "seed": seed, "fraction": fraction, "pretrain_id": parent,
                "size": size, "settings": {"lr": 3e-4, "epochs": 3}}
        store.claim(run_id, kind="finetune", model=model, spec=spec, code_version="src-test", task=task, size=size,
                    budget=budget * fraction, seed=seed, parent_id=parent, git_sha="abc123", environment=ENV)
        store.finish(run_id, [Metric("score", score), Metric("metric_accuracy", score),
                              Metric("metric_f1", score - 0.01), Metric("train_wall_s", 10.0),
                              Metric("eval_wall_s", 1.0), Metric("fraction", fraction), Metric("cls_cosine", 0.5)])


def synthetic_store(path: Path, *, tasks: tuple[str, ...] = ("sst2",), curves: dict | None = None,
                    control_score: float | None = 0.60) -> Store:
    """electra and bert at one budget with compute curves, plus the scratch control; 3 seeds each."""
    store = _fast(Store(path))
    for model, curve in (curves or CURVES).items():
        pt = add_pretrain(store, model)
        for task in tasks:
            shift = 0.0 if task == "sst2" else -0.1
            for fraction, median in zip(FRACTIONS, curve):
                add_finetune(store, pt, model, task, [round(median + shift + d, 6) for d in SPREAD],
                             fraction=fraction)
    if control_score is not None:
        pt = add_pretrain(store, "scratch", pretrains=False)
        for task in tasks:
            shift = 0.0 if task == "sst2" else -0.1
            add_finetune(store, pt, "scratch", task, [round(control_score + shift + d, 6) for d in SPREAD], budget=0.0)
    return store


def _fast(store: Store) -> Store:
    # test-only: skip fsync on each of the store's hundreds of small commits
    store._conn.execute("PRAGMA synchronous = OFF")
    return store


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """Each synthetic store built once per module; tests get their own copies."""
    root = tmp_path_factory.mktemp("stores")
    out = {}
    for name, tasks in (("one", ("sst2",)), ("two", ("sst2", "mrpc"))):
        path = root / name / "bench.db"
        path.parent.mkdir()
        synthetic_store(path, tasks=tasks).close()
        out[name] = path
    return out


def _copy(src: Path, dst_dir: Path) -> Path:
    dst_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst_dir / "bench.db")
    return dst_dir


@pytest.fixture
def store(built, tmp_path):
    s = Store(_copy(built["one"], tmp_path / "results") / "bench.db")
    yield s
    s.close()


@pytest.fixture
def results(built, tmp_path):
    """A results folder whose store holds two GLUE tasks."""
    return _copy(built["two"], tmp_path / "results")


def cli(*args: str) -> str:
    r = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.stdout


# --- tables --------------------------------------------------------------------------------------


def test_comparison_table_rows_and_seed_scores(store):
    df = comparison_table(store)
    assert list(df.columns) == [*COLUMNS, "settings"]  # settings: in the frame, not the printed table
    assert len(df) == 11  # 2 models x 5 curve points + the control
    row = df[(df["model"] == "electra") & (df["pretrain_flops"] == BUDGET)].iloc[0]
    assert (row["score_median"], row["score_min"], row["score_max"], row["seeds"]) == (0.85, 0.84, 0.86, 3)
    assert row["pretrain_steps"] == 160 and row["budget_flops"] == BUDGET
    settings = '{"epochs":3,"lr":0.0003}'  # the key carries the fine-tuning settings: another regime is another row
    assert df.attrs["seed_scores"][("electra", "tiny", "sst2", BUDGET, BUDGET, settings)] == [0.84, 0.85, 0.86]


def _store_truth(db: Path) -> dict[tuple[str, str, float], list[float]]:
    """Per model, task and checkpoint fraction, the seed scores exactly as SQLite holds them."""
    con = sqlite3.connect(db)
    rows = con.execute(
        "SELECT r.model, r.task, json_extract(r.spec, '$.fraction'), m.value FROM runs r"
        " JOIN metrics m ON m.run_id = r.id WHERE r.kind = 'finetune' AND m.name = 'score' AND m.step IS NULL"
    ).fetchall()
    con.close()
    out: dict[tuple[str, str, float], list[float]] = {}
    for model, task, frac, value in rows:
        out.setdefault((model, task, frac), []).append(value)
    return out


def test_csv_and_json_round_trip_to_the_store(results):
    truth = _store_truth(results / "bench.db")
    text_csv = cli("report", "--results", str(results), "--format", "csv", "--task", "sst2")
    text_json = cli("report", "--results", str(results), "--format", "json", "--task", "sst2")
    rows_csv = list(csv.DictReader(io.StringIO(text_csv)))
    rows_json = json.loads(text_json)
    assert list(rows_csv[0]) == COLUMNS and list(rows_json[0]) == COLUMNS
    assert len(rows_csv) == len(rows_json) == 11
    points = {"electra": 5, "bert": 5, "scratch": 1}
    assert {m: sum(r["model"] == m for r in rows_json) for m in points} == points
    for c, j in zip(rows_csv, rows_json):
        for col in COLUMNS:
            if isinstance(j[col], str):
                assert c[col] == j[col]
            else:
                assert float(c[col]) == j[col]  # exact: no rounding on the way out
        frac = 1.0 if j["model"] == "scratch" else j["pretrain_flops"] / j["budget_flops"]
        scores = truth[(j["model"], "sst2", frac)]
        assert j["score_median"] == statistics.median(scores)
        assert (j["score_min"], j["score_max"], j["seeds"]) == (min(scores), max(scores), len(scores))
        assert j["task"] == "sst2" and j["size"] == "tiny"


def test_leaderboard_ranks_by_glue_average(results):
    with Store(results / "bench.db") as s:
        rep = build_report(s)
    board = rep.leaderboard
    assert list(board["model"]) == ["electra", "bert", "scratch"] and list(board["rank"]) == [1, 2, 3]
    top = board.iloc[0]
    assert top["glue_avg"] == pytest.approx((0.85 + 0.75) / 2)
    assert (top["sst2"], top["mrpc"]) == (pytest.approx(0.85), pytest.approx(0.75))
    assert top["params"] == 4.0e6 and top["pretrain_flops"] == BUDGET and top["tokens_per_s"] == 5000.0
    assert top["pretrain_wall_s"] == 120.0 and top["seeds"] == 3
    assert math.isnan(board.iloc[2]["params"])  # the control records no parameter count


def test_single_task_leaderboard_has_score_column(store):
    board = leaderboard(comparison_table(store))
    assert "score" in board.columns and "sst2" not in board.columns
    assert list(board["score"]) == [0.85, 0.80, 0.60]


# --- claims --------------------------------------------------------------------------------------


def test_pair_claims_interval_and_speedup(store):
    claims = pair_claims(comparison_table(store), "scratch")
    main_claim = claims[0]
    assert (main_claim.a, main_claim.b, main_claim.vs_control) == ("electra", "bert", False)
    # one pretraining run a side: two checkpoints compared over 3 vs 3 seeds {0.84, 0.85, 0.86} vs {0.79, 0.80, 0.81}
    # by Welch's t: sd 0.01 each, se = sqrt(2 * 0.01**2 / 3), df 4, t(0.975, 4) = 2.7764
    half = 2.776445105 * math.sqrt(2 * 0.01 ** 2 / 3)
    assert main_claim.about == "checkpoints" and main_claim.ci.gap == pytest.approx(0.05)
    assert (main_claim.ci.low, main_claim.ci.high) == (pytest.approx(0.05 - half), pytest.approx(0.05 + half))
    assert main_claim.ci.family == 3  # electra vs bert, and each against the control: one family
    # electra's curve hits bert's best (0.80) exactly at 1/4 of the budget: 4x less compute, but one run per curve
    assert main_claim.a_to_b.point.a_flops == pytest.approx(BUDGET / 4) and main_claim.a_to_b.ratio == pytest.approx(4.0)
    assert main_claim.b_to_a.point.a_flops is None and main_claim.b_to_a.ratio == 0.0
    assert "compares two checkpoints, not two objectives" in main_claim.sentence
    assert "the claim that this electra checkpoint fine-tunes better than this bert checkpoint holds" in main_claim.sentence
    assert "no compute speed-up is claimed: the curves rest on 1 vs 1 pretraining run(s)" in main_claim.sentence
    assert "Holm-adjusted over the report's 3 comparisons" in main_claim.sentence
    assert [(c.a, c.b) for c in claims[1:]] == [("electra", "scratch"), ("bert", "scratch")]
    assert all(c.verdict == "better" for c in claims)


def test_verdict_lines_no_benefit_says_budget_too_small(tmp_path):
    flat = {"electra": [0.60, 0.60, 0.61, 0.60, 0.605], "bert": [0.60, 0.59, 0.60, 0.61, 0.60]}
    with synthetic_store(tmp_path / "bench.db", curves=flat, control_score=0.60) as s:
        lines = verdict_lines(comparison_table(s), "scratch")
    assert len(lines) == 4  # electra vs bert, two vs control, the warning
    assert "no measurable difference at this scale" in lines[0] and "3 vs 3 fine-tuning seeds" in lines[0]
    assert ("no model beats the no-pretraining control" in lines[-1] and "too small for pretraining to matter"
            in lines[-1] and "no evidence" in lines[-1])


def test_verdict_lines_without_per_run_scores_cannot_judge(store):
    df = comparison_table(store)
    df.attrs.clear()  # a frame that lost its per-seed scores, e.g. read back from CSV: one median a side
    lines = verdict_lines(df, "scratch")
    assert "cannot judge" in lines[0] and "fewer than 2" in lines[0]
    assert not any("too small" in line for line in lines)


def test_budget_filter_keeps_the_control(store, tmp_path):
    other = add_pretrain(store, "electra", budget=3.2e13)
    add_finetune(store, other, "electra", "sst2", [0.9, 0.91, 0.92], budget=3.2e13)
    assert 3.2e13 in set(build_report(store).comparison["budget_flops"])  # unfiltered, the other budget shows
    rep = build_report(store, budgets=[BUDGET])
    assert set(rep.comparison["model"]) == {"electra", "bert", "scratch"}
    assert set(rep.comparison["budget_flops"]) == {BUDGET, 0.0}  # the other budget is gone, the control stays
    assert rep.comparison["score_max"].max() < 0.9


# --- md, latex, plots, html ----------------------------------------------------------------------


def test_md_report_table_then_leaderboard_then_claims(results):
    out = cli("report", "--results", str(results))
    lines = out.splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")] == COLUMNS
    assert out.index("## Leaderboard") < out.index("## Claims at matched compute")
    assert "| rank" in out and "glue_avg" in out
    claims = [line for line in lines if line.startswith("- ")]
    assert len(claims) == 6 and "electra vs bert at matched FLOPs" in claims[0]


def test_latex_report(results):
    out = cli("report", "--results", str(results), "--format", "latex", "--task", "sst2")
    assert out.count("\\begin{tabular}") == 2 and "\\begin{itemize}" in out and "budget\\_flops" in out


def _image_kind(data: bytes) -> str:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    root = ET.fromstring(data)
    assert root.tag.endswith("svg")
    return "svg"


def test_plots_written_as_png_and_svg(results, tmp_path):
    cli("report", "--results", str(results), "--plots", str(tmp_path / "plots"))
    files = sorted(p.name for p in (tmp_path / "plots").iterdir())
    stems = ("final_scores", "pretrain_loss", "score_vs_flops")
    assert files == sorted(f"{s}.{e}" for s in stems for e in ("png", "svg"))
    for p in (tmp_path / "plots").iterdir():
        assert _image_kind(p.read_bytes()) == p.suffix[1:]
    svg = (tmp_path / "plots" / "score_vs_flops.svg").read_text()
    assert "pretraining FLOPs" in svg or "<path" in svg  # labels are drawn (as text or glyph paths)


class _Html(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        d = dict(attrs)
        self.tags.append((tag, d))
        if "id" in d:
            self.ids.add(d["id"])


def test_empty_store_reports_cleanly(tmp_path):
    Store(tmp_path / "results" / "bench.db").close()
    md = cli("report", "--results", str(tmp_path / "results"))
    assert md.splitlines()[0].startswith("| model") and "No finished fine-tuning runs match" in md
    assert json.loads(cli("report", "--results", str(tmp_path / "results"), "--format", "json")) == []
    html_text = cli("report", "--results", str(tmp_path / "results"), "--format", "html")
    assert "<section id='plots'>" in html_text and "<img" not in html_text


def test_report_after_a_real_curve_run(micro_project, monkeypatch):
    """The acceptance path end to end: `bench run --curve`, then the HTML and JSON reports of that store."""
    monkeypatch.chdir(micro_project)
    r = CliRunner().invoke(main, ["run", "--quiet", "--curve", "--seeds", "1", "--epochs", "1"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    truth = _store_truth(micro_project / "results" / "bench.db")  # (model, task, fraction) -> seed scores
    rows = json.loads(cli("report", "--format", "json"))
    assert sorted((x["model"], x["score_median"], x["seeds"]) for x in rows) == sorted(
        (m, statistics.median(v), len(v)) for (m, _, _), v in truth.items())
    assert [x["model"] for x in rows].count("electra") == 5  # the whole curve: 1/16 ... 1 of the budget
    cli("report", "--format", "html", "--out", "report.html")
    text = (micro_project / "report.html").read_text(encoding="utf-8")
    assert text.count("<img src='data:image/png;base64,") == 3
    # one seed a side cannot be judged; a micro model stuck on one class is no evidence at all: either way, no verdict
    assert "electra vs bert at matched FLOPs" in text and ("cannot judge" in text or "no verdict, since" in text)


def test_glue_average_uses_the_papers_metric_per_task_and_leaves_out_wnli():
    import pandas as pd

    from bench.results.tables import COLUMNS, GLUE_PAPER, _key, leaderboard

    rows = []
    for task, headline in (("cola", 0.30), ("mrpc", 0.80), ("wnli", 0.10)):
        rows.append(dict(zip(COLUMNS, ["electra", "tiny", task, "", 1e13, 10, 1e13, 1e13, 0.8e13, 5.0, 100.0, 2.0,
                                       headline, headline, headline, 1, "0", 3, "", ""])))
    df = pd.DataFrame(rows, columns=COLUMNS)
    # MRPC's headline is F1 (0.80) but the paper's GLUE score counts its accuracy (0.70)
    df.attrs[GLUE_PAPER] = {_key(rows[0]): 0.30, _key(rows[1]): 0.70, _key(rows[2]): 0.10}
    board = leaderboard(df)
    assert board.loc[0, "glue_avg"] == pytest.approx((0.30 + 0.70) / 2)
    assert board.loc[0, "mrpc"] == pytest.approx(0.80)  # per-task columns keep the headline


# --- tidy frames and Parquet ------------------------------------------------------------------------


def _add_failed(store: Store) -> str:
    run_id = "ft-bert-tiny-sst2-failed"
    store.claim(run_id, kind="finetune", model="bert", spec={"model": "bert", "task": "sst2", "seed": 9},
                code_version="src-test", task="sst2", size="tiny", seed=9, parent_id="pt-bert-tiny-1.6e+13",
                environment=ENV)
    store.fail(run_id, "RuntimeError: out of memory")
    return run_id


def test_runs_frame_has_one_row_per_run_with_spec_and_environment_columns(store):
    from bench.results.tidy import RUN_COLUMNS, runs_frame

    failed = _add_failed(store)
    frame = runs_frame(store)
    assert len(frame) == len(store.runs(status=None)) == 37  # 3 pretraining + 2 x 5 x 3 + 3 control + 1 failed
    assert list(frame.columns[:len(RUN_COLUMNS)]) == RUN_COLUMNS and frame["run_id"].is_unique
    row = frame.set_index("run_id").loc["ft-electra-tiny-sst2-0.25-2-1.6e+13"]
    assert (row["kind"], row["model"], row["task"], row["seed"], row["status"]) == ("finetune", "electra", "sst2", 2,
                                                                                    "done")
    assert (row["spec.fraction"], row["spec.settings.lr"], row["spec.settings.epochs"]) == (0.25, 3e-4, 3)
    assert (row["env.device"], row["env.packages.torch"], row["git_sha"]) == ("cpu", "2.13.0", "abc123")
    assert row["wall_s"] >= 0 and row["parent_id"] == "pt-electra-tiny-1.6e+13"
    bad = frame.set_index("run_id").loc[failed]
    assert bad["status"] == "failed" and bad["error"] == "RuntimeError: out of memory"
    pre = frame.set_index("run_id").loc["pt-electra-tiny-1.6e+13"]
    assert pre["spec.budget.kind"] == "flops" and pre["spec.budget.value"] == BUDGET


def test_metrics_frame_has_every_metric_point(store):
    from bench.results.tidy import METRIC_COLUMNS, metrics_frame

    frame = metrics_frame(store)
    con = sqlite3.connect(store.path)
    assert len(frame) == con.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
    con.close()
    assert list(frame.columns) == METRIC_COLUMNS
    pt = frame[frame["run_id"] == "pt-electra-tiny-1.6e+13"]
    ckpt = pt[pt["name"] == "checkpoint"].sort_values("step")
    assert list(ckpt["value"]) == list(FRACTIONS) and ckpt["step"].iloc[-1] == 160
    loss = pt[pt["name"] == "disc_loss"]
    assert len(loss) == 16 and loss["wall_s"].iloc[0] == 7.5  # logged every 10 steps, 0.75 s a step
    final = frame[(frame["run_id"] == "ft-bert-tiny-sst2-1-0-1.6e+13") & frame["step"].isna()]
    assert dict(zip(final["name"], final["value"]))["score"] == pytest.approx(0.79)


def test_parquet_holds_the_long_table_one_row_per_run(store, tmp_path):
    pytest.importorskip("pyarrow", reason="Parquet needs pyarrow: `pip install pyarrow`")
    import pandas as pd

    from bench.results import formats

    _add_failed(store)
    rep = build_report(store)
    out = formats.write(rep, "parquet", tmp_path / "out" / "runs.parquet", store=store)
    back = pd.read_parquet(out)
    assert len(back) == len(store.runs(status=None)) == 37
    assert {"run_id", "kind", "model", "status", "spec.settings.lr", "env.device", "metric.score",
            "metric.steps", "metric.flops_paper"} <= set(back.columns)
    rows = back.set_index("run_id")
    for run in store.runs():  # every final metric of every finished run, exactly as stored
        for name, value in store.final_metrics(run["id"]).items():
            assert rows.loc[run["id"], f"metric.{name}"] == value
    assert rows.loc["pt-electra-tiny-1.6e+13", "metric.steps"] == 160
    assert math.isnan(rows.loc["pt-electra-tiny-1.6e+13", "metric.score"])  # a pretraining run has no score
    assert rows.loc["ft-bert-tiny-sst2-failed", "status"] == "failed"


def test_parquet_of_a_filtered_report_keeps_only_its_runs(results, tmp_path):
    pytest.importorskip("pyarrow", reason="Parquet needs pyarrow: `pip install pyarrow`")
    import pandas as pd

    from bench.results import formats

    with Store(results / "bench.db") as s:
        rep = build_report(s, tasks=["mrpc"])
        back = pd.read_parquet(formats.write(rep, "parquet", tmp_path / "mrpc.parquet", store=s))
    assert set(back["run_id"]) == {r["id"] for r in rep.runs}
    assert set(back.loc[back["kind"] == "finetune", "task"]) == {"mrpc"} and (back["kind"] == "pretrain").sum() == 3


def test_formats_refuse_what_they_cannot_do(store, tmp_path):
    from bench.errors import ConfigError
    from bench.results import formats

    rep = build_report(store)
    with pytest.raises(ConfigError, match="binary file"):
        formats.render(rep, "parquet")
    with pytest.raises(ConfigError, match="pass store="):
        formats.write(rep, "parquet", tmp_path / "x.parquet")
    with pytest.raises(ConfigError, match="unknown report format 'xlsx'.*md, html, csv, latex, json, parquet"):
        formats.render(rep, "xlsx")
    assert formats.write(rep, "md", tmp_path / "r.md").read_text() == formats.render(rep, "md")


def test_the_comparison_shows_a_tasks_other_metrics_beside_its_headline():
    from bench.results.tables import other_metrics

    # SQuAD: the score is F1; exact match rides along, median over the runs
    qa = [{"score": f1, "metric_f1": f1, "metric_exact_match": em} for f1, em in ((0.5, 0.4), (0.6, 0.3), (0.7, 0.5))]
    assert other_metrics(qa) == "exact_match 0.4000"
    # SST-2: accuracy is the headline itself, so nothing rides along
    assert other_metrics([{"score": a, "metric_accuracy": a} for a in (0.8, 0.81)]) == ""
    # MRPC: F1 headline, accuracy beside it; a split's suffixed metric too
    mrpc = [{"score": 0.8, "metric_f1": 0.8, "metric_accuracy": 0.7, "metric_accuracy_mm": 0.69}]
    assert other_metrics(mrpc) == "accuracy 0.7000, accuracy_mm 0.6900"


def test_two_fine_tuning_regimes_in_one_store_are_compared_apart(tmp_path):
    # cpu-crossover and its low-resource twin share their pretraining runs, so one store holds both regimes:
    # each is its own row and its own claims, never pooled, and its scores never overwrite the other's
    from bench.results.claims import pair_claims
    from bench.results.tables import seed_scores_of

    store = _fast(Store(tmp_path / "bench.db"))
    regimes = {"big": ({"max_train_examples": 20000, "epochs": 1.0}, {"electra": 0.80, "bert": 0.80, "scratch": 0.79}),
               "few": ({"max_train_examples": 1000, "epochs": 10.0}, {"electra": 0.70, "bert": 0.60, "scratch": 0.55})}
    parents = {m: add_pretrain(store, m, pretrains=m != "scratch") for m in ("electra", "bert", "scratch")}
    for name, (settings, medians) in regimes.items():
        for model, median in medians.items():
            for seed, d in enumerate(SPREAD):
                run_id = f"ft-{model}-{name}-{seed}"
                spec = {"model": model, "task": "sst2", "seed": seed, "fraction": 1.0, "pretrain_id": parents[model],
                        "size": "tiny", "settings": settings}
                store.claim(run_id, kind="finetune", model=model, spec=spec, code_version="src-test", task="sst2",
                            size="tiny", budget=BUDGET if model != "scratch" else 0.0, seed=seed,
                            parent_id=parents[model], git_sha="abc123", environment=ENV)
                store.finish(run_id, [Metric("score", median + d), Metric("metric_accuracy", median + d),
                                      Metric("train_wall_s", 1.0), Metric("eval_wall_s", 1.0), Metric("fraction", 1.0)])
    df = comparison_table(store)
    assert sorted(zip(df["model"], df["finetune"])) == sorted(
        (m, label) for m in ("electra", "bert", "scratch") for label in ("20,000 ex x 1 ep", "1,000 ex x 10 ep"))
    few = df[df["finetune"] == "1,000 ex x 10 ep"].set_index("model")
    assert few.loc["electra", "score_median"] == pytest.approx(0.70)
    assert sorted(seed_scores_of(df, df[(df["model"] == "bert") & (df["finetune"] == "20,000 ex x 1 ep")].iloc[0]
                                 .to_dict())) == pytest.approx([0.79, 0.80, 0.81])
    claims = pair_claims(df, "scratch")
    pairs = [c for c in claims if not c.vs_control]
    assert len(pairs) == 2 and len(claims) == 6  # electra vs bert, and each vs scratch, in each regime
    by_regime = {("1,000 ex" in c.finetune): c for c in pairs}
    assert by_regime[True].ci.gap == pytest.approx(0.10) and by_regime[False].ci.gap == pytest.approx(0.0)
    assert all("fine-tuned on" in c.sentence and c.size == "tiny" for c in claims)
    store.close()


def test_the_regime_says_how_many_examples_a_run_trained_on_when_the_split_is_under_the_cap(tmp_path):
    # WNUT-17 has 3,394 training sentences: under the tiny preset's 20,000 cap the table says 3,394, not 20,000
    store = _fast(Store(tmp_path / "bench.db"))
    settings = {"max_train_examples": 20000, "epochs": 1.0}
    for model, trained in (("electra", 3394), ("bert", 20000)):
        parent = add_pretrain(store, model)
        run_id = f"ft-{model}"
        spec = {"model": model, "task": "sst2", "seed": 0, "fraction": 1.0, "pretrain_id": parent, "size": "tiny",
                "settings": settings}
        store.claim(run_id, kind="finetune", model=model, spec=spec, code_version="src-test", task="sst2",
                    size="tiny", budget=BUDGET, seed=0, parent_id=parent, git_sha="abc123", environment=ENV)
        store.finish(run_id, [Metric("score", 0.8), Metric("train_examples", trained), Metric("train_wall_s", 1.0),
                              Metric("eval_wall_s", 1.0), Metric("fraction", 1.0)])
    df = comparison_table(store)
    labels = dict(zip(df["model"], df["finetune"]))
    assert labels == {"electra": "3,394 ex x 1 ep", "bert": "20,000 ex x 1 ep"}
