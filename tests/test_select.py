"""Run selection and labels (results/select.py), shared by the figures, Table 1 and the HTML page;
and the import order of those views: plots and tables both import results/, never each other."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

from val_probing.results import TaskResult, load_results
from val_probing.results.select import curve_labels, length_label, run_key, select_curves

PACKAGE = Path(__file__).resolve().parent.parent / "val_probing"
DATA = Path(__file__).resolve().parent / "data"
RUNS = [DATA / "runs" / "synthetic", DATA / "runs" / "lengths"]
NEW, OLD = "2026-01-02T03-04-05.678901", "2026-01-01T00-00-00.000001"


@pytest.fixture(scope="module")
def every() -> list[TaskResult]:
    return load_results(RUNS, latest_only=False)


def _picked(chosen: list[TaskResult]) -> list[tuple[str, str, int | None, str]]:
    return sorted((r.model, r.task, r.context_length, r.source.name) for r in chosen)


def test_the_longest_length_per_model_and_task_with_every_run_at_it(every: list[TaskResult]) -> None:
    chosen = select_curves(every)
    assert {(r.model, r.task) for r in chosen} == {(r.model, r.task) for r in every}
    assert {r.context_length for r in chosen} == {4096}  # u-model's 1K and 2K document runs are left
    u_document = [r for r in chosen if (r.model, r.task) == ("u-model", "document")]
    assert sorted(r.source.name for r in u_document) == [f"results_{OLD}.json", f"results_{NEW}.json"]


def test_a_length_asked_for_is_drawn_where_a_model_has_it(
    every: list[TaskResult], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="val_probing.results.select"):
        chosen = select_curves(every, context_length=1024)
    assert _picked(chosen) == [("u-model", "document", 1024, f"results_{OLD}.json")]
    assert "flat-model document: no result at context length 1024" in caplog.text


def test_labels_tell_several_runs_of_a_model_apart(every: list[TaskResult]) -> None:
    labels = curve_labels(every)
    assert set(labels) == {run_key(r) for r in every}
    assert {labels[run_key(r)] for r in every if r.model == "flat-model"} == {"flat-model"}
    assert {labels[run_key(r)] for r in every if r.model == "u-model"} == {
        f"u-model [{OLD}]",
        f"u-model [{NEW}]",
    }
    latest = load_results(RUNS)  # one run per length: the bare model names
    assert set(curve_labels(latest).values()) == {"flat-model", "u-model"}


def test_length_labels() -> None:
    assert [length_label(x) for x in (1024, 4096, 32768, 1000)] == ["1K", "4K", "32K", "1000"]


def _imports(module: Path) -> set[str]:
    """Every module a file imports, at the top, in a function or under TYPE_CHECKING."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_figures_and_tables_import_their_selection_not_each_other() -> None:
    plots, tables = _imports(PACKAGE / "plots.py"), _imports(PACKAGE / "tables.py")
    assert "val_probing.tables" not in plots and "val_probing.plots" not in tables
    for module in ("plots", "tables"):
        assert "val_probing.results.select" in _imports(PACKAGE / f"{module}.py")
    for shared in ("select.py", "effective_length.py"):  # below both: neither imports a view
        assert not {"val_probing.plots", "val_probing.tables", "val_probing.webpage"} & _imports(
            PACKAGE / "results" / shared
        )
