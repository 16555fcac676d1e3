"""The HTML report in a real browser: headless Chromium (the system's binary, driven by Playwright's
client; no browser is downloaded) opens a report built from a small store, and the claims, the
leaderboard and the comparison table render, every embedded plot decodes, and nothing is fetched."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import main
from test_report import synthetic_store

SECTIONS = ("claims", "leaderboard", "comparison", "plots", "provenance")
PLOTS = 3  # score vs FLOPs, pretraining loss vs FLOPs, final scores


def _chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="no Playwright client: `pip install 'electra-bench[browser]'` (or playwright)")
    binary = _chromium()
    if binary is None:
        pytest.skip("no Chromium on PATH: `apt-get install chromium` to check the HTML report in a browser")
    with sync_api.sync_playwright() as p:
        # the system's Chromium, never a downloaded one; --no-sandbox because CI runs as root
        b = p.chromium.launch(executable_path=binary, headless=True, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def report_html(tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("browser") / "results"
    results.mkdir()
    synthetic_store(results / "bench.db", tasks=("sst2", "mrpc")).close()
    out = results / "report.html"
    r = CliRunner().invoke(main, ["report", "--results", str(results), "--format", "html", "--out", str(out)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return out


# per image: how many of its rows, drawn onto a canvas, are wholly transparent (0 when it decoded whole)
_TRANSPARENT_ROWS = """els => els.map(e => {
    const c = document.createElement('canvas'); c.width = e.naturalWidth; c.height = e.naturalHeight;
    const ctx = c.getContext('2d'); ctx.drawImage(e, 0, 0);
    const px = ctx.getImageData(0, 0, c.width, c.height).data;
    let empty = 0;
    for (let y = 0; y < c.height; y++) {
        let seen = false;
        for (let x = 0; x < c.width && !seen; x++) seen = px[(y * c.width + x) * 4 + 3] > 0;
        if (!seen) empty++;
    }
    return empty;
})"""


def _open(browser, path: Path) -> tuple[object, list[str]]:
    """The page after load, and every URL it asked for other than the file itself and data: URIs."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    fetched: list[str] = []

    def route(r) -> None:  # record and refuse anything that would leave the file
        url = r.request.url
        if url.startswith("data:") or url == path.as_uri():
            r.continue_()
        else:
            fetched.append(url)
            r.abort()

    page.route("**/*", route)
    page.goto(path.as_uri(), wait_until="load")
    return page, fetched


def test_report_renders_in_chromium(browser, report_html):
    page, fetched = _open(browser, report_html)
    try:
        for section in SECTIONS:
            box = page.locator(f"#{section}").bounding_box()
            assert box is not None and box["height"] > 0 and box["width"] > 0, f"section #{section} is not drawn"
        for section in ("claims", "leaderboard", "comparison"):
            rows = page.locator(f"#{section} table tr")
            assert rows.count() >= 2, f"#{section}: no table rows"
            assert rows.nth(1).is_visible()
        # one pretraining run a side: the sentence compares two checkpoints (docs/concepts/claims.md)
        assert ("the claim that this electra checkpoint fine-tunes better than this bert checkpoint holds at this scale"
                in page.locator("#claims").inner_text())
        board = page.locator("#leaderboard").inner_text()
        assert "electra" in board and "bert" in board and "scratch" in board
        table = page.locator("#comparison").inner_text()
        assert "sst2" in table and "mrpc" in table
        images = page.eval_on_selector_all(
            "img", "els => els.map(e => ({w: e.naturalWidth, h: e.naturalHeight, done: e.complete, alt: e.alt}))")
        assert len(images) == PLOTS
        for img in images:  # a plot that does not decode has naturalWidth 0
            assert img["done"] and img["w"] > 0 and img["h"] > 0, img
            assert img["alt"]
        # drawn whole: a truncated image still has its size, but the rows it lacks stay transparent
        # (matplotlib's figures have an opaque background)
        assert page.eval_on_selector_all("img", _TRANSPARENT_ROWS) == [0] * PLOTS
        assert fetched == []  # nothing asked of the network or the disk beyond the file
    finally:
        page.close()


def test_a_broken_plot_is_caught(browser, report_html, tmp_path):
    """The check above fails when a plot stops decoding: corrupt one embedded image's bytes."""
    text = report_html.read_text(encoding="utf-8")
    start = text.index("base64,") + len("base64,")
    broken = tmp_path / "broken.html"
    broken.write_text(text[:start] + "AAAA" + text[start + 4:], encoding="utf-8")
    page, _ = _open(browser, broken)
    try:
        widths = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
        assert len(widths) == PLOTS and widths.count(0) == 1
    finally:
        page.close()


def test_a_remote_resource_is_caught(browser, report_html, tmp_path):
    """A report that pulled a stylesheet or script from the network would be seen (and refused)."""
    text = report_html.read_text(encoding="utf-8")
    leaky = tmp_path / "leaky.html"
    leaky.write_text(text.replace("</head>", "<link rel='stylesheet' href='https://cdn.example.com/x.css'></head>", 1),
                     encoding="utf-8")
    page, fetched = _open(browser, leaky)
    page.close()
    assert fetched == ["https://cdn.example.com/x.css"]


# per table and image wider than the viewport: where it is and how far it reaches (none when all fit)
_TOO_WIDE = """() => ({
    doc: document.documentElement.scrollWidth, view: window.innerWidth,
    over: [...document.querySelectorAll('table, img')]
        .map(e => ({tag: e.tagName, in: (e.closest('[id]') || {}).id, right: e.getBoundingClientRect().right}))
        .filter(r => r.right > window.innerWidth + 0.5)
})"""


def test_no_table_or_figure_is_wider_than_the_page(browser, report_html):
    """Every table (the claims' 25 columns included) and every plot fits the page: nothing to scroll sideways to."""
    page, _ = _open(browser, report_html)
    width = page.viewport_size["width"]
    try:
        seen = page.evaluate(_TOO_WIDE)
        assert seen["doc"] <= seen["view"], f"the page scrolls sideways at {width}px: {seen}"
        assert seen["over"] == [], f"wider than the {width}px page: {seen['over']}"
        assert page.locator("#claims table th").count() >= 20  # the wide table is there, and fits
    finally:
        page.close()


def test_a_single_budget_plot_labels_few_distinct_flops_ticks(monkeypatch):
    """One budget and no curve: the models' FLOPs differ by a step's worth (8.007e12 .. 8.014e12), which a log axis
    once labelled with eight colliding minor ticks. Now a few plain, distinct labels (no browser needed)."""
    import pandas as pd

    from bench.results import plots

    figures = []
    monkeypatch.setattr(plots, "_render", lambda fig, *args: figures.append(fig))
    rows = [("electra", 8.014e12, 0.51), ("bert", 8.007e12, 0.57), ("electra-15", 8.010e12, 0.52),
            ("scratch", 0.0, 0.60)]
    frame = pd.DataFrame([{"task": "sst2", "size": "tiny", "model": m, "budget_flops": 8e12 if f else 0.0,
                           "pretrain_flops": f, "score_median": s, "score_min": s - 0.01, "score_max": s + 0.01}
                          for m, f, s in rows])
    plots.score_vs_flops(frame, control="scratch", score_labels={})
    (fig,) = figures
    fig.canvas.draw()
    ax = fig.axes[0]
    low, high = ax.get_xlim()
    labels = [t.get_text() for t in ax.xaxis.get_majorticklabels() + ax.xaxis.get_minorticklabels()
              if t.get_text() and low <= t.get_position()[0] <= high]
    assert 1 <= len(labels) <= 4 and len(set(labels)) == len(labels), labels
