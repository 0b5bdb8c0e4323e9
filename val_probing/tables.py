"""The paper's Table 1 from loaded results: per task Avg and Gap (lower is better), and "All".

* ``Avg`` = mean of the bucket scores (x100), ``Gap`` = max - min of the bucket scores: see
  :mod:`val_probing.buckets`. A flat curve has a small gap; "lost in the middle" has a large one.
* ``All`` = the plain mean over the three tasks of Avg and of Gap, as in the paper. It is left
  empty for a model that lacks a task (a mean over fewer tasks would not be comparable).
* One row per curve label (the model; with ``latest_only=False`` also the run), at the context
  length the curves show: ``context_length`` when given, else each task's longest
  (:func:`val_probing.results.select.select_curves`).

Effective context lengths (:mod:`val_probing.results.effective_length`) as a table:
:func:`effective_markdown`.

The functions are pure; ``val-probing report`` prints the Markdown and writes the CSV.
``val-probing score`` prints :func:`score_table` (one task's buckets, from :mod:`val_probing.score`).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from val_probing.buckets import Mode, bucket_of, is_last_in_bucket
from val_probing.probes import get_family
from val_probing.records import FAMILIES
from val_probing.results import TaskResult
from val_probing.results.effective_length import EffectiveLength
from val_probing.results.select import curve_labels, length_label, run_key, select_curves
from val_probing.score import Scored
from val_probing.typed import is_number

TASK_NAMES: dict[str, str] = {family: get_family(family).LABEL for family in FAMILIES}
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
    results = [r for r in results if not r.closed_book]  # floors, not rows
    labels = curve_labels(results)
    chosen = select_curves(results, context_length)
    cells: dict[str, dict[str, Cell]] = {}
    for r in chosen:
        label = labels[run_key(r)]
        cells.setdefault(label, {})[r.task] = Cell(
            avg=r.summary.avg,
            gap=r.summary.gap,
            avg_ci=r.summary.avg_ci,
            n_samples=r.summary.n_samples,
            context_length=r.context_length,
        )
    return [Row(label, MappingProxyType(cells[label])) for label in sorted(cells)]


def fmt_number(value: float | None, digits: int = 1) -> str:
    """A number with ``digits`` decimals; :data:`MISSING` for None (not there) and NaN (not known)."""
    return MISSING if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|")


def markdown_table(
    header: Sequence[str], rows: Iterable[Sequence[str]], *, right: Collection[int] = ()
) -> list[str]:
    """The lines of a GitHub Markdown table; the columns in ``right`` are right-aligned. An empty
    cell is one blank (``| |``)."""

    def line(cells: Sequence[str]) -> str:
        return "|" + "|".join(f" {_escape(c)} " if c else " " for c in cells) + "|"

    rule = "|" + "|".join("---:" if i in right else "---" for i in range(len(header))) + "|"
    return [line(header), rule, *(line(cells) for cells in rows)]


def _length_text(lengths: tuple[int, ...]) -> str:
    if not lengths:
        return MISSING
    return "/".join(length_label(x) for x in lengths)


def effective_markdown(found: Sequence[EffectiveLength], *, digits: int = 1) -> str:
    """A Markdown table: per model and task, the effective length with its 95% bounds, RULER's and
    NoLiMa's beside it, and every tested length's avg / CI gap (a check mark where it passes)."""
    if not found:
        return ""
    first = found[0]
    body = []
    for e in found:
        tested = ", ".join(
            f"{length_label(c.length)} {c.avg:.{digits}f}/{c.ci_gap:.{digits}f}{' ✓' if c.passes else ''}"
            for c in e.checks
        )
        note = "" if e.uses_ci else " (no CIs: plain gap)"
        peers = [p.text() for p in e.peers]
        body.append([e.model, TASK_NAMES[e.task], e.text(), e.interval_text(), *peers, f"{tested}{note}"])
    peer_names = [f"{p.name} ({p.rule})" for p in first.peers]
    title = (
        f"Effective context length: longest length up to which every tested length has "
        f"avg >= {first.min_avg:g} and CI gap <= {first.max_gap:g}; 95%: the same with every CI "
        "inside (low) or reaching (high) the thresholds. Peers' definitions beside it, point "
        "[95% bounds] (docs/plots.md)"
    )
    header = ["Model", "Task", "Effective", "95% bounds", *peer_names, "Tested: avg / CI gap"]
    table = markdown_table(header, body, right={2})
    return "\n".join([title, "", *table]) + "\n"


# Task metadata the adapter writes (adapter/task.py): the probe set's constant-answer floor, the score
# (x100) of giving one fixed answer to every question, as {"score": ..., "answer": ...}.
CONSTANT_FLOOR = "constant_floor"


def constant_floor_of(metadata: Mapping[str, Any]) -> float | None:
    """The constant-answer floor (x100) a task's metadata records, or None where it records none."""
    record = metadata.get(CONSTANT_FLOOR)
    value = record.get("score") if isinstance(record, Mapping) else None
    if is_number(value) and math.isfinite(value):
        return float(value)
    return None


def closed_book_floors(results: Sequence[TaskResult]) -> dict[tuple[str, str], float]:
    """Per (model, task): the mean avg of its closed-book runs (``TaskResult.closed_book``)."""
    found: dict[tuple[str, str], list[float]] = {}
    for r in results:
        if r.closed_book:
            found.setdefault((r.model, r.task), []).append(r.summary.avg)
    return {key: sum(v) / len(v) for key, v in found.items()}


def constant_floors(results: Sequence[TaskResult]) -> dict[tuple[str, str], float]:
    """Per (model, task): the constant-answer floor its probe set records (:func:`constant_floor_of`),
    where it does."""
    found: dict[tuple[str, str], float] = {}
    for r in results:
        value = constant_floor_of(r.metadata)
        if value is not None:
            found[(r.model, r.task)] = value
    return found


def floors(results: Sequence[TaskResult]) -> dict[tuple[str, str], float]:
    """Per (model, task): the floor a score must beat to show reading: the higher of the
    closed-book and the constant-answer floor, where either is known."""
    out = dict(constant_floors(results))
    for key, value in closed_book_floors(results).items():
        out[key] = max(value, out.get(key, value))
    return out


def to_markdown(
    rows: Sequence[Row], *, digits: int = 1, floors: Mapping[tuple[str, str], float] | None = None
) -> str:
    """A GitHub Markdown table in Table 1's form (Avg and Gap↓ per task, then All). With
    ``floors`` (:func:`floors`, keyed by row label and task), an "above floor" column per task:
    Avg minus the floor, what reading the context adds."""
    header = ["Model", "Context"]
    for task in FAMILIES:
        header += [f"{TASK_NAMES[task]} Avg", f"{TASK_NAMES[task]} Gap↓"]
        if floors:
            header.append(f"{TASK_NAMES[task]} above floor")
    header += ["All Avg", "All Gap↓"]
    body = []
    for row in rows:
        cells = [row.label, _length_text(row.context_lengths)]
        for task in FAMILIES:
            cell = row.cells.get(task)
            cells += [
                fmt_number(cell.avg if cell else None, digits),
                fmt_number(cell.gap if cell else None, digits),
            ]
            if floors:
                floor = floors.get((row.label, task))
                above = None if cell is None or floor is None else cell.avg - floor
                cells.append(fmt_number(above, digits))
        cells += [fmt_number(row.all_avg, digits), fmt_number(row.all_gap, digits)]
        body.append(cells)
    return "\n".join(markdown_table(header, body, right=range(2, len(header)))) + "\n"


def curve_markdown(results: Sequence[TaskResult], *, digits: int = 1) -> str:
    """One row per result: task, avg, its 95% CI, gap and every bucket mean (x100), then ``all``,
    the mean over the rows of avg and gap (when there are several). The demo's summary table."""
    if not results:
        raise ValueError("results: none to tabulate")
    n_buckets = max(len(r.summary.buckets) for r in results)
    header = ["task", "avg", "95% CI", "gap", *(f"b{i:02d}" for i in range(n_buckets))]
    body = []
    for r in results:
        by_index = {b.index: b.mean for b in r.summary.buckets}
        lo, hi = r.summary.avg_ci
        body.append(
            [
                f"val_{r.task}",
                fmt_number(r.summary.avg, digits),
                f"{fmt_number(lo, digits)}-{fmt_number(hi, digits)}",
                fmt_number(r.summary.gap, digits),
                *(fmt_number(by_index.get(i), digits) for i in range(n_buckets)),
            ]
        )
    if len(results) > 1:
        mean_avg = sum(r.summary.avg for r in results) / len(results)
        mean_gap = sum(r.summary.gap for r in results) / len(results)
        body.append(
            ["all", fmt_number(mean_avg, digits), "", fmt_number(mean_gap, digits), *[""] * n_buckets]
        )
    return "\n".join(markdown_table(header, body)) + "\n"


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


# --------------------------------------------------------------------------------------------------
# val-probing score


def _positions(index: int, n_items: int | None, n_buckets: int, mode: Mode) -> str:
    if n_items is None:
        return "-"
    members = [p for p in range(n_items) if bucket_of(p, n_items, n_buckets) == index]
    if mode == "reference":
        members = [p for p in members if not is_last_in_bucket(p, n_items, n_buckets)]
    return f"{members[0]}-{members[-1]}" if members else "-"


def score_table(result: Scored) -> str:
    """The readable table ``val-probing score`` prints (scores x100)."""
    s = result.summary
    lines = [
        f"{result.task}: {result.n_rows} rows, {result.n_skipped} skipped ({result.skip_source}), "
        f"{s.n_samples} scored in {s.n_sets} sets; mode {s.mode}, {s.n_buckets} buckets; scores x100",
        f"{'bucket':>6}  {'positions':>9}  {'mean':>6}  {'std':>5}  {'95% CI':>14}  {'n':>5}",
    ]
    for b in s.buckets:
        ci = f"[{b.ci[0]:5.1f}, {b.ci[1]:5.1f}]"
        positions = _positions(b.index, result.n_items, s.n_buckets, s.mode)
        lines.append(f"{b.index:>6}  {positions:>9}  {b.mean:6.1f}  {b.std:5.1f}  {ci:>14}  {b.n:>5}")
    if s.missing_buckets:
        lines.append(
            f"no samples in buckets {', '.join(map(str, s.missing_buckets))} (left out of avg and gap)"
        )
    lines.append(
        f"avg {s.avg:.1f}  95% CI [{s.avg_ci[0]:.1f}, {s.avg_ci[1]:.1f}]   gap (max-min) {s.gap:.1f}"
    )
    for name, d in result.diagnostics.items():
        lines.append(
            f"diagnostic {name}: avg {d.avg:.1f} [{d.avg_ci[0]:.1f}, {d.avg_ci[1]:.1f}]  gap {d.gap:.1f}"
        )
    return "\n".join(lines)
