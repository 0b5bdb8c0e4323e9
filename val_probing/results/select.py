"""Which loaded results a figure or a table shows, and the labels it shows them under.

One rule for every view of loaded results (the curves in :mod:`val_probing.plots`, Table 1 in
:mod:`val_probing.tables`, the HTML page in :mod:`val_probing.webpage`), so that a curve, its row and
its entry on the page always name the same run:

* :func:`select_curves`: one context length per (model, task), the one asked for or else the longest;
  every run of the model at that length is kept (``load_results(latest_only=False)``);
* :func:`run_key`: (model, results file), what tells one run from another;
* :func:`curve_labels`: the label of each run, the model name, plus the run's timestamp where a model
  has several runs of one task at one context length;
* :func:`length_label`: a context length as the views print it (``4096`` -> ``4K``).

Pure functions of :class:`~val_probing.results.TaskResult` records; nothing here draws or formats a
table.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from val_probing.results.task_result import TaskResult, run_stamp

log = logging.getLogger(__name__)


def select_curves(results: Sequence[TaskResult], context_length: int | None = None) -> list[TaskResult]:
    """One context length per (model, task): ``context_length`` when given, else the longest.

    Several runs of the same model at that length (``load_results(latest_only=False)``) are all
    kept; :func:`curve_labels` tells them apart.
    """
    by_key: dict[tuple[str, str], list[TaskResult]] = defaultdict(list)
    for r in results:
        by_key[(r.model, r.task)].append(r)
    chosen: list[TaskResult] = []
    for (model, task), group in by_key.items():
        lengths = {r.context_length for r in group}
        if context_length is not None:
            pick: int | None = context_length
            if context_length not in lengths:
                log.warning("%s %s: no result at context length %d", model, task, context_length)
                continue
        else:
            known = [x for x in lengths if x is not None]
            pick = max(known) if known else None
            if len(lengths) > 1:
                log.info("%s %s: %d context lengths, drawing %s", model, task, len(lengths), pick)
        chosen.extend(r for r in group if r.context_length == pick)
    return chosen


def run_key(result: TaskResult) -> tuple[str, Path]:
    """(model, results file): what tells one run's curves from another's (:func:`curve_labels`)."""
    return result.model, result.source


def curve_labels(results: Sequence[TaskResult]) -> dict[tuple[str, Path], str]:
    """Legend label per run (keyed by :func:`run_key`): the model name, plus the run's timestamp for
    a model that has several runs of one task at one context length (``latest_only=False``)."""
    runs: dict[tuple[str, str, int | None], set[Path]] = defaultdict(set)
    for r in results:
        runs[(r.model, r.task, r.context_length)].add(r.source)
    several = {model for (model, _t, _l), sources in runs.items() if len(sources) > 1}
    return {
        run_key(r): f"{r.model} [{run_stamp(r.source) or r.source.name}]" if r.model in several else r.model
        for r in results
    }


def length_label(tokens: int) -> str:
    """``4096`` -> ``4K``; other lengths as they are."""
    return f"{tokens // 1024}K" if tokens % 1024 == 0 else str(tokens)
