"""Figures of loaded VAL results: the paper's position curves and a depth x context-length heatmap.

Every function takes :class:`~val_probing.results.TaskResult` records (``load_results``), never
paths, and returns a ``matplotlib.figure.Figure``; :func:`save_figure` does the I/O. Figures are
built on the Agg canvas without pyplot, so nothing global changes (no backend switch at import,
no figure kept alive by pyplot, safe in threads, CI and notebooks). They display in Jupyter as a
PNG with no ``%matplotlib inline`` (the figure class has a ``_repr_png_``), once, as a cell's
value. To compose figures, pass ``ax=``: the function draws on those axes (one per panel) and
returns their figure.

Position curves (the paper's Figure 1 layout): one panel per task, x = relative position of the
needle in the context (the centre of each bucket, in % of the context), y = score (x100), one
line per model with error bars = ``BucketStat.std``, the population std across sets (contexts)
of the per-set bucket means, as in the authors' plot.py. It is a spread between contexts, not a
confidence interval. Results loaded without samples have no std: they are drawn without error
bars and the legend says so. An optional dashed line marks each model's average.

Colours: :func:`model_colors` gives the curve labels (model names) the ``tab10`` colours in sorted
order (the 11th label starts over). The figure functions colour by ALL the results they are given,
before any selection, so figures drawn from one ``load_results`` call agree (the curves at each
context length, with or without some tasks), and the same set of models always gets the same
colours, on any machine. To keep colours fixed across different sets of models, compute
``model_colors(...)`` once and pass it as ``colors=`` (explicit entries win).
"""

from __future__ import annotations

import functools
import io
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from val_probing.errors import ValProbingError
from val_probing.files import atomic_path
from val_probing.probes import get_family
from val_probing.records import FAMILIES
from val_probing.results import TaskResult
from val_probing.results.effective_length import EffectiveLength
from val_probing.results.frame import check_results
from val_probing.results.select import curve_labels, length_label, run_key, select_curves

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

TASK_TITLES: dict[str, str] = {family: get_family(family).TITLE for family in FAMILIES}  # the paper's names
PALETTE: tuple[str, ...] = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)  # matplotlib's tab10, spelled out so the mapping never depends on rcParams
FORMATS: tuple[str, ...] = ("png", "svg")


class PlotError(ValProbingError, ValueError):
    """Results that cannot be drawn as asked."""


# ---------------------------------------------------------------- pure helpers


def model_colors(labels: Iterable[str], palette: Sequence[str] = PALETTE) -> dict[str, str]:
    """A colour per label: the palette in sorted label order (deterministic, no hash, no state)."""
    return {label: palette[i % len(palette)] for i, label in enumerate(sorted(set(labels)))}


def bucket_centres(n_buckets: int) -> np.ndarray:
    """x of each bucket: its centre as a percentage of the context (0 = start, 100 = end)."""
    return (np.arange(n_buckets) + 0.5) / n_buckets * 100


def curve_arrays(result: TaskResult) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, mean, std) over ALL buckets of the result; missing buckets and unknown std are NaN."""
    n = result.summary.n_buckets
    mean = np.full(n, np.nan)
    std = np.full(n, np.nan)
    for b in result.summary.buckets:
        mean[b.index] = b.mean
        std[b.index] = b.std
    return bucket_centres(n), mean, std


# ---------------------------------------------------------------- figures


@functools.cache
def figure_class() -> type[Figure]:
    """``matplotlib.figure.Figure`` with a ``_repr_png_``: Jupyter shows it without a magic."""
    from matplotlib.figure import Figure

    class NotebookFigure(Figure):
        """A Figure that IPython displays as a PNG (its own canvas; pyplot is never involved)."""

        def _repr_png_(self) -> bytes:
            buffer = io.BytesIO()
            self.savefig(buffer, format="png", dpi=100)
            return buffer.getvalue()

    NotebookFigure.__module__ = __name__
    return NotebookFigure


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = figure_class()(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # the Agg canvas, chosen here and only for this figure
    return fig


def _given_axes(ax: Axes | Sequence[Axes], n: int, what: str) -> tuple[Figure, list[Axes]]:
    """The figure and axes to draw on when the caller passes ``ax=`` (``n`` panels expected)."""
    from matplotlib.axes import Axes

    axes = [ax] if isinstance(ax, Axes) else list(np.ravel(np.asarray(ax, dtype=object)))
    if len(axes) != n or not all(isinstance(a, Axes) for a in axes):
        raise PlotError(f"ax: {what} needs {n} matplotlib Axes (one per panel), got {len(axes)}")
    # the axes' own figure, as given (a SubFigure when the caller drew its axes on one)
    return cast("Figure", axes[0].figure), axes


def _draw_curve(ax: Axes, result: TaskResult, label: str, color: str, show_average: bool) -> None:
    x, mean, std = curve_arrays(result)
    has_spread = result.has_spread
    container = ax.errorbar(
        x,
        mean,
        yerr=std if has_spread else None,
        color=color,
        marker="o",
        markersize=3.5,
        linewidth=1.6,
        capsize=2.5,
        elinewidth=0.9,
        label=label if has_spread else f"{label} (no error bars: aggregates only)",
    )
    container.lines[0].set_gid(f"curve:{label}")
    if show_average:
        ax.axhline(result.summary.avg, color=color, linestyle="--", linewidth=1.0, gid=f"avg:{label}")


def _check_task(task: object, argument: str = "task") -> str:
    if not isinstance(task, str):
        known = ", ".join(FAMILIES)
        raise TypeError(f"{argument}: expected a task name ({known}), got {type(task).__name__}")
    if task not in FAMILIES:
        raise ValueError(f"{argument}: unknown task {task!r}; known: {', '.join(FAMILIES)}")
    return task


def _check_tasks(tasks: object) -> list[str]:
    """``tasks`` as a list of known task names (a str is one task, never its letters)."""
    names = [tasks] if isinstance(tasks, str) else tasks
    if not isinstance(names, Iterable):
        raise TypeError(f"tasks: expected task names ({', '.join(FAMILIES)}), got {type(tasks).__name__}")
    chosen = [_check_task(name, "tasks") for name in names]
    if not chosen:
        raise ValueError(f"tasks: no task given; known: {', '.join(FAMILIES)}")
    return chosen


def plot_position_curves(
    results: Sequence[TaskResult],
    *,
    context_length: int | None = None,
    show_average: bool = True,
    colors: Mapping[str, str] | None = None,
    tasks: str | Sequence[str] = FAMILIES,
    ax: Axes | Sequence[Axes] | None = None,
) -> Figure:
    """The paper's Figure 1: one panel per task (1 x 3), one line per model, error bars across sets.

    Each curve's data line has gid ``"curve:<label>"`` and its average line ``"avg:<label>"``.
    A task without results gets an empty panel saying so. ``ax``: draw on these axes, one per
    task in ``tasks`` (a single Axes with ``tasks="code"``), and return their figure. ``tasks``: task
    names (a str is one task); an unknown name is a ``ValueError`` naming the known ones.
    """
    results = check_results(results)
    tasks = _check_tasks(tasks)
    if not results:
        raise PlotError("no results to plot")
    labels = curve_labels(results)
    palette = dict(model_colors(labels.values()))
    chosen = select_curves(results, context_length)
    if not chosen:
        raise PlotError(f"no result at context length {context_length}")
    palette.update(colors or {})
    if ax is None:
        fig = _new_figure(5.2 * len(tasks), 4.2)
        axes = list(fig.subplots(1, len(tasks), squeeze=False)[0])
    else:
        fig, axes = _given_axes(ax, len(tasks), f"{len(tasks)} task(s)")
    for panel, task in zip(axes, tasks, strict=True):
        panel.set_title(TASK_TITLES.get(task, task), fontsize=11)
        panel.set_xlabel("Relative position in the context (%)")
        panel.set_xlim(0, 100)
        panel.set_ylim(0, 105)
        panel.grid(True, alpha=0.3)
        drawn = [r for r in chosen if r.task == task]
        if not drawn:
            panel.text(
                0.5, 0.5, "no results", transform=panel.transAxes, ha="center", va="center", color="0.4"
            )
            log.warning("no results for task %s: its panel is empty", task)
            continue
        for r in sorted(drawn, key=lambda r: labels[run_key(r)]):
            label = labels[run_key(r)]
            _draw_curve(panel, r, label, palette[label], show_average)
        panel.legend(fontsize=8, loc="best")
    axes[0].set_ylabel("Score (x100)")
    return fig


def heatmap_matrix(results: Sequence[TaskResult], model: str, task: str) -> tuple[list[int], np.ndarray]:
    """(context lengths ascending, lengths x buckets matrix of bucket means; NaN where missing)."""
    rows = sorted(
        (r for r in results if r.model == model and r.task == task and r.context_length is not None),
        key=lambda r: r.context_length or 0,
    )
    if not rows:
        raise PlotError(f"{model} {task}: no result with a known context length")
    lengths = [r.context_length for r in rows if r.context_length is not None]
    if len(set(lengths)) != len(lengths):
        raise PlotError(f"{model} {task}: several runs at one context length; load with latest_only=True")
    n_buckets = {r.summary.n_buckets for r in rows}
    if len(n_buckets) != 1:
        raise PlotError(f"{model} {task}: bucket counts differ between lengths ({sorted(n_buckets)})")
    return lengths, np.vstack([curve_arrays(r)[1] for r in rows])


def heatmap_models(results: Sequence[TaskResult], task: str) -> list[str]:
    """Models with results at two or more context lengths for ``task``."""
    lengths: dict[str, set[int]] = defaultdict(set)
    for r in results:
        if r.task == task and r.context_length is not None:
            lengths[r.model].add(r.context_length)
    return sorted(m for m, seen in lengths.items() if len(seen) > 1)


def plot_depth_heatmap(
    results: Sequence[TaskResult],
    task: str,
    *,
    annotate: bool = True,
    effective: Sequence[EffectiveLength] = (),
    ax: Axes | Sequence[Axes] | None = None,
) -> Figure:
    """Depth (bucket) x context length, one panel per model that has several lengths for ``task``.

    Cell = bucket mean (x100, colour scale fixed to 0..100). ``ax.images[0].get_array()`` is the
    :func:`heatmap_matrix` of the panel's model (rows = lengths ascending, top to bottom).
    ``effective`` (:func:`val_probing.results.effective_length.effective_lengths`): each panel's
    model gets a line under its effective-length row (gid ``"effective:<model>"``) and the length in
    its title.
    ``ax``: draw on these axes, one per model (:func:`heatmap_models`), and return their figure.
    """
    results, task = check_results(results), _check_task(task)
    model_names = heatmap_models(results, task)
    if not model_names:
        raise PlotError(f"{task}: no model has results at two or more context lengths")
    if ax is None:
        fig = _new_figure(max(5.0, 4.6 * len(model_names)), 3.6)
        axes = list(fig.subplots(1, len(model_names), squeeze=False)[0])
    else:
        fig, axes = _given_axes(ax, len(model_names), f"{task}: {len(model_names)} model(s)")
    found = {(e.model, e.task): e for e in effective}
    image = None
    for panel, model in zip(axes, model_names, strict=True):
        lengths, matrix = heatmap_matrix(results, model, task)
        n_buckets = matrix.shape[1]
        image = panel.imshow(
            matrix,
            aspect="auto",
            cmap="RdYlGn",
            vmin=0,
            vmax=100,
            interpolation="nearest",
            extent=(0, 100, len(lengths) - 0.5, -0.5),
        )
        image.set_gid(f"heatmap:{model}")
        panel.set_yticks(range(len(lengths)), [length_label(x) for x in lengths])
        panel.set_xlabel("Relative position in the context (%)")
        panel.set_ylabel("Context length (tokens)")
        title = f"{model}: {TASK_TITLES.get(task, task)}"
        eff = found.get((model, task))
        if eff is not None:
            title += f"\neffective length: {eff.text()}"
            if eff.length is not None:
                row = lengths.index(eff.length)
                panel.axhline(
                    row + 0.5, color="black", linewidth=2.0, linestyle="--", gid=f"effective:{model}"
                )
        panel.set_title(title, fontsize=10)
        if annotate and matrix.size <= 400:
            centres = bucket_centres(n_buckets)
            for i, j in np.ndindex(matrix.shape):
                if not math.isnan(matrix[i, j]):
                    panel.text(centres[j], i, f"{matrix[i, j]:.0f}", ha="center", va="center", fontsize=7)
    assert image is not None
    fig.colorbar(image, ax=list(axes), label="Score (x100)", shrink=0.9)
    return fig


def save_figure(fig: Figure, stem: Path, formats: Sequence[str] = FORMATS, *, dpi: int = 150) -> list[Path]:
    """Write ``stem.<fmt>`` for each format (png, svg, pdf), each via a temporary file and a rename."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for fmt in formats:
        if fmt not in {"png", "svg", "pdf"}:
            raise PlotError(f"format: {fmt!r} is not png, svg or pdf")
        final = stem.with_name(f"{stem.name}.{fmt}")
        with atomic_path(final) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi)
        written.append(final)
    return written
