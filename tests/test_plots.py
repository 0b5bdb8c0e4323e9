"""Plots read back as data (line y values, error bars, heatmap arrays), never as pixels."""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from val_probing.plots import (
    PALETTE,
    TASK_TITLES,
    PlotError,
    bucket_centres,
    heatmap_matrix,
    model_colors,
    plot_depth_heatmap,
    plot_position_curves,
    save_figure,
)
from val_probing.results import TaskResult, load_results

DATA = Path(__file__).resolve().parent / "data"
SYNTHETIC = DATA / "runs" / "synthetic"
LENGTHS = DATA / "runs" / "lengths"


@pytest.fixture(scope="module")
def results() -> list[TaskResult]:
    return load_results([SYNTHETIC, LENGTHS], n_boot=20)


def _line(ax, gid: str):
    (line,) = [ln for ln in ax.get_lines() if ln.get_gid() == gid]
    return line


def _errorbar_halfwidths(ax, label: str) -> np.ndarray:
    """Half-heights of the vertical error bars of the curve labelled ``label``."""
    (container,) = [c for c in ax.containers if c.get_label() == label]
    (bars,) = container.lines[2]
    return np.array([(seg[1, 1] - seg[0, 1]) / 2 for seg in bars.get_segments()])


def test_position_curves_show_the_summary_numbers(results: list[TaskResult]) -> None:
    backend = matplotlib.get_backend()
    fig = plot_position_curves(results)
    assert matplotlib.get_backend() == backend  # no global backend switch
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == [TASK_TITLES[t] for t in ("document", "code", "database")]
    for ax, task in zip(axes, ("document", "code", "database"), strict=True):
        for model in ("flat-model", "u-model"):
            # the longest context length is drawn (the lengths run also has 1K and 2K for u-model)
            (r,) = [r for r in results if r.model == model and r.task == task and r.context_length == 4096]
            line = _line(ax, f"curve:{model}")
            np.testing.assert_allclose(line.get_ydata(), [b.mean for b in r.summary.buckets])
            np.testing.assert_allclose(line.get_xdata(), bucket_centres(8))
            np.testing.assert_allclose(_errorbar_halfwidths(ax, model), [b.std for b in r.summary.buckets])
            avg = _line(ax, f"avg:{model}")
            assert avg.get_linestyle() == "--"
            np.testing.assert_allclose(avg.get_ydata(), [r.summary.avg] * 2)


def test_context_length_choice_and_no_average(results: list[TaskResult]) -> None:
    fig = plot_position_curves(results, context_length=1024, show_average=False, tasks=("document",))
    (ax,) = fig.axes
    (r,) = [r for r in results if r.model == "u-model" and r.task == "document" and r.context_length == 1024]
    np.testing.assert_allclose(_line(ax, "curve:u-model").get_ydata(), [b.mean for b in r.summary.buckets])
    assert not [ln for ln in ax.get_lines() if str(ln.get_gid()).startswith("avg:")]
    assert not [ln for ln in ax.get_lines() if ln.get_gid() == "curve:flat-model"]  # no 1K result


def test_colours_are_stable_per_model_across_figures(results: list[TaskResult]) -> None:
    full = plot_position_curves(results).axes[0]
    short = plot_position_curves(results, context_length=1024).axes[0]  # u-model only
    assert _line(full, "curve:u-model").get_color() == _line(short, "curve:u-model").get_color()
    assert _line(full, "curve:u-model").get_color() != _line(full, "curve:flat-model").get_color()
    colours = model_colors(["b", "a", "c"])
    assert colours == model_colors(["c", "b", "a"]) == dict(zip("abc", PALETTE[:3], strict=True))
    assert len(set(model_colors([f"m{i}" for i in range(10)]).values())) == 10
    # colours computed once and passed in stay put when a figure shows fewer models
    fixed = model_colors(["flat-model", "u-model", "zeta"])
    alone = plot_position_curves(
        [r for r in results if r.model == "zeta" or r.model == "u-model"], colors=fixed
    )
    assert _line(alone.axes[0], "curve:u-model").get_color() == fixed["u-model"]
    pinned = plot_position_curves(results, colors={"u-model": "#000000"}).axes[0]
    assert _line(pinned, "curve:u-model").get_color() == "#000000"


def test_aggregates_only_results_have_no_error_bars(tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(SYNTHETIC, run)
    for f in run.rglob("samples_*.jsonl"):
        f.unlink()
    loaded = load_results([run])
    ax = plot_position_curves(loaded).axes[0]
    (container,) = [c for c in ax.containers if c.get_label().startswith("u-model")]
    assert "no error bars" in container.get_label()
    assert container.has_yerr is False
    (r,) = [r for r in loaded if r.model == "u-model" and r.task == "document"]
    np.testing.assert_allclose(container.lines[0].get_ydata(), [b.mean for b in r.summary.buckets])


def test_missing_task_gets_an_empty_panel(
    results: list[TaskResult], caplog: pytest.LogCaptureFixture
) -> None:
    only_doc = [r for r in results if r.task == "document"]
    with caplog.at_level(logging.WARNING):
        fig = plot_position_curves(only_doc)
    assert [t.get_text() for t in fig.axes[1].texts] == ["no results"]
    assert "no results for task code" in caplog.text
    with pytest.raises(PlotError):
        plot_position_curves([])


def test_all_runs_are_told_apart(results: list[TaskResult]) -> None:
    every = load_results([SYNTHETIC, LENGTHS], latest_only=False, n_boot=20)
    ax = plot_position_curves(every, tasks=("document",)).axes[0]
    gids = sorted(str(ln.get_gid()) for ln in ax.get_lines() if str(ln.get_gid()).startswith("curve:"))
    assert gids == [
        "curve:flat-model",
        "curve:u-model [2026-01-01T00-00-00.000001]",
        "curve:u-model [2026-01-02T03-04-05.678901]",
    ]


def test_heatmap_holds_the_bucket_means_per_length(results: list[TaskResult]) -> None:
    fig = plot_depth_heatmap(results, "document")
    image = fig.axes[0].images[0]
    lengths, matrix = heatmap_matrix(results, "u-model", "document")
    assert lengths == [1024, 2048, 4096]
    for row, length in zip(np.asarray(image.get_array()), lengths, strict=True):
        (r,) = [
            r for r in results if r.model == "u-model" and r.task == "document" and r.context_length == length
        ]
        np.testing.assert_allclose(row, [b.mean for b in r.summary.buckets])
    np.testing.assert_allclose(np.asarray(image.get_array()), matrix)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["1K", "2K", "4K"]
    with pytest.raises(PlotError, match="two or more context lengths"):
        plot_depth_heatmap(results, "code")


def test_save_figure_writes_png_and_svg(results: list[TaskResult], tmp_path: Path) -> None:
    written = save_figure(plot_position_curves(results), tmp_path / "sub" / "curves")
    assert [p.name for p in written] == ["curves.png", "curves.svg"]
    assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in written[1].read_text()[:500]
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["curves.png", "curves.svg"]
    with pytest.raises(PlotError, match="format"):
        save_figure(plot_position_curves(results), tmp_path / "x", formats=("gif",))


def test_a_missing_bucket_breaks_the_line(results: list[TaskResult]) -> None:
    from dataclasses import replace

    from val_probing.buckets import summarize

    full = next(r for r in results if r.model == "flat-model" and r.task == "document")
    kept = tuple(s for s in full.samples if s.position_id not in (4, 5))  # bucket 2 of 8
    partial = replace(full, samples=kept, summary=summarize(list(kept), n_buckets=8, n_boot=20))
    ax = plot_position_curves([partial], tasks=("document",)).axes[0]
    y = _line(ax, "curve:flat-model").get_ydata()
    assert np.isnan(y[2])
    expected = [b.mean for b in partial.summary.buckets]
    np.testing.assert_allclose(np.delete(y, 2), expected)


def test_figures_display_in_jupyter_without_a_magic(results: list[TaskResult]) -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    fig = plot_position_curves(results)
    png = fig._repr_png_()  # type: ignore[attr-defined]  # what IPython shows for a cell's value
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert plt.get_fignums() == before  # pyplot never saw it: no second copy shown at the cell's end


def test_position_curves_draw_on_the_axes_given(results: list[TaskResult]) -> None:
    from matplotlib.figure import Figure

    fig = Figure()
    left, right = fig.subplots(1, 2)
    out = plot_position_curves(results, tasks=["code", "database"], ax=[left, right])
    assert out is fig and len(fig.axes) == 2
    assert left.get_title() == TASK_TITLES["code"] and right.get_title() == TASK_TITLES["database"]
    (r,) = [r for r in results if r.model == "u-model" and r.task == "code" and r.context_length == 4096]
    np.testing.assert_allclose(_line(left, "curve:u-model").get_ydata(), [b.mean for b in r.summary.buckets])
    single = Figure().subplots()
    assert plot_position_curves(results, tasks=["document"], ax=single) is single.figure
    with pytest.raises(PlotError, match="needs 3 matplotlib Axes"):
        plot_position_curves(results, ax=single)


def test_heatmap_marks_the_effective_length_and_takes_ax(results: list[TaskResult]) -> None:
    from matplotlib.figure import Figure

    from val_probing.results.effective_length import effective_lengths

    found = effective_lengths(results, min_avg=60, max_gap=30)
    (u_doc,) = [e for e in found if (e.model, e.task) == ("u-model", "document")]
    assert u_doc.length == 2048
    fig = Figure()
    ax = fig.subplots()
    assert plot_depth_heatmap(results, "document", effective=found, ax=ax) is fig
    (line,) = [ln for ln in ax.get_lines() if ln.get_gid() == "effective:u-model"]
    assert line.get_ydata()[0] == 1.5  # under the 2K row (rows 1K, 2K, 4K from the top)
    assert "effective length: 2K" in ax.get_title()
