"""The HTML report in a real browser: Debian's Chromium, driven by Playwright (no Playwright download).

Slow (a browser start, a few seconds). Where Chromium or Playwright is missing the test is skipped,
except in CI (``CI=true``), where it fails: scripts/install.sh installs both for ``dev``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from val_probing.webpage import write_html

DATA = Path(__file__).resolve().parent / "data"
SYNTHETIC = DATA / "runs" / "synthetic"
LENGTHS = DATA / "runs" / "lengths"
SCORE_JSON = DATA / "score" / "mistral-like_document.json"  # a summary without samples
EMBEDDED = DATA / "runs" / "embedded" / "SmolLM2-135M-Instruct"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.slow


def _chromium() -> str:
    path = (
        os.environ.get("VAL_PROBING_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no chromium in CI: scripts/install.sh dev installs Debian's package")
        pytest.skip("no chromium (apt-get install chromium)")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("playwright is missing in CI: pip install 'val-probing[dev]'")
        pytest.skip("playwright is not installed")
    executable = _chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Page:
    """A page opened in a fresh context, with its console errors and requests recorded."""

    def __init__(self, browser: Any, path: Path) -> None:
        self.context = browser.new_context(viewport={"width": 1400, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.url = path.resolve().as_uri()
        self.page.goto(self.url)


def _data(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    match = re.search(r'id="val-data">(.*?)</script>', text, re.S)
    assert match
    return json.loads(match.group(1))


def _covered_points(page: Any) -> int:
    """Points of a curve that another element (a band, a line, an axis) hides from the mouse."""
    return int(
        page.evaluate(
            """() => Array.from(document.querySelectorAll("circle.pt")).filter(c => {
                 c.scrollIntoView({block: "center"});
                 const b = c.getBoundingClientRect();
                 const top = document.elementFromPoint(b.x + b.width / 2, b.y + b.height / 2);
                 return !(top && top.classList.contains("pt"));
               }).length"""
        )
    )


def test_two_models_curves_drill_down_and_legend(browser: Any, tmp_path: Path) -> None:
    from test_closed_book import add_closed_book_run

    synthetic = tmp_path / "synthetic"
    shutil.copytree(SYNTHETIC, synthetic)
    add_closed_book_run(synthetic / "org__u-model")
    out = write_html([synthetic, LENGTHS, SCORE_JSON], tmp_path / "report.html", n_boot=50)
    data = _data(out)
    view = Page(browser, out)
    page = view.page
    # every curve drawn, with a real path and a point per bucket
    lines = page.locator("path.curve-line")
    assert lines.count() == len(data["curves"])
    for i in range(lines.count()):
        box = lines.nth(i).bounding_box()
        assert box is not None and box["width"] > 100
    assert page.locator("circle.pt").count() == sum(len(c["buckets"]) for c in data["curves"])
    assert _covered_points(page) == 0
    assert page.locator("#heatmaps rect.cell").count() == 3 * 8  # u-model document at 1K, 2K, 4K
    assert page.locator("#table1 tbody tr").count() == 3
    # the closed-book floor: a line in every panel of u-model's tasks, and "above floor" in Table 1
    assert page.locator('line.floor.closed_book[data-model="u-model"]').count() == 3 + 1 + 1
    assert "Document above floor" in page.locator("#table1 thead").inner_text()
    # a click on a bucket of the 4K document panel lists its questions, right -> wrong first
    panel = page.locator('figure.panel[data-task="document"][data-length="4K"]')
    panel.locator('g.curve[data-model="flat-model"] circle.pt[data-bucket="3"]').click()
    drill = page.locator("#drill")
    assert drill.is_visible()
    assert page.locator(".pt.sel").count() == 1  # the clicked point stays marked
    rows = drill.locator("tr.q")
    block = data["questions"]["document/4096"]
    expected = [r for r in block["rows"] if r[1] * 8 // r[2] == 3]
    assert rows.count() == len(expected) > 0
    assert "flat-model → u-model" in drill.inner_text()
    assert rows.first.get_attribute("class") == "q worse"  # the flat model's right answers the U-model lost
    # a run saved without samples has a curve but no questions, and says why
    page.locator('g.curve[data-model="mistral-like"] circle.pt').first.click()
    assert "without --log_samples" in drill.inner_text() and drill.locator("tr.q").count() == 0
    # a heatmap cell drills down too
    page.locator('#heatmaps rect.cell[data-bucket="0"]').first.click()
    assert "bucket 0" in drill.locator("h2").inner_text()
    # the legend hides a model everywhere
    page.locator('#legend button[data-model="u-model"]').click()
    assert not page.locator('g.curve[data-model="u-model"]').first.is_visible()
    assert page.locator('g.curve[data-model="flat-model"]').first.is_visible()
    # hovering a point shows its value
    page.locator('g.curve[data-model="flat-model"] circle.pt').first.hover()
    assert "score" in page.locator("#tip").inner_text()
    assert view.errors == []
    assert view.requests == [view.url]
    view.context.close()


def test_real_run_answers_expand_and_hostile_text_stays_text(browser: Any, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(EMBEDDED, run)
    samples = next(run.glob("samples_val_code_*.jsonl"))
    lines = samples.read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    first["filtered_resps"] = ['</script><script>window.pwned=1</script><img src=x onerror="window.pwned=2">']
    lines[0] = json.dumps(first)
    samples.write_text("\n".join(lines) + "\n", encoding="utf-8")
    twin = tmp_path / "twin"  # nearly the same run under another name: its bands lie over the first's points
    shutil.copytree(run, twin)
    for path in twin.glob("samples_*.jsonl"):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        for row in rows:
            row["ref_score"] = round(0.9 * row["ref_score"] + 0.05, 6)
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    (results,) = twin.glob("results_*.json")
    data = json.loads(results.read_text(encoding="utf-8"))
    data["model_name"] = "org/twin"
    results.write_text(json.dumps(data), encoding="utf-8")
    out = write_html([run, twin], tmp_path / "report.html", n_boot=50)
    view = Page(browser, out)
    page = view.page
    for bucket in range(8):
        page.locator(
            f'figure[data-task="code"] g[data-model="twin"] circle.pt[data-bucket="{bucket}"]'
        ).click()
        more = page.locator("#drill button.more")
        if more.count():
            cell = more.first.locator("xpath=..")
            short = cell.inner_text()
            more.first.click()
            assert len(cell.inner_text()) > len(short)
            break
    else:
        pytest.fail("no long answer to expand in the code task")
    assert _covered_points(page) == 0
    assert page.evaluate("window.pwned") is None
    assert view.errors == []
    assert view.requests == [view.url]
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert (tmp_path / "page.png").stat().st_size > 10_000
    view.context.close()
