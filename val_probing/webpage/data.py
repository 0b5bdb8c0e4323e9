"""What the HTML page draws, as one JSON-able dict: pure apart from reading the runs' own files.

Layout (``PAGE_FORMAT``; the page's script reads nothing else):

* ``models``: curve labels in the order given (the first is "before" in a two-run comparison),
  ``colors``: label -> colour (:func:`val_probing.plots.model_colors`);
* ``curves``: one per (model, task, context length): bucket x (% of the context), mean, 95%
  bootstrap CI (``null`` where unknown), questions per bucket, avg with its CI, gap, the key
  ``qset`` of its questions and its ``cost`` per bucket and in all (:mod:`val_probing.results.cost`);
* ``questions``: per ``qset`` (``task/length``), the questions once (set, position, n_items, depth,
  key, gold) and per model its answers and scores aligned with them (``null`` where that model was
  not asked). Questions are shared between models, so a comparison stores each key and gold once;
  answers longer than ``answer_chars`` are cut (the page says so);
* ``floors``: per model and task, the closed-book floor (a run with metadata ``closed_book``) and
  the constant-answer floor of the probe file, when known;
* ``table1``: :mod:`val_probing.tables`' rows, ``effective``:
  :mod:`val_probing.results.effective_length`'s; ``gate``: the gate's rows, when given;
* ``provenance``: per results file, the model, backend, model args, versions, probe hashes,
  lengths, date and seconds.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from val_probing import __version__
from val_probing.plots import TASK_TITLES, model_colors
from val_probing.records import FAMILIES
from val_probing.results import TaskResult
from val_probing.results.cost import bucket_costs, run_seconds
from val_probing.results.effective_length import EffectiveLength, effective_lengths
from val_probing.results.questions import Question, read_questions
from val_probing.results.readers import read_json
from val_probing.results.select import curve_labels, length_label, run_key
from val_probing.tables import (
    TASK_NAMES,
    closed_book_floors,
    constant_floors,
    table_rows,
)
from val_probing.typed import is_number

PAGE_FORMAT = 1
DEFAULT_ANSWER_CHARS = 2000


def _num(value: float) -> float | None:
    """A JSON number (rounded to 4 decimals); null for NaN (unknown) and infinities."""
    return round(value, 4) if math.isfinite(value) else None


def _curve(result: TaskResult, label: str, questions: Sequence[Question]) -> dict[str, Any]:
    s = result.summary
    n = s.n_buckets
    by_index = {b.index: b for b in s.buckets}
    buckets = []
    for i in range(n):
        b = by_index.get(i)
        buckets.append(
            {
                "i": i,
                "x": round((i + 0.5) / n * 100, 4),
                "mean": None if b is None else _num(b.mean),
                "lo": None if b is None else _num(b.ci[0]),
                "hi": None if b is None else _num(b.ci[1]),
                "n": 0 if b is None else b.n,
            }
        )
    return {
        "model": label,
        "task": result.task,
        "length": result.context_length,
        "length_label": "official" if result.context_length is None else length_label(result.context_length),
        "n_buckets": n,
        "buckets": buckets,
        "avg": _num(s.avg),
        "avg_ci": [_num(s.avg_ci[0]), _num(s.avg_ci[1])],
        "gap": _num(s.gap),
        "n_samples": s.n_samples,
        "qset": _qset(result),
        "cost": _cost(result, questions),
    }


def _qset(result: TaskResult) -> str:
    return f"{result.task}/{result.context_length if result.context_length is not None else 'official'}"


def _questions_of(result: TaskResult) -> list[Question]:
    samples_file = result.metadata.get("samples_file")
    if not isinstance(samples_file, str):
        return []
    return [q for q in read_questions(Path(samples_file)) if q.context_length == result.context_length]


def _question_sets(
    curves: Sequence[tuple[TaskResult, str, list[Question]]], answer_chars: int
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    index: dict[str, dict[tuple[int, int, str], int]] = {}
    for result, label, questions in curves:
        if not questions:
            continue
        qset = _qset(result)
        block = out.setdefault(qset, {"rows": [], "answers": {}, "cut": answer_chars})
        where = index.setdefault(qset, {})
        answers: list[list[Any] | None] = [None] * len(block["rows"])
        for q in questions:
            ident = (q.set_id, q.position_id, q.key)
            i = where.get(ident)
            if i is None:
                i = where[ident] = len(block["rows"])
                block["rows"].append([q.set_id, q.position_id, q.n_items, round(q.depth, 4), q.key, q.gold])
                for other in block["answers"].values():
                    other.append(None)
                answers.append(None)
            answers[i] = [q.answer[:answer_chars], round(q.score, 4), len(q.answer) > answer_chars]
        block["answers"][label] = answers
    return out


def _cost(result: TaskResult, questions: Sequence[Question]) -> dict[str, Any] | None:
    """Per bucket and in all: the curve's cost (:mod:`val_probing.results.cost`); None without samples."""
    if not questions:
        return None
    per, total = bucket_costs(questions, result.summary.n_buckets)
    return {"total": total.to_dict(), "buckets": {str(b): c.to_dict() for b, c in per.items()}}


def _floors(results: Sequence[TaskResult], model_of: Mapping[str, str]) -> dict[str, Any]:
    """Per curve label and task: the closed-book floor and the constant-answer floor
    (:func:`val_probing.tables.closed_book_floors`, :func:`~val_probing.tables.constant_floors`),
    each None when unknown; tasks with neither are left out."""
    closed = closed_book_floors(results)
    constant = constant_floors(results)
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for label, model in model_of.items():
        for task in FAMILIES:
            book, const = closed.get((model, task)), constant.get((model, task))
            if book is not None or const is not None:
                out.setdefault(label, {})[task] = {
                    "closed_book": None if book is None else _num(book),
                    "constant": None if const is None else _num(const),
                }
    return out


def _table1(results: Sequence[TaskResult], floors: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for row in table_rows(results):
        cells = {}
        for task, cell in row.cells.items():
            floor = (floors.get(row.label) or {}).get(task) or {}
            known = [f for f in (floor.get("closed_book"), floor.get("constant")) if f is not None]
            cells[task] = {
                "avg": _num(cell.avg),
                "gap": _num(cell.gap),
                "avg_ci": [_num(cell.avg_ci[0]), _num(cell.avg_ci[1])],
                "above_floor": _num(cell.avg - max(known)) if known else None,
            }
        rows.append(
            {
                "model": row.label,
                "lengths": [length_label(x) for x in row.context_lengths],
                "cells": cells,
                "all_avg": None if row.all_avg is None else _num(row.all_avg),
                "all_gap": None if row.all_gap is None else _num(row.all_gap),
            }
        )
    return rows


def _effective(found: Sequence[EffectiveLength]) -> list[dict[str, Any]]:
    return [
        {
            "model": e.model,
            "task": e.task,
            "effective": e.text(),
            "bounds": e.interval_text(),
            "peers": [{"name": p.name, "rule": p.rule, "text": p.text()} for p in e.peers],
            "min_avg": e.min_avg,
            "max_gap": e.max_gap,
            "uses_ci": e.uses_ci,
            "checks": [
                {
                    "length": length_label(c.length),
                    "avg": _num(c.avg),
                    "ci_gap": _num(c.ci_gap),
                    "passes": c.passes,
                }
                for c in e.checks
            ],
        }
        for e in found
    ]


def _date(value: object) -> str | None:
    if is_number(value) and math.isfinite(value):
        return dt.datetime.fromtimestamp(value, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return None


def _provenance(
    results: Sequence[TaskResult], labels: Mapping[tuple[str, Path], str]
) -> list[dict[str, Any]]:
    out = []
    for source in sorted({r.source for r in results}, key=str):
        mine = [r for r in results if r.source == source]
        data = read_json(source) if source.suffix == ".json" else {}
        config: dict[str, Any] = data["config"] if isinstance(data.get("config"), dict) else {}
        tasks: dict[str, Any] = {}
        for r in mine:
            meta = r.metadata
            tasks[r.task] = {
                "probe_hash": meta.get("probe_hash"),
                "probe_version": meta.get("probe_version"),
                "source": meta.get("source"),
                "closed_book": r.closed_book,
                "versions": meta.get("versions") if isinstance(meta.get("versions"), dict) else None,
            }
        lengths = sorted({r.context_length for r in mine if r.context_length is not None})
        model_args = config.get("model_args")
        out.append(
            {
                "file": str(source),
                "model": labels.get(run_key(mine[0]), mine[0].model),
                "model_name": str(data.get("model_name") or mine[0].model),
                "backend": config.get("model"),
                "model_args": model_args if isinstance(model_args, dict | str) else None,
                "lm_eval_version": data.get("lm_eval_version"),
                "transformers_version": data.get("transformers_version"),
                "date": _date(data.get("date")),
                "seconds": run_seconds(data),
                "lengths": [length_label(x) for x in lengths] or ["official"],
                "tasks": tasks,
            }
        )
    return out


def page_data(
    results: Sequence[TaskResult],
    *,
    order: Sequence[str] = (),
    title: str | None = None,
    answer_chars: int = DEFAULT_ANSWER_CHARS,
    min_avg: float | None = None,
    max_gap: float | None = None,
    gate: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The page's JSON (see the module docstring). ``results`` should carry CIs
    (``load_results(..., n_boot=N)``); ``order``: models first in this order (the rest sorted);
    ``gate``: verdict blocks from :func:`val_probing.webpage.page.gate_blocks`."""
    if not results:
        raise ValueError("results: nothing to show")
    if answer_chars < 1:
        raise ValueError(f"answer_chars: {answer_chars} is not positive")
    drawn = [r for r in results if not r.closed_book]
    if not drawn:
        raise ValueError("results: only closed-book runs (floors), no curve to draw")
    labels = curve_labels(drawn)  # a closed-book run is no second run of its model
    model_of = {labels[run_key(r)]: r.model for r in drawn}
    rank = {m: i for i, m in enumerate(order)}
    names = sorted(model_of, key=lambda label: (rank.get(model_of[label], len(rank)), label))
    floors = _floors(results, model_of)
    thresholds: dict[str, float] = {}
    if min_avg is not None:
        thresholds["min_avg"] = min_avg
    if max_gap is not None:
        thresholds["max_gap"] = max_gap
    curves = [(r, labels[run_key(r)], _questions_of(r)) for r in drawn]
    task_order: dict[str, int] = {t: i for i, t in enumerate(FAMILIES)}
    curves.sort(key=lambda c: (task_order[c[0].task], c[0].context_length or 0, names.index(c[1])))
    return {
        "format": PAGE_FORMAT,
        "title": title or "VAL probing: " + ", ".join(names),
        "generated": dt.datetime.now(tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "version": __version__,
        "models": names,
        "colors": model_colors(names),
        "tasks": [{"task": t, "name": TASK_NAMES[t], "title": TASK_TITLES[t]} for t in FAMILIES],
        "curves": [_curve(r, label, questions) for r, label, questions in curves],
        "questions": _question_sets(curves, answer_chars),
        "floors": floors,
        "table1": _table1(drawn, floors),
        "effective": _effective(effective_lengths(drawn, **thresholds)),
        "gate": list(gate),
        "provenance": _provenance(results, labels),
    }
