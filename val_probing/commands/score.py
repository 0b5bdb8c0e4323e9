"""``val-probing score``: score model outputs that are row-aligned with probe data.

Line i of OUTPUTS answers row i of DATA. DATA is the official schema (the authors' VaLProbing-32K
JSONL, a folder holding ``<split>.jsonl``, or built probes exported with ``to_official_row``) or a
file of probe records as ``val-probing build`` writes them. Omit --data to read the split from the
hub (offline this fails, saying how to get the files).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from val_probing.buckets import Mode, ScoredSample, Summary, bucket_of, is_last_in_bucket, summarize
from val_probing.errors import ValProbingError
from val_probing.metrics import DIAGNOSTICS, MetricError, diagnostic_scores, reference_score
from val_probing.official import (
    OFFICIAL_SPLITS,
    KeyedRow,
    is_ambiguous,
    load_skip_list,
    official_file,
    read_official,
)
from val_probing.records import FAMILIES, Family, RecordError, iter_jsonl, read_probes

log = logging.getLogger(__name__)

HELP = "score model outputs against official or built probe data (buckets, avg, gap, CIs)"

EPILOG = """\
OUTPUTS holds one JSON object per line, in the order of the DATA rows, with the answer text under
"samples" (a list; the first is scored, as in the authors' vllm_inference.py), "sample", "text" or
"output". A null answer scores 0.

examples:
  # the authors' released FILM-7B outputs, scored exactly as their plot.py does
  # (clone github.com/microsoft/FILM; get the data with its VaLProbing/download.py elsewhere)
  val-probing score --task code --data ValProbing-32K/ --reference \\
      --outputs FILM/VaLProbing/VaLProbing-32K/results/FILM-7B/sample_code_backward_32k.jsonl \\
      --skip-list FILM/VaLProbing/VaLProbing-32K/code_backward_32k_skip_list.json

  # your model's outputs on the official database split, whole buckets, JSON for scripts
  val-probing score --task database --data ValProbing-32K/database_forward_32k.jsonl \\
      --outputs my_model/database.jsonl --json

  # built probes (val-probing build), 8 buckets, with the tolerant diagnostic metrics
  val-probing score --task document --data probes/document.jsonl --outputs out.jsonl \\
      --buckets 8 --diagnostics

modes:
  default      every position counts; skip rows are derived from the data (or --skip-list)
  --reference  the authors' plot.py: 50-position buckets whose last position is dropped
               (positions 50i..50i+48), rows on the skip list left out
"""

_OUTPUT_FIELDS = ("samples", "sample", "text", "output")
_PAPER_BUCKET = 50  # positions per bucket in the paper (800 -> 16, 750 -> 15)


class _Row(KeyedRow, Protocol):
    """What scoring reads from a data row (OfficialRow and ProbeExample both have it)."""

    @property
    def set_id(self) -> int: ...
    @property
    def position_id(self) -> int: ...
    @property
    def n_items(self) -> int: ...
    @property
    def description(self) -> str | None: ...


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, choices=FAMILIES, help="probe family")
    parser.add_argument(
        "--data",
        type=Path,
        help="official JSONL, a folder with <split>.jsonl, or built probe records "
        "(omitted: the hub split In2Training/VaLProbing-32K)",
    )
    parser.add_argument(
        "--outputs", type=Path, required=True, help="model outputs, one JSON line per data row"
    )
    parser.add_argument(
        "--reference",
        action="store_true",
        help="reproduce the authors' plot.py: 50-position buckets minus their last position",
    )
    parser.add_argument(
        "--skip-list",
        type=Path,
        help="the authors' JSON list of 0-based rows to leave out (default: derived)",
    )
    parser.add_argument(
        "--buckets",
        type=int,
        metavar="N",
        help="number of position buckets (default: n_items/50 as in the paper, else 16)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print JSON (Summary.to_dict() plus task, n_skipped)"
    )
    parser.add_argument(
        "--diagnostics", action="store_true", help="also summarize the tolerant metrics (not the paper's)"
    )
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for CIs (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")


# --------------------------------------------------------------------------------------------------
# Input


def _is_probe_file(path: Path) -> bool:
    for _lineno, obj in iter_jsonl(path):
        return "context" in obj and "prompt" not in obj
    return False


def load_rows(task: Family, data: Path | None) -> tuple[list[_Row], list[str]]:
    """Data rows in file order and where each came from (for error messages)."""
    if data is not None and _is_probe_file(data):
        probes = read_probes(data)
        wrong = [i for i, ex in enumerate(probes) if ex.family != task]
        if wrong:
            raise RecordError(f"{data}: row {wrong[0]} is a {probes[wrong[0]].family} probe, not {task}")
        return list(probes), [f"{data} row {i}" for i in range(len(probes))]
    rows = read_official(task, data)
    return list(rows), [row.where for row in rows]


def _output_text(obj: dict[str, Any], where: str) -> str | None:
    for name in _OUTPUT_FIELDS:
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
    raise RecordError(f"{where}: no answer field (expected one of {', '.join(_OUTPUT_FIELDS)})")


def read_outputs(path: Path) -> list[str | None]:
    """Answer texts, one per non-blank line; errors name file, line and field."""
    if path.is_dir():
        raise ValProbingError(f"{path}: is a folder; pass the outputs JSONL file")
    if not path.is_file():
        raise ValProbingError(f"{path}: no such outputs file")
    return [_output_text(obj, f"{path}:{lineno}") for lineno, obj in iter_jsonl(path)]


# --------------------------------------------------------------------------------------------------
# Scoring (pure)


def default_buckets(rows: Sequence[_Row]) -> int:
    """The paper's 50-position buckets when n_items is a multiple of 50, else 16 (at most n_items)."""
    sizes = {row.n_items for row in rows}
    if len(sizes) > 1:
        raise ValProbingError(f"sets differ in size (n_items {sorted(sizes)}): pass --buckets N")
    (n_items,) = sizes
    if n_items % _PAPER_BUCKET == 0:
        return n_items // _PAPER_BUCKET
    return min(16, n_items)


def score_rows(
    task: Family,
    rows: Sequence[_Row],
    predictions: Sequence[str | None],
    wheres: Sequence[str],
    skip: set[int],
    *,
    diagnostics: bool,
) -> tuple[list[ScoredSample], dict[str, list[ScoredSample]]]:
    """Reference samples and (when asked) one sample list per diagnostic, skipping ``skip`` rows."""
    reference: list[ScoredSample] = []
    extra: dict[str, list[ScoredSample]] = {name: [] for name in DIAGNOSTICS[task]} if diagnostics else {}
    for i, (row, pred) in enumerate(zip(rows, predictions, strict=True)):
        if i in skip:
            continue
        try:
            score = reference_score(task, pred, row.answer, row.description)
            others = diagnostic_scores(task, pred, row.answer, row.description) if diagnostics else {}
        except MetricError as err:
            raise RecordError(f"{wheres[i]}: {err}") from err
        reference.append(ScoredSample(row.set_id, row.position_id, row.n_items, score))
        for name, value in others.items():
            extra[name].append(ScoredSample(row.set_id, row.position_id, row.n_items, value))
    return reference, extra


def _skip(args: argparse.Namespace, rows: Sequence[_Row]) -> tuple[set[int], str]:
    """Rows to leave out and where they came from: the authors' list, or derived from the data."""
    if args.skip_list is None:
        if args.reference:
            log.info("reference mode with derived skip rows; pass --skip-list for the authors' own list")
        return {i for i, row in enumerate(rows) if is_ambiguous(row)}, "derived"
    skip = load_skip_list(args.skip_list)
    outside = sorted(i for i in skip if i >= len(rows))
    if outside:
        raise ValProbingError(
            f"{args.skip_list}: rows {outside[:5]} are past the {len(rows)} data rows "
            "(a skip list of another split?)"
        )
    return skip, str(args.skip_list)


def run_score(args: argparse.Namespace) -> Scored:
    task: Family = args.task
    data_file = None if args.data is None else official_file(task, args.data)  # a folder -> its split
    rows, wheres = load_rows(task, data_file)
    predictions = read_outputs(args.outputs)
    if len(rows) != len(predictions):
        data = data_file if data_file is not None else f"the hub split {OFFICIAL_SPLITS[task]}"
        raise ValProbingError(
            f"row counts differ: {data} has {len(rows)} rows but {args.outputs} has {len(predictions)} "
            "answers; line i of the outputs must answer row i of the data"
        )
    skip, source = _skip(args, rows)
    mode: Mode = "reference" if args.reference else "default"
    if args.reference and args.buckets is None:
        n_buckets = _reference_buckets(rows)
    else:
        n_buckets = args.buckets if args.buckets is not None else default_buckets(rows)
    reference, extra = score_rows(task, rows, predictions, wheres, skip, diagnostics=args.diagnostics)
    try:
        summaries = {
            name: summarize(samples, n_buckets=n_buckets, mode=mode, n_boot=args.n_boot, seed=args.seed)
            for name, samples in {"reference": reference, **extra}.items()
        }
    except ValueError as err:  # bad --buckets / --n-boot for this data
        raise ValProbingError(str(err)) from err
    summary = summaries.pop("reference")
    sizes = {row.n_items for row in rows}
    n_items = next(iter(sizes)) if len(sizes) == 1 else None
    return Scored(task, len(rows), n_items, len(skip), source, summary, summaries)


def _reference_buckets(rows: Sequence[_Row]) -> int:
    sizes = {row.n_items for row in rows}
    if any(n % _PAPER_BUCKET for n in sizes) or len(sizes) > 1:
        raise ValProbingError(
            f"--reference uses the paper's 50-position buckets, but n_items is {sorted(sizes)}; "
            "pass --buckets N to choose the buckets yourself"
        )
    return next(iter(sizes)) // _PAPER_BUCKET


# --------------------------------------------------------------------------------------------------
# Output


def _positions(index: int, n_items: int | None, n_buckets: int, mode: Mode) -> str:
    if n_items is None:
        return "-"
    members = [p for p in range(n_items) if bucket_of(p, n_items, n_buckets) == index]
    if mode == "reference":
        members = [p for p in members if not is_last_in_bucket(p, n_items, n_buckets)]
    return f"{members[0]}-{members[-1]}" if members else "-"


def format_table(result: Scored) -> str:
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


def run(args: argparse.Namespace) -> int:
    result = run_score(args)
    print(json.dumps(result.to_dict(), indent=2) if args.json else format_table(result))
    return 0
