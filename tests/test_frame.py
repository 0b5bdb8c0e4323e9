"""The notebook API: load_results takes a str, a Path or a list; CIs on request; results_frame."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from val_probing.results import (
    FRAME_COLUMNS,
    ResultsError,
    ensure_ci,
    has_ci,
    load_results,
    results_frame,
    with_ci,
)

DATA = Path(__file__).resolve().parent / "data"
EMBEDDED = DATA / "runs" / "embedded"
LENGTHS = DATA / "runs" / "lengths"
SYNTHETIC = DATA / "runs" / "synthetic"


def _key(results: list) -> list[tuple]:
    return [(r.model, r.task, r.context_length, r.summary.avg) for r in results]


def test_load_results_takes_a_str_a_path_or_a_list() -> None:
    as_list = load_results([EMBEDDED])
    assert len(as_list) == 3
    assert _key(load_results(str(EMBEDDED))) == _key(as_list)
    assert _key(load_results(EMBEDDED)) == _key(as_list)
    assert _key(load_results([str(EMBEDDED)])) == _key(as_list)
    with pytest.raises(ResultsError, match="no such file or folder"):
        load_results(str(EMBEDDED / "missing"))  # the whole string is one path, not its characters
    with pytest.raises(ResultsError, match="not a path"):
        load_results([EMBEDDED, 3])  # type: ignore[list-item]


def test_loading_computes_no_bootstrap_unless_asked() -> None:
    plain = load_results(EMBEDDED)
    assert all(r.has_samples and not has_ci(r) for r in plain)
    assert all(math.isnan(r.summary.avg_ci[0]) for r in plain)
    asked = load_results(EMBEDDED, n_boot=200)
    assert all(has_ci(r) for r in asked)
    later = ensure_ci(plain, n_boot=200)
    # the same bootstrap (seed 0) whether it runs at load time or later
    assert [r.summary for r in later] == [r.summary for r in asked]
    # point estimates and spread do not depend on the bootstrap
    assert [(r.summary.avg, r.summary.gap, r.summary.buckets[0].std) for r in plain] == [
        (r.summary.avg, r.summary.gap, r.summary.buckets[0].std) for r in asked
    ]
    aggregates_only = load_results(DATA / "score" / "mistral-like_document.json")
    assert with_ci(aggregates_only[0]) is aggregates_only[0]


def test_results_frame_has_one_row_per_model_task_length_bucket() -> None:
    results = load_results(EMBEDDED)
    frame = results_frame(results, n_boot=200)
    assert list(frame.columns) == list(FRAME_COLUMNS)
    n_rows = sum(len(r.summary.buckets) for r in results)
    assert len(frame) == n_rows == 3 * 8
    assert not frame.duplicated(["model", "task", "context_length", "bucket"]).any()
    assert set(frame["task"]) == {"document", "code", "database"}
    document = frame[frame["task"] == "document"].sort_values("bucket")
    (doc_result,) = [with_ci(r, n_boot=200) for r in results if r.task == "document"]
    assert document["mean"].tolist() == [b.mean for b in doc_result.summary.buckets]
    assert document["ci_low"].tolist() == [b.ci[0] for b in doc_result.summary.buckets]
    assert document["n"].tolist() == [b.n for b in doc_result.summary.buckets]
    assert set(document["avg"]) == {doc_result.summary.avg} and set(document["gap"]) == {
        doc_result.summary.gap
    }
    assert (frame["ci_low"] <= frame["mean"]).all() and (frame["mean"] <= frame["ci_high"]).all()
    assert frame["position"].between(0, 100).all()


def test_results_frame_keeps_each_context_length_apart() -> None:
    frame = results_frame(load_results([LENGTHS, SYNTHETIC]), n_boot=20)
    u_doc = frame[(frame["model"] == "u-model") & (frame["task"] == "document")]
    assert sorted(set(u_doc["context_length"])) == [1024, 2048, 4096]
    assert len(u_doc) == 3 * 8
    # the per-length avg differs (the dip deepens with the length): rows are not pooled
    assert u_doc.groupby("context_length")["avg"].first().is_monotonic_decreasing


def test_the_notebook_cells_work_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    from val_probing.plots import plot_position_curves

    monkeypatch.chdir(DATA.parent.parent)  # the notebook moves to the repository root first
    frame = results_frame(load_results("tests/data/runs/embedded"))
    assert len(frame) == 24
    fig = plot_position_curves(load_results("tests/data/runs/embedded"))
    assert fig._repr_png_().startswith(b"\x89PNG")  # type: ignore[attr-defined]
