"""The paper's Table 1 from loaded results: per task Avg and Gap (lower is better), and "All".

* ``Avg`` = mean of the bucket scores (x100), ``Gap`` = max - min of the bucket scores: see
  :mod:`val_probing.buckets`. A flat curve has a small gap; "lost in the middle" has a large one.
* ``All`` = the plain mean over the three tasks of Avg and of Gap, as in the paper. It is left
  empty for a model that lacks a task (a mean over fewer tasks would not be comparable).
* One row per curve label (the model; with ``latest_only=False`` also the run), at the context
  length the curves show: ``context_length`` when given, else each task's longest
  (:func:`val_probing.plots.select_curves`).

The functions are pure; ``val-probing report`` prints the Markdown and writes the CSV.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from val_probing.plots import curve_labels, select_curves
from val_probing.records import FAMILIES
from val_probing.results import TaskResult

TASK_NAMES: dict[str, str] = {"document": "Document", "code": "Code", "database": "Database"}
MISSING = "–"


@dataclass(frozen=True, slots=True)
class Cell:
    """One task of one row: the headline numbers (x100) and where they come from."""

    avg: float
    gap: float
    avg_ci: tuple[float, float]
    n_samples: int
    context_length: int | None


@dataclass(frozen=True, slots=True)
class Row:
    """One model (or run) in the table; ``cells`` maps task -> Cell for the tasks it has."""

    label: str
    cells: Mapping[str, Cell] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def complete(self) -> bool:
        return all(task in self.cells for task in FAMILIES)

    @property
    def all_avg(self) -> float | None:
        return sum(self.cells[t].avg for t in FAMILIES) / len(FAMILIES) if self.complete else None

    @property
    def all_gap(self) -> float | None:
        return sum(self.cells[t].gap for t in FAMILIES) / len(FAMILIES) if self.complete else None

    @property
    def context_lengths(self) -> tuple[int, ...]:
        return tuple(sorted({c.context_length for c in self.cells.values() if c.context_length is not None}))


def table_rows(results: Sequence[TaskResult], *, context_length: int | None = None) -> list[Row]:
    """Rows sorted by label; one cell per task the row has."""
    labels = curve_labels(results)
    chosen = select_curves(results, context_length)
    cells: dict[str, dict[str, Cell]] = {}
    for r in chosen:
        label = labels[id(r)]
        cells.setdefault(label, {})[r.task] = Cell(
            avg=r.summary.avg,
            gap=r.summary.gap,
            avg_ci=r.summary.avg_ci,
            n_samples=r.summary.n_samples,
            context_length=r.context_length,
        )
    return [Row(label, MappingProxyType(cells[label])) for label in sorted(cells)]


def _fmt(value: float | None, digits: int) -> str:
    return MISSING if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _length_text(lengths: tuple[int, ...]) -> str:
    if not lengths:
        return MISSING
    return "/".join(f"{x // 1024}K" if x % 1024 == 0 else str(x) for x in lengths)


def to_markdown(rows: Sequence[Row], *, digits: int = 1) -> str:
    """A GitHub Markdown table in Table 1's form (Avg and Gap↓ per task, then All)."""
    header = ["Model", "Context"]
    for task in FAMILIES:
        header += [f"{TASK_NAMES[task]} Avg", f"{TASK_NAMES[task]} Gap↓"]
    header += ["All Avg", "All Gap↓"]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|",
    ]
    for row in rows:
        cells = [row.label.replace("|", "\\|"), _length_text(row.context_lengths)]
        for task in FAMILIES:
            cell = row.cells.get(task)
            cells += [_fmt(cell.avg if cell else None, digits), _fmt(cell.gap if cell else None, digits)]
        cells += [_fmt(row.all_avg, digits), _fmt(row.all_gap, digits)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


CSV_COLUMNS: tuple[str, ...] = (
    "model",
    *(
        f"{task}_{name}"
        for task in FAMILIES
        for name in ("avg", "gap", "avg_ci_low", "avg_ci_high", "n_samples", "context_length")
    ),
    "all_avg",
    "all_gap",
)


def _csv_value(value: float | int | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.6f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def to_csv(rows: Sequence[Row]) -> str:
    """The same table as CSV (6 decimals); empty cells where a number is missing or unknown."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        values: list[str] = [row.label]
        for task in FAMILIES:
            cell = row.cells.get(task)
            if cell is None:
                values += [""] * 6
                continue
            values += [
                _csv_value(cell.avg),
                _csv_value(cell.gap),
                _csv_value(cell.avg_ci[0]),
                _csv_value(cell.avg_ci[1]),
                _csv_value(cell.n_samples if cell.n_samples else None),
                _csv_value(cell.context_length),
            ]
        values += [_csv_value(row.all_avg), _csv_value(row.all_gap)]
        writer.writerow(values)
    return buffer.getvalue()
