"""The paper's Table 1 from loaded results: per task Avg and Gap (lower is better), and "All".

* ``Avg`` = mean of the bucket scores (x100), ``Gap`` = max - min of the bucket scores: see
  :mod:`val_probing.buckets`. A flat curve has a small gap; "lost in the middle" has a large one.
* ``All`` = the plain mean over the three tasks of Avg and of Gap, as in the paper. It is left
  empty for a model that lacks a task (a mean over fewer tasks would not be comparable).
* One row per curve label (the model; with ``latest_only=False`` also the run), at the context
  length the curves show: ``context_length`` when given, else each task's longest
  (:func:`val_probing.results.select.select_curves`).

Effective context length (:func:`effective_lengths`, for a model run at two or more lengths): the
longest tested length ``L`` such that ``L`` and every shorter tested length pass, where a length
passes when its ``avg >= min_avg`` and its CI gap ``<= max_gap``. The CI gap is
``max(0, max_b ci_low_b - min_b ci_high_b)`` over the buckets' 95% bootstrap CIs: the part of the
max - min gap that the buckets' own uncertainty cannot explain (the plain gap is biased upward by
noise: a max minus a min of noisy means). Without samples (no CIs) the plain gap is used, and the
result says so. Defaults: ``min_avg`` = :data:`DEFAULT_MIN_AVG`, ``max_gap`` = :data:`DEFAULT_MAX_GAP`.

Its uncertainty (``EffectiveLength.low`` / ``high``): the same rule with each length's 95% bootstrap
intervals. A length passes *for certain* when its avg CI lies above ``min_avg`` and even the widest
gap its bucket CIs allow (``max ci_high - min ci_low``) is ``<= max_gap``; it *may* pass when its avg
CI reaches ``min_avg`` and the gap the CIs cannot explain (the CI gap) is ``<= max_gap``. ``low`` is
the longest length up to which every length passes for certain, ``high`` the longest up to which
every length may pass: the effective length is in ``[low, high]`` at 95% per length (not a joint
level over lengths). Without CIs both are None.

The peers' definitions, computed beside ours from the same avg (:class:`PeerLength`, same prefix
rule and the same 95% bounds from the avg CI):

* RULER (Hsieh et al. 2024): the longest length whose score stays above a fixed threshold, the
  short-context score of a reference model (Llama-2-7B at 4K: :data:`RULER_THRESHOLD` = 85.6);
* NoLiMa (Modarressi et al. 2025): the longest length whose score stays >= 85%
  (:data:`NOLIMA_FRACTION`) of the model's own short-context score (here: its avg at the shortest
  tested length).

Both papers name the longest length above the threshold; on curves that fall with length that is
the prefix rule used here (every shorter tested length above it too).

The functions are pure; ``val-probing report`` prints the Markdown and writes the CSV.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from val_probing.probes import get_family
from val_probing.records import FAMILIES
from val_probing.results import TaskResult, has_ci, keep_latest
from val_probing.results.select import curve_labels, length_label, run_key, select_curves

TASK_NAMES: dict[str, str] = {family: get_family(family).LABEL for family in FAMILIES}
MISSING = "–"
DEFAULT_MIN_AVG = 80.0
DEFAULT_MAX_GAP = 20.0
RULER_THRESHOLD = 85.6  # RULER's Table 3: Llama-2-7B's score at 4K
NOLIMA_FRACTION = 0.85  # NoLiMa: 85% of the model's base (short-context) score


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


# ---------------------------------------------------------------- effective context length


def ci_gap(result: TaskResult) -> float:
    """The gap the bucket CIs cannot explain: ``max(0, max ci_low - min ci_high)``; the plain gap
    when the CIs are not known (results without samples)."""
    if not has_ci(result):
        return result.summary.gap
    buckets = result.summary.buckets
    return max(0.0, max(b.ci[0] for b in buckets) - min(b.ci[1] for b in buckets))


def ci_gap_high(result: TaskResult) -> float:
    """The widest gap the bucket CIs allow: ``max ci_high - min ci_low``; the plain gap without CIs."""
    if not has_ci(result):
        return result.summary.gap
    buckets = result.summary.buckets
    return max(b.ci[1] for b in buckets) - min(b.ci[0] for b in buckets)


def _prefix(lengths: Sequence[int], passes: Sequence[bool]) -> int | None:
    """The longest length up to which every length passes (lengths ascending); None if the first fails."""
    found: int | None = None
    for length, ok in zip(lengths, passes, strict=True):
        if not ok:
            break
        found = length
    return found


def _range_text(low: int | None, high: int | None, first: int) -> str:
    def one(x: int | None) -> str:
        return f"< {length_label(first)}" if x is None else length_label(x)

    return one(low) if low == high else f"{one(low)} – {one(high)}"


@dataclass(frozen=True, slots=True)
class LengthCheck:
    """One tested context length of one model and task, against the thresholds."""

    length: int
    avg: float
    gap: float
    ci_gap: float
    uses_ci: bool
    passes: bool
    avg_ci: tuple[float, float] = (math.nan, math.nan)
    ci_gap_high: float = math.nan
    surely_passes: bool = False  # every CI inside the thresholds
    may_pass: bool = False  # the CIs reach the thresholds


@dataclass(frozen=True, slots=True)
class PeerLength:
    """A peer's effective length (RULER or NoLiMa) of one model and task: the longest tested length
    up to which the avg stays >= ``threshold``; ``low`` / ``high`` from the avg's 95% CI (None
    without CIs, or when even the shortest length is below)."""

    name: str
    threshold: float
    rule: str
    lengths: tuple[int, ...]
    length: int | None
    low: int | None
    high: int | None
    uses_ci: bool

    def text(self) -> str:
        point = f"< {length_label(self.lengths[0])}" if self.length is None else length_label(self.length)
        if not self.uses_ci:
            return point
        return f"{point} [{_range_text(self.low, self.high, self.lengths[0])}]"


def peer_length(name: str, threshold: float, rule: str, checks: Sequence[LengthCheck]) -> PeerLength:
    """:class:`PeerLength` of ``checks`` (ascending lengths) at ``threshold``."""
    lengths = [c.length for c in checks]
    uses_ci = all(not math.isnan(c.avg_ci[0]) for c in checks)
    return PeerLength(
        name=name,
        threshold=threshold,
        rule=rule,
        lengths=tuple(lengths),
        length=_prefix(lengths, [c.avg >= threshold for c in checks]),
        low=_prefix(lengths, [c.avg_ci[0] >= threshold for c in checks]) if uses_ci else None,
        high=_prefix(lengths, [c.avg_ci[1] >= threshold for c in checks]) if uses_ci else None,
        uses_ci=uses_ci,
    )


@dataclass(frozen=True, slots=True)
class EffectiveLength:
    """The effective context length of one model on one task (see the module docstring).

    ``length`` is None when even the shortest tested length fails; ``all_pass`` says the longest
    tested length passed (the true effective length may be longer). ``low`` / ``high``: its 95%
    bounds (None: below the shortest tested length, or, with ``uses_ci`` False, unknown).
    ``peers``: RULER's and NoLiMa's effective lengths of the same results.
    """

    model: str
    task: str
    length: int | None
    checks: tuple[LengthCheck, ...]
    min_avg: float
    max_gap: float
    low: int | None = None
    high: int | None = None
    peers: tuple[PeerLength, ...] = ()

    def __post_init__(self) -> None:
        if len(self.checks) < 2:
            raise ValueError("checks: an effective length needs two or more tested lengths")

    @property
    def all_pass(self) -> bool:
        return all(c.passes for c in self.checks)

    @property
    def uses_ci(self) -> bool:
        return all(c.uses_ci for c in self.checks)

    def text(self) -> str:
        """``4K``, ``>= 16K`` (every tested length passed) or ``< 2K`` (none did)."""
        if self.length is None:
            return f"< {length_label(self.checks[0].length)}"
        return (">= " if self.all_pass else "") + length_label(self.length)

    def interval_text(self) -> str:
        """The 95% bounds: ``2K – 8K``, ``4K`` (both bounds agree), or ``unknown`` (no CIs)."""
        if not self.uses_ci:
            return "unknown (no CIs)"
        return _range_text(self.low, self.high, self.checks[0].length)


def _check(r: TaskResult, min_avg: float, max_gap: float) -> LengthCheck:
    gap = ci_gap(r)
    widest = ci_gap_high(r)
    lo, hi = r.summary.avg_ci
    known = has_ci(r) and not math.isnan(lo)
    return LengthCheck(
        length=r.context_length or 0,
        avg=r.summary.avg,
        gap=r.summary.gap,
        ci_gap=gap,
        uses_ci=has_ci(r),
        passes=r.summary.avg >= min_avg and gap <= max_gap,
        avg_ci=(lo, hi),
        ci_gap_high=widest,
        surely_passes=known and lo >= min_avg and widest <= max_gap,
        may_pass=known and hi >= min_avg and gap <= max_gap,
    )


def effective_lengths(
    results: Sequence[TaskResult],
    *,
    min_avg: float = DEFAULT_MIN_AVG,
    max_gap: float = DEFAULT_MAX_GAP,
    ruler_threshold: float = RULER_THRESHOLD,
    nolima_fraction: float = NOLIMA_FRACTION,
) -> list[EffectiveLength]:
    """One :class:`EffectiveLength` per (model, task) with two or more known context lengths, with
    its 95% bounds and the peers' definitions (RULER at ``ruler_threshold``, NoLiMa at
    ``nolima_fraction`` of the avg at the shortest tested length).

    Uses the latest run per length; give results with CIs (``load_results(..., n_boot=N)`` or
    :func:`val_probing.results.ensure_ci`), else the plain gap is used (``uses_ci`` False) and
    the bounds are unknown.
    """
    if any(math.isnan(x) for x in (min_avg, max_gap, ruler_threshold, nolima_fraction)):
        raise ValueError("min_avg / max_gap / ruler_threshold / nolima_fraction: NaN threshold")
    grouped: dict[tuple[str, str], list[TaskResult]] = {}
    for r in keep_latest(results):
        if r.context_length is not None and not r.closed_book:
            grouped.setdefault((r.model, r.task), []).append(r)
    out: list[EffectiveLength] = []
    order: dict[str, int] = {f: i for i, f in enumerate(FAMILIES)}
    for (model, task), group in sorted(grouped.items(), key=lambda kv: (kv[0][0], order[kv[0][1]])):
        if len({r.context_length for r in group}) < 2:
            continue
        checks = [_check(r, min_avg, max_gap) for r in sorted(group, key=lambda r: r.context_length or 0)]
        lengths = [c.length for c in checks]
        known = all(c.uses_ci and not math.isnan(c.avg_ci[0]) for c in checks)
        base = checks[0].avg
        peers = (
            peer_length("RULER", ruler_threshold, f"avg >= {ruler_threshold:g}", checks),
            peer_length(
                "NoLiMa",
                nolima_fraction * base,
                f"avg >= {nolima_fraction:.0%} of its shortest-length avg",
                checks,
            ),
        )
        out.append(
            EffectiveLength(
                model,
                task,
                _prefix(lengths, [c.passes for c in checks]),
                tuple(checks),
                min_avg,
                max_gap,
                low=_prefix(lengths, [c.surely_passes for c in checks]) if known else None,
                high=_prefix(lengths, [c.may_pass for c in checks]) if known else None,
                peers=peers,
            )
        )
    return out


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
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
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
