"""The records of loaded results: :class:`TaskResult` (one model, task and context length) and the
names shared by the readers (task names, model display names, run timestamps)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from val_probing.buckets import ScoredSample, Summary
from val_probing.errors import ValProbingError
from val_probing.records import FAMILIES

TASK_PREFIX = "val_"
NAN = float("nan")
_STAMP = re.compile(r"_(\d{4}-\d{2}-\d{2}T[\d\-.]+)\.json$")


class ResultsError(ValProbingError, ValueError):
    """A results or samples file that cannot be read, naming the file, line and field."""


@dataclass(frozen=True, slots=True)
class TaskResult:
    """One model's result on one task (at one context length)."""

    model: str
    task: str
    source: Path
    context_length: int | None
    metadata: Mapping[str, Any]
    summary: Summary
    samples: tuple[ScoredSample, ...]

    def __post_init__(self) -> None:
        if self.task not in FAMILIES:
            raise ValueError(f"task: {self.task!r} is not one of {FAMILIES}")
        if not self.model:
            raise ValueError("model: empty name")

    @property
    def has_samples(self) -> bool:
        """True when the summary was recomputed from samples (std and CIs known)."""
        return bool(self.samples)

    @property
    def closed_book(self) -> bool:
        """True for a run asked without its context (task metadata ``closed_book: true``): a floor."""
        return self.metadata.get("closed_book") is True

    @property
    def has_spread(self) -> bool:
        """True when the across-set std of the buckets is known (not NaN)."""
        return all(not math.isnan(b.std) for b in self.summary.buckets)


def task_family(task_name: str) -> str | None:
    """``"val_document"`` -> ``"document"``; None for tasks that are not VAL probing tasks."""
    if task_name.startswith(TASK_PREFIX) and task_name[len(TASK_PREFIX) :] in FAMILIES:
        return task_name[len(TASK_PREFIX) :]
    return None


def display_name(model_name: str) -> str:
    """The last path component of a model name or folder (``org/Model`` -> ``Model``)."""
    stripped = model_name.rstrip("/\\")
    return re.split(r"[/\\]", stripped)[-1] or model_name


def run_stamp(path: Path) -> str | None:
    """lm-eval's timestamp in a results file name (ISO with ``-`` for ``:``), sortable as text."""
    match = _STAMP.search(path.name)
    return match.group(1) if match else None
