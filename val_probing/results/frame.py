"""The notebook API over loaded results: bootstrap CIs on request (:func:`with_ci`, :func:`ensure_ci`)
and one row per bucket (:func:`frame_records`, :func:`results_frame`)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from val_probing.buckets import summarize
from val_probing.errors import ValProbingError, items_of
from val_probing.results.task_result import TaskResult

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_N_BOOT = 1000


def check_results(results: object, argument: str = "results") -> list[TaskResult]:
    """``results`` as a list of :class:`TaskResult`; a ``TypeError`` naming ``argument`` otherwise.

    A path is the common slip in a notebook: the message says how to load it."""
    wanted = "a sequence of TaskResult (val_probing.results.load_results(PATH))"
    if isinstance(results, str | os.PathLike):
        raise TypeError(
            f"{argument}: expected {wanted}, got the path {os.fspath(results)!r}: "
            f"pass load_results({os.fspath(results)!r})"
        )
    if isinstance(results, TaskResult):
        raise TypeError(f"{argument}: expected {wanted}, got one TaskResult: pass [result]")
    return items_of(results, TaskResult, argument, wanted)


def has_ci(result: TaskResult) -> bool:
    """True when the result's bucket CIs are known (computed from samples, or read from a file)."""
    return all(not math.isnan(b.ci[0]) for b in result.summary.buckets)


def with_ci(result: TaskResult, *, n_boot: int = DEFAULT_N_BOOT, seed: int = 0) -> TaskResult:
    """The result with bootstrap CIs: recomputed from its samples when they are not known yet.

    Results without samples (aggregates only) come back unchanged: their CIs cannot be known.
    """
    if has_ci(result) or not result.has_samples:
        return result
    summary = summarize(
        result.samples,
        n_buckets=result.summary.n_buckets,
        mode=result.summary.mode,
        n_boot=n_boot,
        seed=seed,
    )
    return replace(result, summary=summary)


def ensure_ci(
    results: Sequence[TaskResult], *, n_boot: int = DEFAULT_N_BOOT, seed: int = 0
) -> list[TaskResult]:
    """:func:`with_ci` for every result, order kept."""
    return [with_ci(r, n_boot=n_boot, seed=seed) for r in check_results(results)]


FRAME_COLUMNS: tuple[str, ...] = (
    "model",
    "task",
    "context_length",
    "bucket",
    "position",
    "mean",
    "ci_low",
    "ci_high",
    "std",
    "n",
    "n_sets",
    "avg",
    "avg_ci_low",
    "avg_ci_high",
    "gap",
    "n_buckets",
    "has_samples",
    "source",
)


def frame_records(
    results: Sequence[TaskResult], *, n_boot: int = DEFAULT_N_BOOT, seed: int = 0
) -> list[dict[str, Any]]:
    """The rows of :func:`results_frame` as plain dicts (one per result x bucket, in order)."""
    rows: list[dict[str, Any]] = []
    for r in ensure_ci(results, n_boot=n_boot, seed=seed):
        s = r.summary
        for b in s.buckets:
            rows.append(
                {
                    "model": r.model,
                    "task": r.task,
                    "context_length": r.context_length,
                    "bucket": b.index,
                    "position": (b.index + 0.5) / s.n_buckets * 100,
                    "mean": b.mean,
                    "ci_low": b.ci[0],
                    "ci_high": b.ci[1],
                    "std": b.std,
                    "n": b.n,
                    "n_sets": b.n_sets,
                    "avg": s.avg,
                    "avg_ci_low": s.avg_ci[0],
                    "avg_ci_high": s.avg_ci[1],
                    "gap": s.gap,
                    "n_buckets": s.n_buckets,
                    "has_samples": r.has_samples,
                    "source": str(r.source),
                }
            )
    return rows


def results_frame(
    results: Sequence[TaskResult], *, n_boot: int = DEFAULT_N_BOOT, seed: int = 0
) -> pd.DataFrame:
    """A pandas DataFrame: one row per model x task x context length x bucket (:data:`FRAME_COLUMNS`).

    ``mean``, ``ci_low``/``ci_high`` (95% bootstrap CI, computed here from the samples with
    ``n_boot`` resamples when loading did not), ``std`` (across sets), ``n`` (questions) and
    ``n_sets`` describe the bucket; ``avg``, ``avg_ci_low``/``avg_ci_high`` and ``gap`` are the
    run's (repeated on its rows), all x100. ``position`` is the bucket's centre in % of the context.
    Results without samples have NaN CIs and std. Needs pandas (``pip install 'val-probing[plot]'``).
    """
    results = check_results(results)
    try:
        import pandas as pd
    except ModuleNotFoundError as err:
        raise ValProbingError(
            "results_frame needs pandas: pip install 'val-probing[plot]' (lm-eval installs it too)"
        ) from err
    frame = pd.DataFrame(frame_records(results, n_boot=n_boot, seed=seed), columns=list(FRAME_COLUMNS))
    return frame.astype({"context_length": "Int64"})
