"""Table 1 (Markdown and CSV) and the plot/report commands on the shipped synthetic runs."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from val_probing.cli import main
from val_probing.results import TaskResult, load_results
from val_probing.tables import (
    CSV_COLUMNS,
    MISSING,
    curve_markdown,
    markdown_table,
    table_rows,
    to_csv,
    to_markdown,
)

DATA = Path(__file__).resolve().parent / "data"
SYNTHETIC = DATA / "runs" / "synthetic"
LENGTHS = DATA / "runs" / "lengths"
SCORE_JSON = DATA / "score" / "mistral-like_document.json"


@pytest.fixture(scope="module")
def results() -> list[TaskResult]:
    return load_results([SYNTHETIC, LENGTHS, SCORE_JSON], n_boot=20)


def _result(results: list[TaskResult], model: str, task: str, length: int | None = 4096) -> TaskResult:
    (r,) = [r for r in results if r.model == model and r.task == task and r.context_length == length]
    return r


def test_rows_hold_the_summary_numbers_and_all_is_the_mean_over_tasks(results: list[TaskResult]) -> None:
    rows = {row.label: row for row in table_rows(results)}
    assert sorted(rows) == ["flat-model", "mistral-like", "u-model"]
    u = rows["u-model"]
    for task in ("document", "code", "database"):
        summary = _result(results, "u-model", task).summary
        assert (u.cells[task].avg, u.cells[task].gap) == (summary.avg, summary.gap)
    assert u.all_avg == pytest.approx(sum(_result(results, "u-model", t).summary.avg for t in u.cells) / 3)
    assert u.all_gap == pytest.approx(sum(_result(results, "u-model", t).summary.gap for t in u.cells) / 3)
    assert u.context_lengths == (4096,)
    partial = rows["mistral-like"]
    assert not partial.complete and partial.all_avg is None and list(partial.cells) == ["document"]


def test_markdown_is_table_one(results: list[TaskResult]) -> None:
    text = to_markdown(table_rows(results), digits=1)
    lines = text.splitlines()
    assert lines[0] == (
        "| Model | Context | Document Avg | Document Gap↓ | Code Avg | Code Gap↓ | Database Avg "
        "| Database Gap↓ | All Avg | All Gap↓ |"
    )
    u_row = next(line for line in lines if line.startswith("| u-model"))
    doc = _result(results, "u-model", "document").summary
    cells = [c.strip() for c in u_row.strip("|").split("|")]
    assert cells[1] == "4K"
    assert cells[2:4] == [f"{doc.avg:.1f}", f"{doc.gap:.1f}"]
    mistral = next(line for line in lines if line.startswith("| mistral-like"))
    assert [c.strip() for c in mistral.strip("|").split("|")][4:] == ["–"] * 6


def test_csv_has_every_number(results: list[TaskResult]) -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(table_rows(results)))))
    assert tuple(rows[0]) == CSV_COLUMNS
    flat = next(r for r in rows if r["model"] == "flat-model")
    summary = _result(results, "flat-model", "code").summary
    assert float(flat["code_avg"]) == pytest.approx(summary.avg, abs=1e-6)
    assert float(flat["code_avg_ci_low"]) == pytest.approx(summary.avg_ci[0], abs=1e-6)
    assert flat["code_n_samples"] == "32" and flat["code_context_length"] == "4096"
    mistral = next(r for r in rows if r["model"] == "mistral-like")
    assert mistral["code_avg"] == "" and mistral["all_avg"] == ""


def test_context_length_option_picks_the_row_numbers(results: list[TaskResult]) -> None:
    (row,) = table_rows(results, context_length=1024)
    assert (
        row.label == "u-model"
        and row.cells["document"].gap == _result(results, "u-model", "document", 1024).summary.gap
    )


def test_report_command_prints_and_writes_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "t" / "table.csv"
    md = tmp_path / "table.md"
    assert main(["report", str(SYNTHETIC), "--csv", str(out), "--markdown", str(md), "--digits", "2"]) == 0
    printed = capsys.readouterr().out
    assert printed == md.read_text()
    assert "| flat-model | 4K | 83.32 |" in printed
    assert [r["model"] for r in csv.DictReader(out.open())] == ["flat-model", "u-model"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["table.csv"]  # no temporary left


def test_commands_fail_cleanly_on_empty_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "no VAL probing results" in capsys.readouterr().err
    assert main(["plot", str(tmp_path), "--out", str(tmp_path / "figs")]) == 2
    assert not (tmp_path / "figs").exists()


def test_plot_command_writes_curves_and_heatmap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "figs"
    assert main(["plot", str(SYNTHETIC), str(LENGTHS), "--out", str(out), "--format", "png"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["heatmap_document.png", "position_curves.png"]
    assert capsys.readouterr().out.split() == [
        str(out / "position_curves.png"),
        str(out / "heatmap_document.png"),
    ]


def test_plot_command_draws_what_it_can(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = tmp_path / "run"
    shutil.copytree(SYNTHETIC / "org__u-model", run / "org__u-model")
    results_file = next(run.rglob("results_*.json"))
    data = json.loads(results_file.read_text())
    del data["results"]["val_database"]
    results_file.write_text(json.dumps(data))
    samples = next(run.rglob("samples_val_code_*.jsonl"))
    samples.write_text(samples.read_text()[:-25])  # half-written last line
    out = tmp_path / "figs"
    assert main(["plot", str(run), "--out", str(out), "--all-runs"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["position_curves.png", "position_curves.svg"]
    assert "truncated" in caplog.text and "no results for task database" in caplog.text


# ---------------------------------------------------------------- effective context length


def _with_summary(result: TaskResult, length: int, avg: float, lows: list[float], highs: list[float]):
    """A copy of ``result`` at ``length`` whose buckets have the given CIs (means in the middle)."""
    from dataclasses import replace

    from val_probing.buckets import BucketStat

    buckets = tuple(
        BucketStat(index=i, mean=(lo + hi) / 2, std=1.0, ci=(lo, hi), n=4, n_sets=2)
        for i, (lo, hi) in enumerate(zip(lows, highs, strict=True))
    )
    means = [b.mean for b in buckets]
    summary = replace(
        result.summary, buckets=buckets, avg=avg, gap=max(means) - min(means), n_buckets=len(buckets)
    )
    return replace(
        result, context_length=length, summary=summary, source=result.source.with_name(f"{length}")
    )


def test_ci_gap_is_the_part_of_the_gap_the_bucket_cis_cannot_explain(results: list[TaskResult]) -> None:
    from val_probing.results.effective_length import ci_gap

    base = _result(results, "u-model", "document")
    overlapping = _with_summary(base, 1024, 90, lows=[80, 70, 85], highs=[100, 90, 95])
    assert overlapping.summary.gap == 10 and ci_gap(overlapping) == 0.0  # every CI overlaps
    apart = _with_summary(base, 1024, 60, lows=[80, 20, 50], highs=[90, 30, 60])
    assert ci_gap(apart) == 80 - 30
    from dataclasses import replace

    nan = float("nan")
    unknown = replace(apart.summary, buckets=tuple(replace(b, ci=(nan, nan)) for b in apart.summary.buckets))
    assert ci_gap(replace(apart, summary=unknown)) == apart.summary.gap == 60  # no CIs: the plain gap


def test_effective_length_is_the_longest_length_up_to_which_every_length_passes(
    results: list[TaskResult],
) -> None:
    from val_probing.results.effective_length import effective_lengths

    base = _result(results, "u-model", "code")
    passing = {"lows": [85, 80], "highs": [95, 92]}  # CI gap 0
    runs = [
        _with_summary(base, 1024, 90, **passing),
        _with_summary(base, 2048, 85, **passing),
        _with_summary(base, 4096, 60, **passing),  # avg too low
        _with_summary(base, 8192, 90, **passing),  # passes again: does not count after a failure
    ]
    (found,) = effective_lengths(runs, min_avg=80, max_gap=20)
    assert (found.model, found.task, found.length) == ("u-model", "code", 2048)
    assert [c.passes for c in found.checks] == [True, True, False, True]
    assert found.text() == "2K" and not found.all_pass and found.uses_ci
    (everything,) = effective_lengths(runs, min_avg=50, max_gap=20)
    assert everything.length == 8192 and everything.text() == ">= 8K"
    gapped = [_with_summary(base, 1024, 90, lows=[90, 40], highs=[100, 50]), *runs[1:]]
    (none,) = effective_lengths(gapped, min_avg=50, max_gap=20)
    assert none.length is None and none.text() == "< 1K"  # CI gap 40 at the shortest length
    assert effective_lengths(runs[:1]) == []  # one length: no effective length


def _with_avg_ci(result: TaskResult, low: float, high: float) -> TaskResult:
    from dataclasses import replace

    return replace(result, summary=replace(result.summary, avg_ci=(low, high)))


def test_effective_length_interval_and_the_peers_definitions(results: list[TaskResult]) -> None:
    from val_probing.results.effective_length import effective_lengths

    base = _result(results, "u-model", "code")
    narrow = {"lows": [85, 80], "highs": [95, 92]}  # CI gap 0, widest gap 15
    runs = [
        _with_avg_ci(_with_summary(base, 1024, 90, **narrow), 85, 95),  # passes for certain
        _with_avg_ci(_with_summary(base, 2048, 82, **narrow), 76, 88),  # passes, not for certain
        _with_avg_ci(_with_summary(base, 4096, 70, **narrow), 60, 81),  # fails, but may pass
        _with_avg_ci(_with_summary(base, 8192, 50, **narrow), 40, 60),  # fails for certain
    ]
    (found,) = effective_lengths(runs, min_avg=80, max_gap=20)
    assert (found.length, found.low, found.high) == (2048, 1024, 4096)
    assert found.interval_text() == "1K – 4K"
    assert [(c.surely_passes, c.may_pass) for c in found.checks] == [
        (True, True),
        (False, True),
        (False, True),
        (False, False),
    ]
    # the widest gap the bucket CIs allow decides "for certain" too: 15 passes max_gap 20, not 10
    (strict,) = effective_lengths(runs, min_avg=80, max_gap=10)
    assert (strict.length, strict.low, strict.high) == (2048, None, 4096)
    assert strict.interval_text() == "< 1K – 4K"
    ruler, nolima = found.peers
    assert (ruler.name, ruler.threshold) == ("RULER", 85.6)
    assert (ruler.length, ruler.low, ruler.high) == (1024, None, 2048)  # 90 >= 85.6 > 82; CI low 85
    assert ruler.text() == "1K [< 1K – 2K]"
    assert nolima.threshold == pytest.approx(0.85 * 90)  # 85% of its own shortest-length avg
    assert (nolima.length, nolima.low, nolima.high) == (2048, 1024, 4096)
    (loose,) = effective_lengths(runs, min_avg=80, max_gap=20, ruler_threshold=40, nolima_fraction=0.6)
    assert loose.peers[0].length == 8192 and loose.peers[1].length == 4096  # 0.6 * 90 = 54 > 50
    # without CIs the bounds are unknown, the point estimates stay
    from dataclasses import replace

    nan = float("nan")
    bare = [
        replace(r, summary=replace(r.summary, avg_ci=(nan, nan), buckets=tuple(
            replace(b, ci=(nan, nan)) for b in r.summary.buckets
        )))
        for r in runs
    ]  # fmt: skip
    (unknown,) = effective_lengths(bare, min_avg=80, max_gap=20)
    assert (unknown.length, unknown.low, unknown.high) == (2048, None, None)
    assert unknown.interval_text() == "unknown (no CIs)" and unknown.peers[0].text() == "1K"


def test_effective_length_bounds_hold_on_real_bootstrap_cis(results: list[TaskResult]) -> None:
    from val_probing.results.effective_length import effective_lengths

    for e in effective_lengths(results, min_avg=60, max_gap=30):
        assert e.uses_ci
        rank = {None: 0, **{c.length: i + 1 for i, c in enumerate(e.checks)}}
        assert rank[e.low] <= rank[e.length] <= rank[e.high]
        for p in e.peers:
            assert rank[p.low] <= rank[p.length] <= rank[p.high]


def test_report_prints_the_effective_length_with_settable_thresholds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["report", str(SYNTHETIC), str(LENGTHS), "--min-avg", "60", "--max-gap", "30"]) == 0
    out = capsys.readouterr().out
    assert "avg >= 60 and CI gap <= 30" in out
    (row,) = [line for line in out.splitlines() if line.startswith("| u-model | Document |")]
    assert "| 2K |" in row and "1K 80.0/" in row and "4K 49.9/" in row
    assert main(["report", str(SYNTHETIC), str(LENGTHS)]) == 0
    (row,) = [
        line for line in capsys.readouterr().out.splitlines() if line.startswith("| u-model | Document |")
    ]
    assert "| < 1K |" in row  # defaults 80 / 20: even 1K (avg 79.99...) does not pass
    assert main(["report", str(SYNTHETIC)]) == 0
    assert "Effective context length" not in capsys.readouterr().out  # one length only


def test_report_checks_its_output_files_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert main(["report", str(SYNTHETIC), "--csv", str(folder)]) == 2
    assert f"{folder}: cannot write" in capsys.readouterr().err


def test_markdown_table_aligns_escapes_and_leaves_empty_cells_blank() -> None:
    lines = markdown_table(["a", "b", "c"], [["x|y", "", "1.0"]], right={2})
    assert lines == ["| a | b | c |", "|---|---|---:|", "| x\\|y | | 1.0 |"]


def test_curve_table_has_a_row_per_task_every_bucket_and_the_mean_over_tasks() -> None:
    from dataclasses import replace

    rows = [
        r for r in load_results([SYNTHETIC], n_boot=20) if r.model == "u-model" and r.context_length == 4096
    ]
    assert len(rows) == 3
    table = curve_markdown(rows, digits=2).splitlines()
    n = rows[0].summary.n_buckets
    assert table[0] == "| task | avg | 95% CI | gap | " + " | ".join(f"b{i:02d}" for i in range(n)) + " |"
    first = rows[0].summary
    lo, hi = first.avg_ci
    assert table[2].startswith(
        f"| val_{rows[0].task} | {first.avg:.2f} | {lo:.2f}-{hi:.2f} | {first.gap:.2f} |"
    )
    assert table[-1] == (
        f"| all | {sum(r.summary.avg for r in rows) / 3:.2f} | | {sum(r.summary.gap for r in rows) / 3:.2f} |"
        + " |" * n
    )
    # a bucket without samples and an unknown CI are shown as missing, never as a number
    cut = replace(rows[0], summary=replace(first, buckets=first.buckets[1:], avg_ci=(float("nan"),) * 2))
    (line,) = [ln for ln in curve_markdown([cut]).splitlines() if ln.startswith("| val_")]
    assert f"| {MISSING}-{MISSING} |" in line and line.split("|")[5].strip() == MISSING
