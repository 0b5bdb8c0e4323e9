"""The CI regression gate: a baseline file, and a check of a new run against it.

A **baseline** (YAML, human-editable, schema in docs/ci-gate.md) records, per task, the expected
``avg``, ``gap`` and bucket means (x100), the run settings that produced them (context length,
buckets, limit, seed, probe source/pool/version/hash) and tolerances; beside it a JSONL file keeps
the per-sample reference scores, so a check can PAIR each question of the new run with the same
question of the baseline run, matched on ``(set_id, position_id, key)``.

A **check** compares every task's ``avg``, ``gap`` and every bucket:

* With samples on both sides (the normal case: ``lm_eval --log_samples``), each metric is a
  one-sided paired test of "the new run is worse" (lower avg / bucket mean, larger gap):

  - avg and bucket means are linear in the scores, so their change is ``sum_i w_i (new_i - old_i)``
    with the weights of :func:`val_probing.buckets.summarize` (mean over sets of per-set cell
    means). The p-value comes from a sign-flip randomisation test of the paired differences (under
    "no change" each difference is as likely to be negative as positive). When every non-zero
    weighted difference has the same size (0/1 scores in equal-sized cells) the exact p-value is
    the binomial tail: exactly McNemar's exact test. Otherwise ``resamples`` random sign flips.
  - gap (max - min of the bucket means) is not linear: a paired bootstrap (the same resampled
    questions in both runs, within each set-bucket cell) gives the p-value of "the gap grew".

  All p-values of a check (every task, every metric) are corrected together with Holm's method. A
  metric FAILS only when its Holm-adjusted p-value is below ``alpha`` AND its change is at least
  its tolerance (the minimum effect worth failing a build). Noise that moves a bucket by a few
  questions therefore passes; a real drop concentrated in a few buckets fails even when the
  average hardly moves.

* Without samples on either side, the check falls back to the tolerances alone (a metric fails
  when it is worse by more than its tolerance) and says so in every output.

Unusable input (different settings or probe hash, a task missing, samples that do not match) is a
:class:`GateInputError`: the CLI exits 2. A check never passes silently.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal
from xml.etree import ElementTree

import numpy as np
import yaml

from val_probing.buckets import bucket_of
from val_probing.errors import ValProbingError
from val_probing.records import FAMILIES, iter_jsonl, write_jsonl, write_text_atomic
from val_probing.results import SampleScore, TaskResult, display_name

FORMAT = 1
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
Status = Literal["pass", "fail"]


class GateInputError(ValProbingError):
    """A baseline or run that cannot be compared (the check exits 2)."""


# --------------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True, slots=True)
class Tolerances:
    """Smallest change (x100 points) that fails a build: a drop of avg or a bucket, a rise of gap."""

    avg: float = 2.0
    gap: float = 10.0
    bucket: float = 10.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ValueError(f"tolerance {f.name}: expected a number >= 0, got {value!r}")

    def for_metric(self, metric: str) -> float:
        return self.bucket if metric.startswith("bucket_") else getattr(self, metric)

    def to_dict(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class Statistics:
    """Paired tests: one-sided level ``alpha`` after Holm's correction; resamples for p-values."""

    alpha: float = 0.05
    resamples: int = 4000
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha: expected 0 < alpha < 1, got {self.alpha!r}")
        if isinstance(self.resamples, bool) or not isinstance(self.resamples, int) or self.resamples < 100:
            raise ValueError(f"resamples: expected an int >= 100, got {self.resamples!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed: expected an int, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "resamples": self.resamples, "seed": self.seed}


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
    samples: tuple[SampleScore, ...] | None = None


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


def _one_model(results: Sequence[TaskResult], what: str) -> str:
    names = sorted({r.model for r in results})
    if len(names) != 1:
        raise GateInputError(
            f"{what} holds {len(names)} models ({', '.join(names)}); give the folder of one model "
            "(lm_eval's <output_path>/<model_name_sanitized>) or pass --model"
        )
    return names[0]


def _by_task(results: Sequence[TaskResult], what: str) -> dict[str, TaskResult]:
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
    model = _one_model(results, "the run")
    tol = tolerances or Tolerances()
    tasks = {}
    for task, r in _by_task(results, "the run").items():
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


# --------------------------------------------------------------------------------------------------
# Baseline files


def samples_path_for(path: Path) -> Path:
    """``baseline.yaml`` -> ``baseline.samples.jsonl`` (beside it)."""
    return path.with_name(f"{path.stem}.samples.jsonl")


def _round(x: float) -> float:
    return round(float(x), 4)


def baseline_to_yaml(baseline: Baseline, samples_file: str | None) -> str:
    data: dict[str, Any] = {
        "format": FORMAT,
        "model": baseline.model,
        "created_from": baseline.created_from,
        "samples": samples_file,
        "statistics": baseline.statistics.to_dict(),
        "tolerances": baseline.tolerances.to_dict(),
        "tasks": {},
    }
    for name in sorted(baseline.tasks, key=_task_order):
        t = baseline.tasks[name]
        entry: dict[str, Any] = {
            "settings": dict(t.settings),
            "avg": _round(t.avg),
            "gap": _round(t.gap),
            "n_samples": t.n_samples,
            "buckets": {i: _round(v) for i, v in sorted(t.buckets.items())},
        }
        if t.tolerances != baseline.tolerances:
            entry["tolerances"] = t.tolerances.to_dict()
        data["tasks"][name] = entry
    header = (
        "# val-probing CI baseline: expected scores (x100) of one run; edit tolerances freely.\n"
        "# Schema: docs/ci-gate.md. Written by `val-probing baseline`.\n"
    )
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def _task_order(task: str) -> tuple[int, str]:
    return (FAMILIES.index(task) if task in FAMILIES else len(FAMILIES), task)  # type: ignore[arg-type]


def write_baseline(baseline: Baseline, path: Path) -> list[Path]:
    """Write the YAML (and the samples beside it when there are any), atomically. Returns the files."""
    path = Path(path)
    written = []
    samples_file: str | None = None
    if baseline.has_samples:
        spath = samples_path_for(path)
        rows = (
            {"task": name, "set_id": s.set_id, "position_id": s.position_id, "n_items": s.n_items,
             "key": s.key, "score": s.score}
            for name in sorted(baseline.tasks, key=_task_order)
            for s in baseline.tasks[name].samples or ()
        )  # fmt: skip
        write_jsonl(spath, rows)
        samples_file = spath.name
        written.append(spath)
    text = baseline_to_yaml(baseline, samples_file)
    write_text_atomic(path, text)
    written.insert(0, path)
    return written


def _field(obj: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    if name not in obj:
        raise GateInputError(f"{where}: missing field {name!r}")
    value = obj[name]
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise GateInputError(f"{where}: field {name!r} has the wrong type ({value!r})")
    return value


def _tolerances(obj: Any, base: Tolerances, where: str) -> Tolerances:
    if obj is None:
        return base
    if not isinstance(obj, dict):
        raise GateInputError(f"{where}: 'tolerances' must be a mapping (avg, gap, bucket)")
    unknown = set(obj) - {"avg", "gap", "bucket"}
    if unknown:
        raise GateInputError(f"{where}: unknown tolerances {sorted(unknown)} (expected avg, gap, bucket)")
    try:
        return replace(base, **obj)
    except ValueError as err:
        raise GateInputError(f"{where}: {err}") from err


def read_baseline(path: Path) -> Baseline:
    """Parse and validate a baseline file (and its samples file); errors name the file and field."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise GateInputError(f"{path}: no such baseline file") from err
    except yaml.YAMLError as err:
        raise GateInputError(f"{path}: not valid YAML ({err})") from err
    where = str(path)
    if not isinstance(data, dict):
        raise GateInputError(f"{where}: expected a mapping at the top level")
    if data.get("format") != FORMAT:
        raise GateInputError(f"{where}: field 'format' must be {FORMAT}, got {data.get('format')!r}")
    stats_obj = data.get("statistics") or {}
    try:
        statistics = Statistics(**stats_obj)
    except (TypeError, ValueError) as err:
        raise GateInputError(f"{where}: statistics: {err}") from err
    tolerances = _tolerances(data.get("tolerances"), Tolerances(), where)
    tasks_obj = _field(data, "tasks", dict, where)
    if not tasks_obj:
        raise GateInputError(f"{where}: 'tasks' is empty")
    samples = _read_baseline_samples(path, data.get("samples"))
    tasks = {}
    for name, obj in tasks_obj.items():
        tw = f"{where}: tasks.{name}"
        if not isinstance(obj, dict):
            raise GateInputError(f"{tw}: expected a mapping")
        settings = _field(obj, "settings", dict, tw)
        unknown = set(settings) - set(SETTINGS)
        if unknown:
            raise GateInputError(f"{tw}.settings: unknown {sorted(unknown)} (known: {', '.join(SETTINGS)})")
        buckets_obj = _field(obj, "buckets", dict, tw)
        try:
            buckets = {int(k): float(v) for k, v in buckets_obj.items()}
        except (TypeError, ValueError) as err:
            raise GateInputError(f"{tw}.buckets: expected index: score pairs ({err})") from err
        task_samples = None
        if samples is not None:
            task_samples = tuple(samples.get(name, ()))
            if len(task_samples) != obj.get("n_samples"):
                raise GateInputError(
                    f"{tw}: n_samples is {obj.get('n_samples')} but the samples file has "
                    f"{len(task_samples)} for this task"
                )
        tasks[name] = BaselineTask(
            task=name,
            settings={k: settings.get(k) for k in SETTINGS},
            avg=float(_field(obj, "avg", (int, float), tw)),
            gap=float(_field(obj, "gap", (int, float), tw)),
            buckets=buckets,
            n_samples=int(_field(obj, "n_samples", int, tw)),
            tolerances=_tolerances(obj.get("tolerances"), tolerances, tw),
            samples=task_samples,
        )
    return Baseline(
        model=str(_field(data, "model", str, where)),
        tasks=tasks,
        statistics=statistics,
        tolerances=tolerances,
        created_from=str(data.get("created_from") or ""),
    )


def _read_baseline_samples(path: Path, name: object) -> dict[str, list[SampleScore]] | None:
    if name is None:
        return None
    if not isinstance(name, str):
        raise GateInputError(f"{path}: field 'samples' must be a file name or null")
    spath = path.parent / name
    if not spath.is_file():
        raise GateInputError(f"{path}: samples file {spath} is missing (set 'samples: null' to go without)")
    out: dict[str, list[SampleScore]] = defaultdict(list)
    for lineno, obj in iter_jsonl(spath):
        try:
            out[str(obj["task"])].append(
                SampleScore(obj["set_id"], obj["position_id"], obj["n_items"], str(obj["key"]), obj["score"])
            )
        except (KeyError, TypeError, ValueError) as err:
            raise GateInputError(f"{spath}:{lineno}: bad sample ({err!r})") from err
    return dict(out)


# --------------------------------------------------------------------------------------------------
# Comparison


@dataclass(frozen=True, slots=True)
class MetricCheck:
    """One compared number. ``change`` is signed so that positive = worse (drop, or gap rise)."""

    task: str
    metric: str  # "avg", "gap" or "bucket_NN"
    baseline: float
    current: float
    change: float
    tolerance: float
    method: str  # "McNemar exact", "sign-flip", "paired bootstrap" or "tolerance"
    p_value: float | None = None
    p_adjusted: float | None = None
    status: Status = "pass"


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


def _settings_problems(
    baseline: Baseline, current: Mapping[str, TaskResult], ignore: frozenset[str]
) -> list[str]:
    problems = []
    missing = [t for t in baseline.tasks if t not in current]
    if missing:
        problems.append(f"tasks missing from the run: {', '.join(missing)}")
    for name, t in baseline.tasks.items():
        if name not in current:
            continue
        now = run_settings(current[name])
        for key in SETTINGS:
            if key not in ignore and t.settings.get(key) != now[key]:
                problems.append(f"{name}.{key}: baseline {t.settings.get(key)!r}, run {now[key]!r}")
    return problems


@dataclass(frozen=True, slots=True)
class _Paired:
    """Matched samples of one task: scores (n,) of both runs and each sample's set-bucket cell."""

    old: np.ndarray
    new: np.ndarray
    cell: np.ndarray  # cell id per sample
    cell_bucket: np.ndarray  # bucket of each cell
    cell_size: np.ndarray
    bucket_sets: dict[int, int]  # bucket -> number of sets that have it


def _pair(name: str, old: Sequence[SampleScore], new: Sequence[SampleScore], n_buckets: int) -> _Paired:
    def index(samples: Sequence[SampleScore], which: str) -> dict[tuple[int, int, str], SampleScore]:
        out: dict[tuple[int, int, str], SampleScore] = {}
        for s in samples:
            k = (s.set_id, s.position_id, s.key)
            if k in out:
                raise GateInputError(f"{name}: the {which} has two samples for (set, position, key) {k}")
            out[k] = s
        return out

    a, b = index(old, "baseline"), index(new, "run")
    only_a, only_b = a.keys() - b.keys(), b.keys() - a.keys()
    if only_a or only_b:
        example = sorted(only_a or only_b)[0]
        raise GateInputError(
            f"{name}: the samples do not match: {len(only_a)} baseline questions are not in the run "
            f"and {len(only_b)} run questions are not in the baseline (e.g. (set, position, key) "
            f"{example}); same probes and --limit are needed"
        )
    keys = sorted(a)
    cells: dict[tuple[int, int], int] = {}
    cell_of = np.empty(len(keys), dtype=np.int64)
    for i, k in enumerate(keys):
        s = a[k]
        bucket = bucket_of(s.position_id, s.n_items, n_buckets)
        cell_of[i] = cells.setdefault((s.set_id, bucket), len(cells))
    cell_bucket = np.empty(len(cells), dtype=np.int64)
    for (_set_id, bucket), c in cells.items():
        cell_bucket[c] = bucket
    sets_per_bucket: dict[int, int] = defaultdict(int)
    for _set_id, bucket in cells:
        sets_per_bucket[bucket] += 1
    return _Paired(
        old=np.array([a[k].score for k in keys]),
        new=np.array([b[k].score for k in keys]),
        cell=cell_of,
        cell_bucket=cell_bucket,
        cell_size=np.bincount(cell_of, minlength=len(cells)),
        bucket_sets=dict(sets_per_bucket),
    )


def _weights(p: _Paired, bucket: int | None) -> np.ndarray:
    """Per-sample weights so that ``sum(w * scores)`` is a bucket mean (or the avg when None)."""
    sample_bucket = p.cell_bucket[p.cell]
    sets = np.zeros(int(p.cell_bucket.max()) + 1)
    for b, n in p.bucket_sets.items():
        sets[b] = n
    w = 1.0 / (p.cell_size[p.cell] * sets[sample_bucket])
    if bucket is None:
        return w / len(p.bucket_sets)
    return np.where(sample_bucket == bucket, w, 0.0)


def sign_flip_p(
    terms: np.ndarray, rng: np.random.Generator, resamples: int, *, binary: bool = True
) -> tuple[float, str]:
    """One-sided p-value of ``sum(terms)`` being this low if each term's sign were a coin flip.

    When every non-zero term has the same size the exact binomial tail is returned (for 0/1 scores
    that is McNemar's exact test); otherwise ``resamples`` random sign flips, with the +1 correction.
    """
    nz = terms[terms != 0]
    if nz.size == 0:
        return 1.0, "no change"
    size = np.abs(nz)
    if np.allclose(size, size[0], rtol=1e-9, atol=0):
        m, k = nz.size, int((nz < 0).sum())  # p = P(Binom(m, 1/2) >= k)
        tail = sum(math.comb(m, j) for j in range(k, m + 1))
        return min(1.0, tail / 2**m), "McNemar exact" if binary else "sign test (exact)"
    observed = nz.sum()
    hits = 0
    done = 0
    chunk = max(1, 2_000_000 // nz.size)
    while done < resamples:
        rows = min(chunk, resamples - done)
        signs = rng.integers(0, 2, size=(rows, nz.size)) * 2 - 1
        hits += int(((signs * size).sum(axis=1) <= observed + 1e-12).sum())
        done += rows
    return (1 + hits) / (1 + resamples), "sign-flip"


def _bucket_matrix(p: _Paired) -> np.ndarray:
    """(n, n_present_buckets) weights: ``scores @ M`` gives every bucket mean at once."""
    return np.stack([_weights(p, b) for b in sorted(p.bucket_sets)], axis=1)


def _gaps(scores: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Gap (x1) of scores (n,) or rows of scores (k, n)."""
    means = scores @ matrix
    return means.max(axis=-1) - means.min(axis=-1)


def gap_bootstrap_p(p: _Paired, rng: np.random.Generator, resamples: int) -> float:
    """One-sided p-value of "the gap grew": paired bootstrap within cells (+1 correction).

    Every resample redraws, with replacement, the questions of each set-bucket cell (the same
    questions for both runs) and recomputes both gaps as summarize does: cell means, then the mean
    over sets per bucket, then max - min.
    """
    order = np.argsort(p.cell, kind="stable")
    starts = np.concatenate(([0], np.cumsum(p.cell_size)[:-1]))
    slot_start = starts[p.cell[order]]
    slot_size = p.cell_size[p.cell[order]]
    both = np.stack([p.old[order], p.new[order]])  # (2, n), cells contiguous
    buckets = sorted(p.bucket_sets)
    column = {b: j for j, b in enumerate(buckets)}
    to_bucket = np.zeros((p.cell_size.size, len(buckets)))  # cell means -> bucket means
    for c, b in enumerate(p.cell_bucket):
        to_bucket[c, column[int(b)]] = 1.0 / p.bucket_sets[int(b)]
    hits = 0
    done = 0
    chunk = max(1, 2_000_000 // max(1, order.size))
    while done < resamples:
        rows = min(chunk, resamples - done)
        picks = slot_start + rng.integers(0, slot_size, size=(rows, order.size))
        cell_means = np.add.reduceat(both[:, picks], starts, axis=2) / p.cell_size
        means = cell_means @ to_bucket  # (2, rows, buckets)
        gaps = means.max(axis=-1) - means.min(axis=-1)
        hits += int((gaps[1] - gaps[0] <= 1e-12).sum())
        done += rows
    return (1 + hits) / (1 + resamples)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def resamples_for(stats: Statistics, n_tests: int) -> int:
    """Resamples for Monte Carlo p-values: at least ``10 * n_tests / alpha``.

    A Monte Carlo p-value is never below ``1 / (resamples + 1)``; after Holm the smallest one is
    multiplied by the number of tests, so too few resamples could make a clear drop unfailable.
    """
    return max(stats.resamples, math.ceil(10 * n_tests / stats.alpha))


def _paired_checks(
    name: str, t: BaselineTask, r: TaskResult, resamples: int, rng: np.random.Generator
) -> list[MetricCheck]:
    assert t.samples is not None
    n_buckets = int(t.settings.get("n_buckets") or r.summary.n_buckets)
    p = _pair(name, t.samples, r.samples, n_buckets)
    diff = p.new - p.old
    binary = bool(np.isin(p.old, (0.0, 1.0)).all() and np.isin(p.new, (0.0, 1.0)).all())
    checks = []
    for metric, bucket in [("avg", None), *((f"bucket_{b:02d}", b) for b in sorted(p.bucket_sets))]:
        w = _weights(p, bucket)
        pv, method = sign_flip_p(w * diff, rng, resamples, binary=binary)
        old, new = float(w @ p.old) * 100, float(w @ p.new) * 100
        checks.append(
            MetricCheck(name, metric, old, new, old - new, t.tolerances.for_metric(metric), method, pv)
        )
    matrix = _bucket_matrix(p)
    old_gap, new_gap = float(_gaps(p.old, matrix)) * 100, float(_gaps(p.new, matrix)) * 100
    gp = gap_bootstrap_p(p, rng, resamples)
    checks.append(
        MetricCheck(
            name, "gap", old_gap, new_gap, new_gap - old_gap, t.tolerances.gap, "paired bootstrap", gp
        )
    )
    return checks


def _tolerance_checks(name: str, t: BaselineTask, r: TaskResult) -> list[MetricCheck]:
    s = r.summary
    now = {b.index: b.mean for b in s.buckets}
    if set(now) != set(t.buckets):
        raise GateInputError(
            f"{name}: buckets differ (baseline {sorted(t.buckets)}, run {sorted(now)}); "
            "are the runs of the same probes?"
        )
    rows = [("avg", t.avg, s.avg, t.avg - s.avg), ("gap", t.gap, s.gap, s.gap - t.gap)]
    rows += [(f"bucket_{i:02d}", t.buckets[i], now[i], t.buckets[i] - now[i]) for i in sorted(now)]
    return [
        MetricCheck(name, m, old, new, change, t.tolerances.for_metric(m), "tolerance",
                    status="fail" if change > t.tolerances.for_metric(m) + 1e-9 else "pass")
        for m, old, new, change in rows
    ]  # fmt: skip


def questions_needed(n_tests: int, alpha: float) -> int:
    """Fewest paired questions a bucket needs so that, if ALL of them got worse, it could fail.

    The smallest exact one-sided p-value of n questions is 2**-n; Holm multiplies the smallest
    p-value by the number of tests.
    """
    return math.ceil(math.log2(n_tests / alpha) + 1e-12)


def _power_notes(baseline: Baseline, tasks: Sequence[str], n_tests: int) -> list[str]:
    need = questions_needed(n_tests, baseline.statistics.alpha)
    notes = []
    for name in tasks:
        t = baseline.tasks[name]
        n_buckets = int(t.settings.get("n_buckets") or len(t.buckets))
        counts: dict[int, int] = defaultdict(int)
        for s in t.samples or ():
            counts[bucket_of(s.position_id, s.n_items, n_buckets)] += 1
        largest = max(counts.values(), default=0)
        if largest < need:
            notes.append(
                f"LOW POWER: {name} has at most {largest} questions per bucket; a bucket needs {need} "
                f"to be able to fail on its own at this alpha and number of tests, so only its avg and "
                "gap can fail (use more sets or positions for bucket-level sensitivity)"
            )
    return notes


def _compare(baseline: Baseline, current: Mapping[str, TaskResult]) -> tuple[list[MetricCheck], list[str]]:
    """Paired tests for tasks with samples on both sides (Holm over all of them), tolerances otherwise."""
    order = sorted(baseline.tasks, key=_task_order)
    with_samples = [n for n in order if baseline.tasks[n].samples is not None and current[n].has_samples]
    notes = []
    checks: list[MetricCheck] = []
    if with_samples:
        n_tests = sum(len(baseline.tasks[n].buckets) + 2 for n in with_samples)
        resamples = resamples_for(baseline.statistics, n_tests)
        rng = np.random.default_rng(baseline.statistics.seed)
        for name in with_samples:
            checks += _paired_checks(name, baseline.tasks[name], current[name], resamples, rng)
        adjusted = holm([c.p_value for c in checks if c.p_value is not None])
        alpha = baseline.statistics.alpha
        checks = [
            replace(c, p_adjusted=q, status="fail" if q < alpha and c.change >= c.tolerance else "pass")
            for c, q in zip(checks, adjusted, strict=True)
        ]
        notes.append(
            f"paired tests on matched samples of {', '.join(with_samples)}: one-sided, Holm-corrected "
            f"over {len(checks)} tests at alpha {alpha}; a metric fails when significant AND worse by at "
            "least its tolerance"
        )
        notes += _power_notes(baseline, with_samples, len(checks))
    for name in order:
        if name in with_samples:
            continue
        whose = "the baseline" if baseline.tasks[name].samples is None else "the run"
        notes.append(
            f"NO PER-SAMPLE SCORES in {whose} for {name}: tolerance comparison only, no statistics "
            "(run lm_eval with --log_samples and re-create the baseline for paired tests)"
        )
        checks += _tolerance_checks(name, baseline.tasks[name], current[name])
    rank = {n: i for i, n in enumerate(order)}
    checks.sort(key=lambda c: rank[c.task])  # stable: each task's rows keep their order
    return checks, notes


def check(
    baseline: Baseline, results: Sequence[TaskResult], *, ignore: frozenset[str] = frozenset()
) -> GateResult:
    """Compare a run with a baseline (see the module docstring). Raises GateInputError when unusable."""
    if not results:
        raise GateInputError("the run has no VAL results")
    model = _one_model(results, "the run")
    current = _by_task(results, "the run")
    unknown = ignore - set(SETTINGS) - {"model"}
    if unknown:
        raise GateInputError(
            f"cannot ignore {sorted(unknown)}: known settings are model, {', '.join(SETTINGS)}"
        )
    problems = _settings_problems(baseline, current, ignore)
    if problems:
        raise GateInputError(
            "the run cannot be compared with the baseline:\n  " + "\n  ".join(problems)
            + "\n(re-create the baseline for new settings, or --ignore SETTING when a difference is harmless)"
        )  # fmt: skip
    notes = []
    if "model" not in ignore and display_name(model) != display_name(baseline.model):
        # a new checkpoint is the point of the gate: a different model is reported, never blocking
        notes.append(f"model differs: baseline {baseline.model!r}, run {model!r} (compared all the same)")
    extra = sorted(set(current) - set(baseline.tasks))
    if extra:
        notes.append(f"not in the baseline, not checked: {', '.join(extra)}")
    checks, more_notes = _compare(baseline, current)
    notes += more_notes
    paired = all(c.method != "tolerance" for c in checks)
    return GateResult(model, tuple(checks), paired, baseline.statistics.alpha,
                      tuple(notes))  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Output


def _p(x: float | None) -> str:
    return "-" if x is None else (f"{x:.2g}" if x < 0.01 else f"{x:.3f}")


def _delta(c: MetricCheck) -> str:
    return f"{round(c.current - c.baseline, 1) + 0.0:+.1f}"  # + 0.0: no "-0.0"


def _rows(result: GateResult, only_interesting: bool) -> list[list[str]]:
    rows = []
    for c in result.checks:
        if only_interesting and c.metric.startswith("bucket_") and c.status == "pass" and c.change <= 0:
            continue
        rows.append([
            c.task, c.metric, f"{c.baseline:.1f}", f"{c.current:.1f}", _delta(c),
            f"{c.tolerance:.1f}", _p(c.p_adjusted), c.method,
            "FAIL" if c.status == "fail" else "ok",
        ])  # fmt: skip
    return rows


_HEAD = ["task", "metric", "baseline", "run", "delta", "tol", "p (Holm)", "method", "status"]


def verdict(result: GateResult) -> str:
    if result.passed:
        return f"PASS: {result.model}, {len(result.checks)} checks"
    names = ", ".join(f"{c.task}/{c.metric}" for c in result.failures)
    return (
        f"REGRESSION: {result.model}, {len(result.failures)} of {len(result.checks)} checks failed ({names})"
    )


def format_table(result: GateResult) -> str:
    rows = [_HEAD, *_rows(result, only_interesting=False)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_HEAD))]
    lines = ["  ".join(cell.rjust(w) if i in (2, 3, 4, 5, 6) else cell.ljust(w)
                       for i, (cell, w) in enumerate(zip(r, widths, strict=True))).rstrip()
             for r in rows]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join([*lines, "", *result.notes, verdict(result)])


def format_markdown(result: GateResult) -> str:
    """A CI job summary: verdict, notes, and the table (buckets that did not get worse left out)."""
    icon = "✅" if result.passed else "❌"
    out = [f"### {icon} VAL probing gate — {verdict(result)}", ""]
    out += [f"> {note}" for note in result.notes]
    out += ["", "| " + " | ".join(_HEAD) + " |", "|" + "---|" * len(_HEAD)]
    out += ["| " + " | ".join(r) + " |" for r in _rows(result, only_interesting=True)]
    out += ["", "Scores x100; delta = run - baseline; buckets that did not get worse are not listed."]
    return "\n".join(out) + "\n"


def junit_xml(result: GateResult) -> str:
    """JUnit XML: one testsuite per task, one testcase per metric (avg, gap, every bucket)."""
    root = ElementTree.Element(
        "testsuites", name="val-probing gate", tests=str(len(result.checks)),
        failures=str(len(result.failures)),
    )  # fmt: skip
    by_task: dict[str, list[MetricCheck]] = defaultdict(list)
    for c in result.checks:
        by_task[c.task].append(c)
    for task, checks in by_task.items():
        suite = ElementTree.SubElement(
            root, "testsuite", name=f"val_{task}", tests=str(len(checks)),
            failures=str(sum(c.status == "fail" for c in checks)),
        )  # fmt: skip
        for c in checks:
            case = ElementTree.SubElement(suite, "testcase", classname=f"val_probing.{task}", name=c.metric)
            detail = (
                f"baseline {c.baseline:.2f}, run {c.current:.2f}, worse by {c.change:.2f} (tolerance "
                f"{c.tolerance:.2f}); {c.method}"
                + (f", p={c.p_value:.3g}, Holm p={c.p_adjusted:.3g}" if c.p_adjusted is not None else "")
            )
            if c.status == "fail":
                ElementTree.SubElement(case, "failure", message=f"{task}/{c.metric} regressed").text = detail
            else:
                ElementTree.SubElement(case, "system-out").text = detail
    ElementTree.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(root, encoding="unicode") + "\n"
