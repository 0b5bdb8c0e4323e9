"""A check of a run against a baseline: which metrics are tested, their p-values, Holm, the verdict."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from val_probing.buckets import bucket_gap
from val_probing.gate.model import (
    SETTINGS,
    Baseline,
    BaselineTask,
    GateInputError,
    GateResult,
    MetricCheck,
    MetricKind,
    Statistics,
    by_task,
    metric_name,
    one_model,
    run_settings,
    task_order,
)
from val_probing.gate.stats import (
    Paired,
    gap_permutation_p,
    holm,
    pair_samples,
    resamples_for,
    sign_flip_p,
)
from val_probing.results import (
    ResultsError,
    TaskResult,
    display_name,
    find_results_files,
    load_results,
    load_results_file,
)


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
class _Planned:
    """One metric of one paired task, before its p-value: what it needs and whether it is tested."""

    task: str
    kind: MetricKind
    bucket: int | None
    questions: int  # the fewest paired questions in a bucket it depends on (avg: the whole task)
    tested: bool  # in the Holm family (can fail the build)


def _plan(name: str, p: Paired, stats: Statistics) -> list[_Planned]:
    per_bucket = p.bucket_samples
    rows: list[tuple[MetricKind, int | None, int]] = [(MetricKind.AVG, None, int(p.old.size))]
    rows += [(MetricKind.BUCKET, b, per_bucket[b]) for b in sorted(p.bucket_sets)]
    rows.append((MetricKind.GAP, None, min(per_bucket.values())))
    return [
        _Planned(name, kind, b, n, stats.fail_low_power or n >= stats.min_questions) for kind, b, n in rows
    ]


def _paired_check(
    plan: _Planned, t: BaselineTask, p: Paired, rng: np.random.Generator, resamples: int
) -> MetricCheck:
    tolerance = t.tolerances.for_metric(plan.kind)
    name = metric_name(plan.kind, plan.bucket)
    if plan.kind is MetricKind.GAP:
        matrix = p.matrix
        old_means, new_means = p.old @ matrix, p.new @ matrix
        old, new = float(bucket_gap(old_means)) * 100, float(bucket_gap(new_means)) * 100
        pv, method = gap_permutation_p(p, rng, resamples)
        floor_dropped = bool(new_means.min() < old_means.min() - 1e-12)
        return MetricCheck(plan.task, name, plan.kind, old, new, new - old, tolerance, method, pv,
                           questions=plan.questions, floor_dropped=floor_dropped)  # fmt: skip
    w = p.matrix.mean(axis=1) if plan.bucket is None else p.matrix[:, p.column[plan.bucket]]
    pv, method = sign_flip_p(w * (p.new - p.old), rng, resamples, binary=p.binary)
    old, new = float(w @ p.old) * 100, float(w @ p.new) * 100
    return MetricCheck(plan.task, name, plan.kind, old, new, old - new, tolerance, method, pv,
                       questions=plan.questions)  # fmt: skip


def _tolerance_checks(name: str, t: BaselineTask, r: TaskResult) -> list[MetricCheck]:
    s = r.summary
    now = {b.index: b.mean for b in s.buckets}
    if set(now) != set(t.buckets):
        raise GateInputError(
            f"{name}: buckets differ (baseline {sorted(t.buckets)}, run {sorted(now)}); "
            "are the runs of the same probes?"
        )
    rows: list[tuple[MetricKind, int | None, float, float, float]] = [
        (MetricKind.AVG, None, t.avg, s.avg, t.avg - s.avg),
        (MetricKind.GAP, None, t.gap, s.gap, s.gap - t.gap),
    ]
    rows += [(MetricKind.BUCKET, i, t.buckets[i], now[i], t.buckets[i] - now[i]) for i in sorted(now)]
    return [
        MetricCheck(name, metric_name(kind, b), kind, old, new, change, t.tolerances.for_metric(kind),
                    "tolerance", status="fail" if change > t.tolerances.for_metric(kind) + 1e-9 else "pass")
        for kind, b, old, new, change in rows
    ]  # fmt: skip


def _low_power_notes(checks: Sequence[MetricCheck], stats: Statistics) -> list[str]:
    notes = []
    by_task: dict[str, list[MetricCheck]] = defaultdict(list)
    for c in checks:
        if c.status == "low power":
            by_task[c.task].append(c)
    buckets_of = Counter(c.task for c in checks if c.kind is MetricKind.BUCKET)
    for task, low in by_task.items():
        fewest = min(c.questions or 0 for c in low)
        low_buckets = [c.metric for c in low if c.kind is MetricKind.BUCKET]
        names = [c.metric for c in low if c.kind is not MetricKind.BUCKET]
        if len(low_buckets) == buckets_of[task] > 1:
            names.insert(int("avg" in names), f"all {len(low_buckets)} buckets")
        else:
            names[int("avg" in names) : int("avg" in names)] = low_buckets
        notes.append(
            f"LOW POWER: {task} {', '.join(names)}: as few as {fewest} paired questions "
            f"per bucket (< min_questions {stats.min_questions}), too few to test at alpha "
            f"{stats.alpha} with useful power: reported, not failing (statistics.fail_low_power: true "
            "in the baseline or check --fail-low-power to fail on them; more sets or positions to test them)"
        )
    return notes


def _compare(
    baseline: Baseline, current: Mapping[str, TaskResult], stats: Statistics
) -> tuple[list[MetricCheck], list[str]]:
    """Paired tests for tasks with samples on both sides (Holm over all of them), tolerances otherwise."""
    order = sorted(baseline.tasks, key=task_order)
    with_samples = [n for n in order if baseline.tasks[n].samples is not None and current[n].has_samples]
    notes = []
    checks: list[MetricCheck] = []
    if with_samples:
        paired = {}
        for name in with_samples:
            t = baseline.tasks[name]
            n_buckets = int(t.settings.get("n_buckets") or current[name].summary.n_buckets)
            paired[name] = pair_samples(name, t.samples or (), current[name].samples, n_buckets)
        plans = [plan for name in with_samples for plan in _plan(name, paired[name], stats)]
        family = [plan.tested for plan in plans]
        resamples = resamples_for(stats, sum(family))
        rng = np.random.default_rng(stats.seed)
        checks = [_paired_check(plan, baseline.tasks[plan.task], paired[plan.task], rng, resamples)
                  for plan in plans]  # fmt: skip
        adjusted = iter(holm([c.p_value or 1.0 for c, tested in zip(checks, family, strict=True) if tested]))
        alpha = stats.alpha
        for i, (c, tested) in enumerate(zip(checks, family, strict=True)):
            if not tested:
                checks[i] = replace(c, status="low power")
                continue
            q = next(adjusted)
            failed = q < alpha and c.change >= c.tolerance and c.floor_dropped
            checks[i] = replace(c, p_adjusted=q, status="fail" if failed else "pass")
        notes.append(
            f"paired tests on matched samples of {', '.join(with_samples)}: one-sided, Holm-corrected "
            f"over {sum(family)} tests at alpha {alpha}; a metric fails when significant AND worse by at "
            "least its tolerance (gap: and the run's lowest bucket is below the baseline's)"
        )
        notes += _low_power_notes(checks, stats)
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
    baseline: Baseline,
    results: Sequence[TaskResult],
    *,
    ignore: frozenset[str] = frozenset(),
    fail_low_power: bool = False,
) -> GateResult:
    """Compare a run with a baseline (see the module docstring). Raises GateInputError when unusable.

    ``fail_low_power`` tests (and may fail on) low-power metrics too, as ``statistics.fail_low_power``.
    """
    if not results:
        raise GateInputError("the run has no VAL results")
    model = one_model(results, "the run")
    current = by_task(results, "the run")
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
    stats = baseline.statistics
    if fail_low_power:
        stats = replace(stats, fail_low_power=True)
    checks, more_notes = _compare(baseline, current, stats)
    notes += more_notes
    paired = all(c.method != "tolerance" for c in checks)
    return GateResult(model, tuple(checks), paired, stats.alpha, tuple(notes))


def load_run(run_dir: Path, model: str | None, baseline: Baseline) -> list[TaskResult]:
    """The run to check: one model's latest results under ``run_dir``.

    A task of the baseline that a folder scan skipped (say, its samples file is empty) is reported
    with its real cause, not as "missing": its results file is read again strictly.
    """
    results = read_run(run_dir, model)
    if set(baseline.tasks) - {r.task for r in results}:
        for source in sorted({r.source for r in results}):
            load_results_file(source, n_boot=10, strict=True)  # raises the cause, naming file and line
    return results


def read_run(run_dir: Path, model: str | None = None) -> list[TaskResult]:
    """The latest results under ``run_dir`` (of ``model`` only, when given), as the gate reads a run
    for a baseline or a check. When nothing loads, the newest file's own error is raised."""
    try:
        results = load_results([run_dir], n_boot=200)
    except ResultsError:
        if Path(run_dir).is_dir():  # a scan skipped every file: say why, from the newest one
            for file in reversed(find_results_files(Path(run_dir))):
                load_results_file(file, n_boot=10, strict=True)
        raise
    if model is not None:
        results = [r for r in results if r.model == model]
        if not results:
            raise GateInputError(f"{run_dir}: no results for model {model!r}")
    return results
