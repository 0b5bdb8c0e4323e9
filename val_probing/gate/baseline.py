"""The gate's records: a baseline (made from a run by :func:`make_baseline`) and the settings a check
runs under (tolerances, statistics, depth regions), and what a check returns (one compared metric, the
result). Its file is :mod:`.baseline_file`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, Literal

from val_probing.buckets import ScoredSample
from val_probing.errors import ValProbingError
from val_probing.records import FAMILIES
from val_probing.results import TaskResult
from val_probing.typed import FieldError, is_int, is_number

FORMAT = 3  # 3: depth regions and the environment; 2: content-addressed samples (1 and 2 are refused)


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


Status = Literal["pass", "fail", "low power", "info"]


class MetricKind(Enum):
    """What a compared number is; its value names the tolerance that applies (tolerance mode)."""

    AVG = "avg"
    REGION = "region"  # start, middle or end: the pooled buckets of a depth range
    SHAPE = "shape"  # the middle's dip below the edges (mean of start and end minus middle)
    BUCKET = "bucket"
    GAP = "gap"  # max - min of the bucket means: informational only


REGIONS = ("start", "middle", "end")


class GateInputError(ValProbingError):
    """A baseline or run that cannot be compared (the check exits 2)."""


def _number(name: str, value: object, rule: str, ok: Callable[[float], bool]) -> None:
    if not is_number(value) or not ok(float(value)):
        raise FieldError(name, f"expected {rule}, got {value!r}")


def _integer(name: str, value: object, minimum: int) -> None:
    if not is_int(value) or value < minimum:
        raise FieldError(name, f"expected an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True, slots=True)
class Tolerances:
    """Tolerance mode only (a side without per-sample scores): the smallest change (x100 points) that
    fails, a drop of avg, a region (and the shape's dip growing) or a gated bucket."""

    avg: float = 2.0
    region: float = 5.0
    bucket: float = 10.0
    gap: float = 0.0  # ignored since format 3 (the gap is informational); accepted for older callers

    def __post_init__(self) -> None:
        for f in fields(self):
            _number(f.name, getattr(self, f.name), "a number >= 0", lambda x: x >= 0)

    def for_metric(self, kind: MetricKind) -> float:
        name = "region" if kind is MetricKind.SHAPE else kind.value
        return float(getattr(self, name)) if name in ("avg", "region", "bucket") else 0.0

    def to_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in TOLERANCE_KEYS}


TOLERANCE_KEYS = ("avg", "region", "bucket")  # what a baseline's tolerances may set


@dataclass(frozen=True, slots=True)
class Statistics:
    """Paired tests: one-sided level ``alpha`` after Holm's correction; resamples for p-values.

    The gated family of a task is fixed: avg, the regions start, middle and end, and the shape.
    ``min_drop`` (x100 points) is the non-inferiority margin: avg and a region fail only on evidence
    of a drop larger than it. Buckets are informational unless ``gate_buckets``; a gated bucket is
    tested only when it holds at least ``min_questions`` paired questions (else ``low power``),
    unless ``fail_low_power``.
    """

    alpha: float = 0.05
    resamples: int = 4000
    seed: int = 0
    min_drop: float = 0.0
    gate_buckets: bool = False
    min_questions: int = 16
    fail_low_power: bool = False

    def __post_init__(self) -> None:
        _number("alpha", self.alpha, "a number with 0 < alpha < 1", lambda x: 0 < x < 1)
        _integer("resamples", self.resamples, 100)
        _integer("seed", self.seed, 0)
        _number("min_drop", self.min_drop, "a number of points with 0 <= min_drop < 100",
                lambda x: 0 <= x < 100)  # fmt: skip
        _integer("min_questions", self.min_questions, 1)
        for name in ("gate_buckets", "fail_low_power"):
            if not isinstance(getattr(self, name), bool):
                raise FieldError(name, f"expected true or false, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class Regions:
    """Depth regions, by a bucket's centre depth ``(b + 0.5) / n_buckets``: start ``[0, start)``,
    middle ``[start, end)``, end ``[end, 1]``. The defaults read the paper's U-curve: the first and
    last quarter of the context against the middle half (8 buckets: 0-1, 2-5, 6-7)."""

    start: float = 0.25
    end: float = 0.75

    def __post_init__(self) -> None:
        for f in fields(self):
            _number(f.name, getattr(self, f.name), "a depth with 0 < depth < 1", lambda x: 0 < x < 1)
        if not self.start < self.end:
            raise FieldError("start", f"expected start < end, got start {self.start}, end {self.end}")

    def of_bucket(self, bucket: int, n_buckets: int) -> str:
        depth = (bucket + 0.5) / n_buckets
        return "start" if depth < self.start else ("middle" if depth < self.end else "end")

    def buckets(self, n_buckets: int) -> dict[str, list[int]]:
        """Region -> its buckets; a region without a bucket is unusable input."""
        out: dict[str, list[int]] = {r: [] for r in REGIONS}
        for b in range(n_buckets):
            out[self.of_bucket(b, n_buckets)].append(b)
        empty = [r for r, bs in out.items() if not bs]
        if empty:
            raise GateInputError(
                f"regions: {', '.join(empty)} holds no bucket at {n_buckets} buckets (regions.start "
                f"{self.start}, regions.end {self.end}); widen them in the baseline or use more buckets"
            )
        return out

    def to_dict(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}


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
    regions: Regions = field(default_factory=Regions)
    environment: Mapping[str, str | None] = field(default_factory=dict)

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
    regions: Regions | None = None,
    environment: Mapping[str, str | None] | None = None,
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
    if environment is None:
        from val_probing.gate.provenance import run_environment

        environment = run_environment(results)
    return Baseline(model, tasks, statistics or Statistics(), tol, created_from, regions or Regions(),
                    dict(environment))  # fmt: skip


def task_order(task: str) -> tuple[int, str]:
    return (FAMILIES.index(task) if task in FAMILIES else len(FAMILIES), task)


def metric_name(kind: MetricKind, part: int | str | None = None) -> str:
    """The metric's name in every output: ``avg``, ``start``/``middle``/``end``, ``shape``, ``gap``
    or ``bucket_NN``."""
    if kind is MetricKind.BUCKET:
        return f"bucket_{part:02d}"
    return str(part) if kind is MetricKind.REGION else kind.value


@dataclass(frozen=True, slots=True)
class MetricCheck:
    """One compared number (x100). ``change`` is signed so that positive = worse (a drop; for the
    shape and the gap, a rise). ``ci``: 95% interval of ``current - baseline`` (paired)."""

    task: str
    metric: str  # its name (see metric_name)
    kind: MetricKind
    baseline: float
    current: float
    change: float
    tolerance: float  # tolerance mode: the change that fails; paired: the margin min_drop
    method: str  # "McNemar exact", "sign-flip", ..., "tolerance" or "informational"
    p_value: float | None = None
    p_adjusted: float | None = None  # None: not in the Holm family (informational, low power)
    status: Status = "pass"
    questions: int | None = None  # paired questions it pools
    ci: tuple[float, float] | None = None


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

    @property
    def gated(self) -> tuple[MetricCheck, ...]:
        """The checks that can fail the build (tested, or compared with a tolerance)."""
        return tuple(c for c in self.checks if c.status in ("pass", "fail"))
