"""A check of a run against a baseline: the fixed family of tested metrics, p-values, Holm, verdict."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from val_probing.buckets import bucket_gap
from val_probing.gate.baseline import (
    REGIONS,
    SETTINGS,
    Baseline,
    BaselineTask,
    GateInputError,
    GateResult,
    MetricCheck,
    MetricKind,
    Regions,
    Statistics,
    Status,
    by_task,
    metric_name,
    one_model,
    run_settings,
    task_order,
)
from val_probing.gate.provenance import environment_differences, run_environment, self_disagreements
from val_probing.gate.stats import (
    Paired,
    holm,
    pair_samples,
    paired_interval,
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
class _Metric:
    """One metric of one paired task: its question weights and whether it is in the Holm family.

    ``weights`` v: the metric's change (positive = worse) is ``v @ (old - new)``; its reported value
    is ``sign * v @ scores`` (the shape reports the middle's dip, ``edges - middle``: sign -1).
    """

    task: str
    kind: MetricKind
    part: int | str | None
    weights: np.ndarray
    status: Status  # "pass" (tested, in the family), "info" or "low power" (not tested)
    margin: float  # the non-inferiority margin, in score units (avg and regions)
    sign: float = 1.0
    blocks: tuple[int, ...] = ()  # the pooled level: its tasks' question counts, side by side


def _metrics(name: str, p: Paired, regions: Regions, n_buckets: int, stats: Statistics) -> list[_Metric]:
    matrix = p.matrix
    margin = stats.min_drop / 100
    region_weights = {}
    for region, buckets in regions.buckets(n_buckets).items():
        columns = [p.column[b] for b in buckets if b in p.column]
        if not columns:
            raise GateInputError(f"{name}: no paired question in region {region} (buckets {buckets})")
        region_weights[region] = matrix[:, columns].mean(axis=1)
    edges = (region_weights["start"] + region_weights["end"]) / 2
    out = [_Metric(name, MetricKind.AVG, None, matrix.mean(axis=1), "pass", margin)]
    out += [_Metric(name, MetricKind.REGION, r, region_weights[r], "pass", margin) for r in REGIONS]
    out.append(_Metric(name, MetricKind.SHAPE, None, region_weights["middle"] - edges, "pass", 0.0, -1.0))
    for b in sorted(p.column):
        status: Status = "info"
        if stats.gate_buckets:
            big = stats.fail_low_power or p.bucket_samples[b] >= stats.min_questions
            status = "pass" if big else "low power"  # a low-power one is never a Holm candidate
        out.append(_Metric(name, MetricKind.BUCKET, b, matrix[:, p.column[b]], status, margin))
    return out


ALL = "all"  # the pooled level: every paired task's questions together (the paper's "All")
# the pooled level's family: the gate's promise, the middle of the context, over every task at once
ALL_METRICS = ("middle",)


def _all_level(paired: Mapping[str, Paired], metrics: Sequence[_Metric]) -> tuple[Paired, list[_Metric]]:
    """The family of the pooled level (the paper's "All": the mean of the tasks' numbers).

    Each metric is the mean over the paired tasks of that task's metric, so its weights are the
    tasks' weights side by side, divided by the number of tasks, over all their questions; the sign
    flips stay per question (every question of every task is one exchangeable pair). A drop that hits
    every task adds up here. Its test weighs each task's block of terms by that task's own noise
    (see :func:`_test_terms`); the reported numbers are the plain mean over the tasks.
    """
    names = list(paired)
    old = np.concatenate([paired[n].old for n in names])
    new = np.concatenate([paired[n].new for n in names])
    pooled = Paired(old, new, {}, {}, np.zeros((old.size, 0)), {}, all(paired[n].binary for n in names))
    out = []
    for template in (m for m in metrics if m.task == names[0]
                     and metric_name(m.kind, m.part) in ALL_METRICS):  # fmt: skip
        same = [next(m for m in metrics if m.task == n and m.kind is template.kind
                     and m.part == template.part) for n in names]  # fmt: skip
        weights = np.concatenate([m.weights for m in same]) / len(names)
        blocks = tuple(paired[n].old.size for n in names)
        out.append(replace(template, task=ALL, weights=weights, blocks=blocks))
    return pooled, out


POOLED_SHARE = 0.5  # the pooled level's share of alpha in the weighted Holm (the tasks get the rest)


def _test_terms(m: _Metric, shifted: np.ndarray) -> np.ndarray:
    """The terms a metric's sign-flip test sums: its own, or for the pooled level each task's block
    divided by that block's root sum of squares (Stouffer's combination of the tasks' paired
    statistics). With equal weights the noisiest task (0/1 scores) would drown a drop that the
    graded one shows clearly; with these, a drop shared by every task adds up. A block's sum of
    squares does not change under sign flips, so the flips stay an exact test."""
    if not m.blocks:
        return shifted
    out, start = shifted.copy(), 0
    for size in m.blocks:
        block = out[start : start + size]
        norm = float(np.sqrt((block**2).sum()))
        if norm > 0:
            block /= norm
        start += size
    return out


def _level_weights(metrics: Sequence[_Metric], tested: Sequence[int]) -> list[float] | None:
    """Weighted Holm: the pooled level's tests share :data:`POOLED_SHARE` of alpha, the tasks' tests
    the rest (equal within a level); None (plain Holm) when only one level is tested."""
    pooled = [i for i in tested if metrics[i].task == ALL]
    tasks = len(tested) - len(pooled)
    if not pooled or not tasks:
        return None
    return [POOLED_SHARE / len(pooled) if metrics[i].task == ALL else (1 - POOLED_SHARE) / tasks
            for i in tested]  # fmt: skip


def _paired_check(
    m: _Metric, p: Paired, rng: np.random.Generator, resamples: int, tested: bool
) -> MetricCheck:
    terms = m.weights * (p.new - p.old)
    old, new = m.sign * float(m.weights @ p.old) * 100, m.sign * float(m.weights @ p.new) * 100
    pv, method = None, "informational"
    if tested:  # H0: worse by at most the margin; sum(terms) + margin is low when worse by more
        shifted = _test_terms(m, terms + m.margin * m.weights)
        pv, method = sign_flip_p(shifted, rng, resamples, binary=p.binary and not m.margin)
    return MetricCheck(
        m.task, metric_name(m.kind, m.part), m.kind, old, new, float(m.weights @ (p.old - p.new)) * 100,
        m.margin * 100, method, pv, status=m.status,
        questions=int(np.count_nonzero(m.weights)), ci=paired_interval(m.sign * terms),
    )  # fmt: skip


def _gap_info(name: str, p: Paired) -> MetricCheck:
    old, new = (float(bucket_gap(x @ p.matrix)) * 100 for x in (p.old, p.new))
    return MetricCheck(name, "gap", MetricKind.GAP, old, new, new - old, 0.0, "informational",
                       status="info", questions=int(p.old.size))  # fmt: skip


def _region_values(buckets: Mapping[int, float], regions: Regions, n_buckets: int) -> dict[str, float]:
    out = {}
    for region, members in regions.buckets(n_buckets).items():
        present = [buckets[b] for b in members if b in buckets]
        out[region] = sum(present) / len(present) if present else float("nan")
    out["shape"] = (out["start"] + out["end"]) / 2 - out["middle"]
    return out


def _tolerance_checks(
    name: str, t: BaselineTask, r: TaskResult, regions: Regions, stats: Statistics
) -> list[MetricCheck]:
    s = r.summary
    now = {b.index: b.mean for b in s.buckets}
    if set(now) != set(t.buckets):
        raise GateInputError(
            f"{name}: buckets differ (baseline {sorted(t.buckets)}, run {sorted(now)}); "
            "are the runs of the same probes?"
        )
    n_buckets = int(t.settings.get("n_buckets") or s.n_buckets)
    old_r, new_r = _region_values(t.buckets, regions, n_buckets), _region_values(now, regions, n_buckets)
    rows: list[tuple[MetricKind, int | str | None, float, float, float]] = [
        (MetricKind.AVG, None, t.avg, s.avg, t.avg - s.avg)
    ]
    rows += [(MetricKind.REGION, g, old_r[g], new_r[g], old_r[g] - new_r[g]) for g in REGIONS]
    rows.append((MetricKind.SHAPE, None, old_r["shape"], new_r["shape"], new_r["shape"] - old_r["shape"]))
    rows += [(MetricKind.BUCKET, i, t.buckets[i], now[i], t.buckets[i] - now[i]) for i in sorted(now)]
    middle_dropped = old_r["middle"] - new_r["middle"] > 1e-9
    out = []
    for kind, part, old, new, change in rows:
        tol = t.tolerances.for_metric(kind)
        gated = kind is not MetricKind.BUCKET or stats.gate_buckets
        failed = gated and change > tol + 1e-9 and (kind is not MetricKind.SHAPE or middle_dropped)
        status: Status = "fail" if failed else ("pass" if gated else "info")
        out.append(MetricCheck(name, metric_name(kind, part), kind, old, new, change, tol, "tolerance",
                               status=status))  # fmt: skip
    out.append(MetricCheck(name, "gap", MetricKind.GAP, t.gap, s.gap, s.gap - t.gap, 0.0, "informational",
                           status="info"))  # fmt: skip
    return out


def _family(metrics: Sequence[_Metric], alpha: float, everything: bool) -> list[int]:
    """The metrics in the Holm family: Tarone's rule for discrete tests, from the layout alone.

    A test of ``n`` paired questions can never reach a p-value below ``2^-n`` (every one of them worse).
    Tests that could not pass Holm's first step anyway only dilute alpha, so the family is the
    candidates with ``2^-n < alpha / m`` for the smallest ``m`` at which at most ``m`` of them qualify
    (Tarone 1990). The choice depends on the question counts, never on the scores, so Holm over it
    keeps the family-wise error at alpha; the others are reported as ``low power``. With the pooled
    level, each level is chosen so within its share of alpha (see :func:`_level_weights`).
    """
    candidates = [i for i, m in enumerate(metrics) if m.status == "pass"]
    if everything:
        return candidates
    pooled = [i for i in candidates if metrics[i].task == ALL]
    tasks = [i for i in candidates if metrics[i].task != ALL]
    if not pooled or not tasks:
        return _tarone(metrics, candidates, alpha)
    kept = _tarone(metrics, tasks, alpha * (1 - POOLED_SHARE)) + _tarone(
        metrics, pooled, alpha * POOLED_SHARE
    )
    return sorted(kept)


def _tarone(metrics: Sequence[_Metric], candidates: Sequence[int], alpha: float) -> list[int]:
    best = {i: 0.5 ** min(int(np.count_nonzero(metrics[i].weights)), 1074) for i in candidates}
    for m in range(1, len(candidates) + 1):
        kept = [i for i in candidates if best[i] < alpha / m]
        if len(kept) <= m:
            return kept
    return list(candidates)


def _power_notes(
    checks: Sequence[MetricCheck], size: int, total: int, stats: Statistics, level_alpha: float
) -> list[str]:
    """Per task, the metrics left out of the Holm family (too few questions), and why."""
    notes = []
    by_task: dict[str, list[MetricCheck]] = defaultdict(list)
    for c in checks:
        if c.status == "low power":
            by_task[c.task].append(c)
    share = (
        ""
        if level_alpha == stats.alpha
        else f" (the tasks' share of {stats.alpha}; the pooled middle has the rest)"
    )
    for task, low in by_task.items():
        pooled = [c for c in low if c.kind is not MetricKind.BUCKET]
        buckets = [c for c in low if c.kind is MetricKind.BUCKET]
        if pooled:
            n = max(c.questions or 0 for c in pooled)
            notes.append(
                f"LOW POWER: {task} {', '.join(c.metric for c in pooled)} cannot fail at this size: with "
                f"{n} paired questions or fewer even every one worse gives p >= 2^-{n}, too large to pass "
                f"Holm over all {total} tests at alpha {level_alpha:g}{share}, so they are left out of the "
                f"family (Tarone; Holm over the other {size}): reported, not failing (more sets or "
                "positions: `val-probing plan` says how many; --fail-low-power tests them anyway)"
            )
        if buckets:
            notes.append(
                f"LOW POWER: {task} gated buckets {', '.join(c.metric for c in buckets)} hold fewer than "
                f"min_questions {stats.min_questions} paired questions: reported, not failing "
                "(--fail-low-power to test them anyway)"
            )
    return notes


def _compare(
    baseline: Baseline, current: Mapping[str, TaskResult], stats: Statistics
) -> tuple[list[MetricCheck], list[str]]:
    """Paired tests for tasks with samples on both sides (Holm over their fixed family),
    tolerances otherwise."""
    order = sorted(baseline.tasks, key=task_order)
    with_samples = [n for n in order if baseline.tasks[n].samples is not None and current[n].has_samples]
    notes = []
    checks: list[MetricCheck] = []
    if with_samples:
        paired, metrics = {}, []
        for name in with_samples:
            t = baseline.tasks[name]
            n_buckets = int(t.settings.get("n_buckets") or current[name].summary.n_buckets)
            paired[name] = pair_samples(name, t.samples or (), current[name].samples, n_buckets)
            metrics += _metrics(name, paired[name], baseline.regions, n_buckets, stats)
        if len(with_samples) > 1:
            paired[ALL], pooled = _all_level(paired, metrics)
            metrics += pooled
        family = _family(metrics, stats.alpha, stats.fail_low_power)
        metrics = [
            m if i in family or m.status != "pass" else replace(m, status="low power")
            for i, m in enumerate(metrics)
        ]
        size = len(family)
        resamples = resamples_for(stats, size)
        rng = np.random.default_rng(stats.seed)
        checks = [_paired_check(m, paired[m.task], rng, resamples, m.status != "info") for m in metrics]
        tested = family
        adjusted = holm([checks[i].p_value or 1.0 for i in tested], _level_weights(metrics, tested))
        middle_p = {c.task: c.p_value or 1.0 for c in checks if c.metric == "middle"}
        middle_drop = {c.task: c.change for c in checks if c.metric == "middle"}
        alpha = stats.alpha
        # the shape fails only when, in addition, the task's middle's own test is below the tasks'
        # share of alpha over the shapes: an improvement of the edges alone (the dip grows, the middle
        # unchanged) then fails at most that share of the time over all shapes together, and with the
        # pooled middle's share at most alpha in all
        level_alpha = alpha * (1 - POOLED_SHARE) if ALL in paired else alpha  # the tasks' share
        shapes = [m.task for m in metrics if m.kind is MetricKind.SHAPE]
        middle_level = level_alpha / len(shapes)
        for i, q in zip(tested, adjusted, strict=True):
            c = checks[i]
            if c.kind is MetricKind.SHAPE:
                middle_worse = middle_p[c.task] < middle_level and middle_drop[c.task] > 0
                failed = q < alpha and c.change > 0 and middle_worse
            else:
                failed = q < alpha and c.change > c.tolerance
            checks[i] = replace(c, p_adjusted=q, status="fail" if failed else "pass")
        for name in with_samples:
            checks.append(_gap_info(name, paired[name]))
        margin = f", margin min_drop {stats.min_drop:g} points" if stats.min_drop else ""
        pooled_level = (
            f", and on the middle pooled over the tasks ({ALL}; half of alpha, the tasks' tests the "
            "other half)"
            if ALL in paired
            else ""
        )
        notes.append(
            f"paired tests on matched samples of {', '.join(with_samples)}: one-sided sign-flip tests of "
            f"'worse' on avg, start, middle, end and shape per task{pooled_level}, Holm-corrected over "
            f"{size} tests at alpha {alpha}{margin}; shape fails only when the middle also got worse "
            f"(its p < {middle_level:.3g}: the tasks' alpha {level_alpha:g} / {len(shapes)} shapes); "
            "buckets and gap "
            + ("gated too" if stats.gate_buckets else "informational (--gate-buckets to gate buckets)")
        )
        notes += _power_notes(checks, size, sum(m.status != "info" for m in metrics), stats, level_alpha)
    for name in order:
        if name in with_samples:
            continue
        whose = "the baseline" if baseline.tasks[name].samples is None else "the run"
        notes.append(
            f"NO PER-SAMPLE SCORES in {whose} for {name}: tolerance comparison only, no statistics "
            "(run lm_eval with --log_samples and re-create the baseline for paired tests)"
        )
        checks += _tolerance_checks(name, baseline.tasks[name], current[name], baseline.regions, stats)
    rank = {n: i for i, n in enumerate([*order, ALL])}
    checks.sort(key=lambda c: rank[c.task])  # stable: each task's rows keep their order
    return checks, notes


def check(
    baseline: Baseline,
    results: Sequence[TaskResult],
    *,
    ignore: frozenset[str] = frozenset(),
    fail_low_power: bool = False,
    gate_buckets: bool = False,
    min_drop: float | None = None,
    strict_environment: bool = False,
) -> GateResult:
    """Compare a run with a baseline (see the module docstring). Raises GateInputError when unusable.

    ``gate_buckets``, ``fail_low_power`` and ``min_drop`` override the baseline's statistics.
    Every difference of the environment (read from the run's results files) is named in the notes;
    ``strict_environment`` makes any difference unusable input.
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
    changed = environment_differences(baseline.environment, run_environment(results))
    if changed and strict_environment:
        raise GateInputError(
            "the run's environment differs from the baseline's (--strict-environment):\n  "
            + "\n  ".join(changed)
            + "\n(re-create the baseline in the new environment, deliberately)"
        )
    if changed:
        notes.append(
            "ENVIRONMENT differs (greedy outputs can change with it; `val-probing calibrate` measures "
            "the noise): " + "; ".join(changed)
        )
    notes += self_disagreements(results)
    if "model" not in ignore and display_name(model) != display_name(baseline.model):
        # a new checkpoint is the point of the gate: a different model is reported, never blocking
        notes.append(f"model differs: baseline {baseline.model!r}, run {model!r} (compared all the same)")
    extra = sorted(set(current) - set(baseline.tasks))
    if extra:
        notes.append(f"not in the baseline, not checked: {', '.join(extra)}")
    stats = baseline.statistics
    if fail_low_power:
        stats = replace(stats, fail_low_power=True)
    if gate_buckets:
        stats = replace(stats, gate_buckets=True)
    if min_drop is not None:
        try:
            stats = replace(stats, min_drop=min_drop)
        except ValueError as err:
            raise GateInputError(f"--{err}".replace("_", "-", 1)) from err
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
