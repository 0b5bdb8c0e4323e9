"""The gate's records: settings, tolerances, statistics, a baseline, and one compared metric."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, Literal

from val_probing.buckets import ScoredSample
from val_probing.errors import ValProbingError
from val_probing.records import FAMILIES
from val_probing.results import TaskResult

FORMAT = 2  # 2: the samples file is content-addressed and its sha256 recorded (format 1 is refused)


# Run settings that must agree between a baseline and a check (read from the results file).
SETTINGS = (
    "context_length",
    "n_buckets",
    "limit",
    "seed",
    "source",
    "pool",
    "probe_version",
    "probe_hash",
)


Status = Literal["pass", "fail", "low power"]


class MetricKind(Enum):
    """What a compared number is; its value names the tolerance that applies."""

    AVG = "avg"
    GAP = "gap"
    BUCKET = "bucket"


class GateInputError(ValProbingError):
    """A baseline or run that cannot be compared (the check exits 2)."""


def _number(name: str, value: object, rule: str, ok: Callable[[float], bool]) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not ok(float(value)):
        raise ValueError(f"{name}: expected {rule}, got {value!r}")


def _integer(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True, slots=True)
class Tolerances:
    """Smallest change (x100 points) that fails a build: a drop of avg or a bucket, a rise of gap."""

    avg: float = 2.0
    gap: float = 10.0
    bucket: float = 10.0

    def __post_init__(self) -> None:
        for f in fields(self):
            _number(f.name, getattr(self, f.name), "a number >= 0", lambda x: x >= 0)

    def for_metric(self, kind: MetricKind) -> float:
        return float(getattr(self, kind.value))

    def to_dict(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class Statistics:
    """Paired tests: one-sided level ``alpha`` after Holm's correction; resamples for p-values.

    ``min_questions``: a metric is tested (can fail the build) only when every bucket it depends on
    holds at least this many paired questions (avg: the whole task; a bucket: itself; gap: every
    bucket). Below that it is reported as ``low power`` and left out of the Holm family, unless
    ``fail_low_power`` is true.
    """

    alpha: float = 0.05
    resamples: int = 4000
    seed: int = 0
    min_questions: int = 16
    fail_low_power: bool = False

    def __post_init__(self) -> None:
        _number("alpha", self.alpha, "a number with 0 < alpha < 1", lambda x: 0 < x < 1)
        _integer("resamples", self.resamples, 100)
        _integer("seed", self.seed, 0)
        _integer("min_questions", self.min_questions, 1)
        if not isinstance(self.fail_low_power, bool):
            raise ValueError(f"fail_low_power: expected true or false, got {self.fail_low_power!r}")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class BaselineTask:
    """Expected numbers (x100) and settings of one task."""

    task: str
    settings: Mapping[str, Any]
    avg: float
    gap: float
    buckets: Mapping[int, float]
    n_samples: int
    tolerances: Tolerances
    samples: tuple[ScoredSample, ...] | None = None


@dataclass(frozen=True, slots=True)
class Baseline:
    model: str
    tasks: Mapping[str, BaselineTask]
    statistics: Statistics = field(default_factory=Statistics)
    tolerances: Tolerances = field(default_factory=Tolerances)
    created_from: str = ""

    @property
    def has_samples(self) -> bool:
        return all(t.samples is not None for t in self.tasks.values())


def run_settings(result: TaskResult) -> dict[str, Any]:
    """The :data:`SETTINGS` of a loaded result (None where the results file does not record one)."""
    settings = {name: result.metadata.get(name) for name in SETTINGS}
    if settings["context_length"] is None:
        settings["context_length"] = result.context_length
    if settings["n_buckets"] is None:
        settings["n_buckets"] = result.summary.n_buckets
    return settings


def one_model(results: Sequence[TaskResult], what: str) -> str:
    names = sorted({r.model for r in results})
    if len(names) != 1:
        raise GateInputError(
            f"{what} holds {len(names)} models ({', '.join(names)}); give the folder of one model "
            "(lm_eval's <output_path>/<model_name_sanitized>) or pass --model"
        )
    return names[0]


def by_task(results: Sequence[TaskResult], what: str) -> dict[str, TaskResult]:
    out: dict[str, TaskResult] = {}
    for r in results:
        if r.task in out:
            raise GateInputError(
                f"{what}: {r.task} appears twice (context lengths {out[r.task].context_length} and "
                f"{r.context_length}); a baseline covers one run at one context length"
            )
        out[r.task] = r
    return out


def make_baseline(
    results: Sequence[TaskResult],
    *,
    tolerances: Tolerances | None = None,
    statistics: Statistics | None = None,
    created_from: str = "",
) -> Baseline:
    """A baseline from the results of one model's run (samples kept when the run logged them)."""
    if not results:
        raise GateInputError("no results to make a baseline from")
    model = one_model(results, "the run")
    tol = tolerances or Tolerances()
    tasks = {}
    for task, r in by_task(results, "the run").items():
        tasks[task] = BaselineTask(
            task=task,
            settings=run_settings(r),
            avg=r.summary.avg,
            gap=r.summary.gap,
            buckets={b.index: b.mean for b in r.summary.buckets},
            n_samples=len(r.samples) if r.has_samples else r.summary.n_samples,
            tolerances=tol,
            samples=r.samples if r.has_samples else None,
        )
    return Baseline(model, tasks, statistics or Statistics(), tol, created_from)


def task_order(task: str) -> tuple[int, str]:
    return (FAMILIES.index(task) if task in FAMILIES else len(FAMILIES), task)


def metric_name(kind: MetricKind, bucket: int | None = None) -> str:
    """The metric's name in every output: ``avg``, ``gap`` or ``bucket_NN``."""
    return f"bucket_{bucket:02d}" if kind is MetricKind.BUCKET else kind.value


@dataclass(frozen=True, slots=True)
class MetricCheck:
    """One compared number. ``change`` is signed so that positive = worse (drop, or gap rise)."""

    task: str
    metric: str  # its name: "avg", "gap" or "bucket_NN" (see metric_name)
    kind: MetricKind
    baseline: float
    current: float
    change: float
    tolerance: float
    method: str  # "McNemar exact", "sign-flip", "permutation", ... or "tolerance"
    p_value: float | None = None
    p_adjusted: float | None = None  # None: not in the Holm family (low power, or tolerance only)
    status: Status = "pass"
    questions: int | None = None  # fewest paired questions in a bucket it depends on (avg: all)
    floor_dropped: bool = True  # gap: whether the run's lowest bucket is below the baseline's


@dataclass(frozen=True, slots=True)
class GateResult:
    model: str
    checks: tuple[MetricCheck, ...]
    paired: bool
    alpha: float
    notes: tuple[str, ...] = ()

    @property
    def failures(self) -> tuple[MetricCheck, ...]:
        return tuple(c for c in self.checks if c.status == "fail")

    @property
    def passed(self) -> bool:
        return not self.failures
