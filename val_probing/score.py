"""Scoring model outputs that are row-aligned with probe data (what ``val-probing score`` runs).

Line i of the outputs answers row i of the data. The data is the official schema (the authors'
VaLProbing-32K JSONL, a folder holding ``<split>.jsonl``, or built probes exported with
``to_official_row``), a file of probe records as ``val-probing build`` writes them, or (``data=None``)
the hub split. Every row is a :class:`~val_probing.records.ProbeExample`, whichever it came from.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from val_probing.buckets import (
    Mode,
    ScoredSample,
    Summary,
    fitting_buckets,
    summarize,
)
from val_probing.errors import ValProbingError
from val_probing.files import RecordError, iter_jsonl
from val_probing.metrics import diagnostic_scores, reference_score
from val_probing.official import (
    is_ambiguous,
    load_skip_list,
    official_file,
    read_official,
)
from val_probing.probes import get_family
from val_probing.probes.base import MetricError
from val_probing.probes.checks import read_probe_file
from val_probing.records import Family, ProbeExample
from val_probing.typed import is_int

log = logging.getLogger(__name__)

OUTPUT_FIELDS = ("samples", "sample", "text", "output")
"""Where an outputs line holds its answer, in the order they are looked for."""
PAPER_BUCKET = 50  # positions per bucket in the paper (800 -> 16, 750 -> 15)


@dataclass(frozen=True, slots=True)
class Scored:
    """The result of one ``score`` run: the reference summary, and diagnostics when asked."""

    task: Family
    n_rows: int
    n_items: int | None  # None when the sets differ in size
    n_skipped: int
    skip_source: str
    summary: Summary
    diagnostics: dict[str, Summary]

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"task": self.task, **self.summary.to_dict()}
        data.update(n_rows=self.n_rows, n_skipped=self.n_skipped, skip_source=self.skip_source)
        if self.diagnostics:
            data["diagnostics"] = {
                name: {"avg": s.avg, "gap": s.gap, "avg_ci": list(s.avg_ci)}
                for name, s in self.diagnostics.items()
            }
        return data


# --------------------------------------------------------------------------------------------------
# Input


def _is_probe_file(path: Path) -> bool:
    for _lineno, obj in iter_jsonl(path):
        return "context" in obj and "prompt" not in obj
    return False


def load_rows(task: Family, data: Path | None) -> list[ProbeExample]:
    """Data rows in file order: probe records, or official rows (``data`` a file, or None: the hub)."""
    if data is not None and _is_probe_file(data):
        probes = read_probe_file(data)  # every row and the set checked
        wrong = [i for i, ex in enumerate(probes) if ex.family != task]
        if wrong:
            raise RecordError(f"{data}: row {wrong[0]} is a {probes[wrong[0]].family} probe, not {task}")
        return probes
    return read_official(task, data)


def _output_text(obj: dict[str, Any], where: str) -> str | None:
    for name in OUTPUT_FIELDS:
        if name not in obj:
            continue
        value = obj[name]
        if name == "samples":
            if not isinstance(value, list) or not value:
                raise RecordError(f"{where}: field 'samples' must be a non-empty list, got {value!r}")
            value = value[0]
        if value is not None and not isinstance(value, str):
            raise RecordError(f"{where}: field {name!r} must hold text, got {type(value).__name__}")
        return value
    raise RecordError(f"{where}: no answer field (expected one of {', '.join(OUTPUT_FIELDS)})")


IDENTITY_FIELDS = ("row", "set_id", "position_id")
"""What an outputs line may carry to say which data row it answers (each checked when present)."""


@dataclass(frozen=True, slots=True)
class Output:
    """One outputs line: its answer text and the identity fields it carries (None: absent)."""

    text: str | None
    where: str  # file:line
    row: int | None = None
    set_id: int | None = None
    position_id: int | None = None


def _identity(obj: dict[str, Any], name: str, where: str) -> int | None:
    value = obj.get(name)
    if value is None:
        return None
    if not is_int(value) or value < 0:
        raise RecordError(f"{where}: field {name!r} must be a non-negative integer, got {value!r}")
    return value


def read_output_lines(path: Path) -> list[Output]:
    """Every non-blank line of an outputs file; errors name file, line and field."""
    if path.is_dir():
        raise ValProbingError(f"{path}: is a folder; pass the outputs JSONL file")
    if not path.is_file():
        raise ValProbingError(f"{path}: no such outputs file")
    out = []
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        ids = {name: _identity(obj, name, where) for name in IDENTITY_FIELDS}
        out.append(Output(_output_text(obj, where), where, **ids))
    return out


def read_outputs(path: Path) -> list[str | None]:
    """Answer texts, one per non-blank line; errors name file, line and field."""
    return [line.text for line in read_output_lines(path)]


def pair_rows(rows: Sequence[ProbeExample], outputs: Sequence[Output], source: str) -> list[ProbeExample]:
    """The data rows in the order of the outputs that answer them, paired by the rows' own identity.

    Line i of the outputs answers the data row whose ``row`` is i (probe records and official rows
    both carry it), whatever the data file's order; an outputs line that carries ``row`` answers that
    row, and one that carries ``set_id``/``position_id`` must name its row's. Two data rows with one
    ``row`` or one (set, position), a ``row`` with no answer, or an answer that names another row are
    errors naming it (never scored as if they matched).
    """
    by_row: dict[int, ProbeExample] = {}
    by_place: dict[tuple[int, int], ProbeExample] = {}
    for ex in rows:
        if ex.row in by_row:
            raise ValProbingError(f"{source}: two data rows have row {ex.row}; each row must be unique")
        place = (ex.set_id, ex.position_id) if ex.source == "built" else None
        if place is not None and place in by_place:
            raise ValProbingError(
                f"{source} row {ex.row}: set {ex.set_id} position {ex.position_id} is also row "
                f"{by_place[place].row}; a question may be scored only once"
            )
        by_row[ex.row] = ex
        if place is not None:
            by_place[place] = ex
    paired: list[ProbeExample] = []
    answered: set[int] = set()
    for i, out in enumerate(outputs):
        wanted = i if out.row is None else out.row
        match = by_row.get(wanted)
        if match is None:
            raise ValProbingError(
                f"{out.where}: answers row {wanted}, but {source} has no row {wanted} "
                f"(its rows are {min(by_row)}..{max(by_row)})"
            )
        if wanted in answered:
            raise ValProbingError(f"{out.where}: row {wanted} is answered twice")
        for name in ("set_id", "position_id"):
            value = getattr(out, name)
            if value is not None and value != getattr(match, name):
                raise ValProbingError(
                    f"{out.where}: {name} {value} does not match row {wanted} of {source} "
                    f"({name} {getattr(match, name)}); the outputs answer other rows"
                )
        answered.add(wanted)
        paired.append(match)
    return paired


# --------------------------------------------------------------------------------------------------
# Scoring (pure)


def _positions_per_set(rows: Sequence[ProbeExample]) -> int | None:
    """Needle positions asked per context of built probes; None when every item is asked about
    (``build --positions`` not given: the official layout)."""
    asked: dict[int, set[int]] = {}
    n_items: dict[int, int] = {}
    for row in rows:
        asked.setdefault(row.set_id, set()).add(row.position_id)
        n_items[row.set_id] = row.n_items
    if all(len(asked[s]) == n_items[s] for s in asked):
        return None
    counts = {len(positions) for positions in asked.values()}
    if len(counts) > 1:
        raise ValProbingError(
            f"the sets ask about different numbers of positions ({sorted(counts)}): pass --buckets N"
        )
    return counts.pop()


def default_buckets(task: Family, rows: Sequence[ProbeExample]) -> int:
    """The bucket count of non-reference scoring when ``--buckets`` is not given.

    Built probes: the one default-bucket rule of the lm-eval tasks
    (:func:`val_probing.buckets.fitting_buckets` of the family's ``DEFAULT_BUCKETS``, the fewest
    items in a context and the positions asked per context), so ``score`` and lm-eval put the same
    probes into the same buckets. Official rows: the paper's 50-position buckets (800 -> 16,
    750 -> 15); a size that is no multiple of 50 falls back to the same rule.
    """
    if all(row.source == "official" for row in rows):
        sizes = {row.n_items for row in rows}
        if len(sizes) > 1:
            raise ValProbingError(f"sets differ in size (n_items {sorted(sizes)}): pass --buckets N")
        (n_items,) = sizes
        if n_items % PAPER_BUCKET == 0:
            return n_items // PAPER_BUCKET
        return fitting_buckets(get_family(task).DEFAULT_BUCKETS, n_items)
    min_items = min(row.n_items for row in rows)
    return fitting_buckets(get_family(task).DEFAULT_BUCKETS, min_items, _positions_per_set(rows))


def reference_buckets(rows: Sequence[ProbeExample]) -> int:
    """The paper's bucket count (n_items / 50); an error when the sets are not of one such size."""
    sizes = {row.n_items for row in rows}
    if any(n % PAPER_BUCKET for n in sizes) or len(sizes) > 1:
        raise ValProbingError(
            f"--reference uses the paper's 50-position buckets, but n_items is {sorted(sizes)}; "
            "pass --buckets N to choose the buckets yourself"
        )
    return next(iter(sizes)) // PAPER_BUCKET


def score_rows(
    task: Family,
    rows: Sequence[ProbeExample],
    predictions: Sequence[str | None],
    where: str,
    skip: set[int],
    *,
    diagnostics: bool,
) -> tuple[list[ScoredSample], dict[str, list[ScoredSample]]]:
    """Reference samples and (when asked) one sample list per diagnostic, skipping the rows whose
    ``row`` is in ``skip``;
    errors name ``where`` (the data) and the row."""
    reference: list[ScoredSample] = []
    names = get_family(task).DIAGNOSTICS if diagnostics else {}
    extra: dict[str, list[ScoredSample]] = {name: [] for name in names}
    for row, pred in zip(rows, predictions, strict=True):
        if row.row in skip:
            continue
        try:
            score = reference_score(task, pred, row.answer, row.description)
            others = diagnostic_scores(task, pred, row.answer, row.description) if diagnostics else {}
        except MetricError as err:
            raise RecordError(f"{where} row {row.row}: {err}") from err
        reference.append(ScoredSample(row.set_id, row.position_id, row.n_items, row.key, score))
        for name, value in others.items():
            extra[name].append(ScoredSample(row.set_id, row.position_id, row.n_items, row.key, value))
    return reference, extra


def skip_set(
    rows: Sequence[ProbeExample], skip_list: Path | None, *, reference: bool
) -> tuple[set[int], str]:
    """Rows (their ``row``) to leave out and where they came from: the authors' list, or derived."""
    if skip_list is None:
        if reference:
            log.info("reference mode with derived skip rows; pass --skip-list for the authors' own list")
        return {row.row for row in rows if is_ambiguous(row)}, "derived"
    skip = load_skip_list(skip_list)
    present = {row.row for row in rows}
    outside = sorted(i for i in skip if i not in present)
    if outside:
        raise ValProbingError(
            f"{skip_list}: rows {outside[:5]} are past the {len(rows)} data rows "
            "(a skip list of another split?)"
        )
    return skip, str(skip_list)


def score_outputs(
    task: Family,
    outputs: Path,
    *,
    data: Path | None = None,
    reference: bool = False,
    skip_list: Path | None = None,
    n_buckets: int | None = None,
    diagnostics: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
) -> Scored:
    """Score ``outputs`` against ``data`` (see the module docstring): ``reference`` reproduces the
    authors' plot.py (50-position buckets minus their last position); ``n_buckets=None`` picks the
    paper's buckets (``--reference``) or :func:`default_buckets`."""
    data_file = None if data is None else official_file(task, data)  # a folder -> its split
    rows = load_rows(task, data_file)
    lines = read_output_lines(outputs)
    predictions = [line.text for line in lines]
    source = data_file if data_file is not None else f"the hub split {get_family(task).OFFICIAL_SPLIT}"
    if len(rows) != len(predictions):
        raise ValProbingError(
            f"row counts differ: {source} has {len(rows)} rows but {outputs} has {len(predictions)} "
            "answers; line i of the outputs must answer row i of the data"
        )
    rows = pair_rows(rows, lines, str(source))
    skip, skip_source = skip_set(rows, skip_list, reference=reference)
    mode: Mode = "reference" if reference else "default"
    if n_buckets is None:
        n_buckets = reference_buckets(rows) if reference else default_buckets(task, rows)
    samples, extra = score_rows(task, rows, predictions, str(source), skip, diagnostics=diagnostics)
    try:
        summaries = {
            name: summarize(found, n_buckets=n_buckets, mode=mode, n_boot=n_boot, seed=seed)
            for name, found in {"reference": samples, **extra}.items()
        }
    except ValueError as err:  # bad n_buckets / n_boot for this data
        raise ValProbingError(str(err)) from err
    summary = summaries.pop("reference")
    sizes = {row.n_items for row in rows}
    n_items = next(iter(sizes)) if len(sizes) == 1 else None
    return Scored(task, len(rows), n_items, len(skip), skip_source, summary, summaries)
