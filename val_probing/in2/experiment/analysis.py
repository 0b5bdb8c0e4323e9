"""The compare stage of the IN2 placement experiment: paired differences, the gate's tests, the report.

For each comparison X -> Y (base -> A, base -> B, B -> A) and task, the questions of the two runs are
matched on (set, position, key) by the gate (``gate.stats.pair_samples``) and:

* the difference Y - X of avg, gap and every bucket mean (x100), with a 95% paired bootstrap interval
  (questions resampled with replacement, the same questions for both runs; the bucket weights are the
  gate's, so the point estimates are exactly the summaries' differences);
* the gate's one-sided paired permutation tests in both directions: ``gate.check`` with a baseline made
  from X and the run Y ("Y worse") and with a baseline from Y and the run X ("Y better"); tolerances 0
  (significance alone decides), Holm over every test of one check;
* a verdict per task: ``Y better`` / ``Y worse`` (Holm-adjusted p below alpha on avg) or ``no detectable
  effect``, and the minimum detectable avg difference at 80% power, ``(z(1-alpha) + z(0.8)) x SE``, with the
  number of questions that would make the observed difference detectable.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np

from val_probing.files import write_text_atomic
from val_probing.in2.experiment.design import (
    ARM_LABEL,
    ComparisonSettings,
    ExperimentConfig,
    arm_of,
    model_name,
)

if TYPE_CHECKING:
    from val_probing.in2.experiment.stages import Run
    from val_probing.results import TaskResult

POWER = 0.8


def paired_differences(x: TaskResult, y: TaskResult, n_boot: int, seed: int) -> dict[str, Any]:
    """Y - X (x100) of avg, gap and each bucket, with 95% paired bootstrap intervals and the avg's SE."""
    from val_probing.buckets import bucket_gap
    from val_probing.gate.stats import pair_samples

    n_buckets = int(x.metadata.get("n_buckets") or x.summary.n_buckets)
    p = pair_samples(x.task, x.samples, y.samples, n_buckets)
    m = p.matrix  # (n, buckets): a bucket mean = scores @ column
    w_avg = m.mean(axis=1)
    rng = np.random.default_rng(seed)
    n = p.old.size
    counts = rng.multinomial(n, np.full(n, 1 / n), size=n_boot).astype(np.float64)  # (B, n)

    def boot(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with np.errstate(invalid="ignore", divide="ignore"):  # a resample may miss a bucket: NaN, left out
            buckets = (counts * scores) @ m / (counts @ m)
        return buckets, (counts * scores) @ w_avg / (counts @ w_avg)

    (bx, ax), (by, ay) = boot(p.old), boot(p.new)
    point_b = (p.new - p.old) @ m * 100
    point_avg = float((p.new - p.old) @ w_avg) * 100
    point_gap = float(bucket_gap(p.new @ m) - bucket_gap(p.old @ m)) * 100

    def ci(values: np.ndarray) -> list[float]:
        lo, hi = np.nanpercentile(values * 100, [2.5, 97.5])
        return [round(float(lo), 2), round(float(hi), 2)]

    columns = sorted(p.column, key=lambda b: p.column[b])
    return {
        "questions": int(n),
        "avg": {
            "diff": round(point_avg, 2),
            "ci95": ci(ay - ax),
            "se": round(float(np.std(ay - ax)) * 100, 3),
        },
        "gap": {"diff": round(point_gap, 2), "ci95": ci(bucket_gap(by) - bucket_gap(bx))},
        "buckets": {
            f"{b:02d}": {
                "diff": round(float(point_b[p.column[b]]), 2),
                "ci95": ci(by[:, p.column[b]] - bx[:, p.column[b]]),
            }
            for b in columns
        },
    }


def gate_tests(
    x: Sequence[TaskResult], y: Sequence[TaskResult], settings: ComparisonSettings, seed: int
) -> dict[str, dict[str, dict[str, Any]]]:
    """task -> metric -> the gate's Holm-adjusted one-sided p-values: ``y_worse`` (baseline X, run Y)
    and ``y_better`` (baseline Y, run X), with the test's method and whether it was tested."""
    from val_probing import gate

    stats = gate.Statistics(alpha=settings.alpha, resamples=settings.resamples, seed=seed, gate_buckets=True)
    zero = gate.Tolerances(avg=0.0, gap=0.0, bucket=0.0)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for direction, base, run in (("y_worse", x, y), ("y_better", y, x)):
        baseline = gate.make_baseline(base, tolerances=zero, statistics=stats)
        result = gate.check(baseline, run, ignore=frozenset({"model"}))
        for c in result.checks:
            row = out.setdefault(c.task, {}).setdefault(c.metric, {})
            row[direction] = c.p_adjusted  # None: low power (not in the Holm family)
            row[f"{direction}_raw"] = c.p_value
            row[f"{direction}_fails"] = c.status == "fail"
            row["method"] = c.method
            row["status"] = c.status if direction == "y_worse" else row.get("status", c.status)
    return out


def verdict(diff: Mapping[str, Any], tests: Mapping[str, Any], alpha: float) -> dict[str, Any]:
    """Better / worse / no detectable effect on avg, and the scale that would detect the observed one."""
    z = NormalDist().inv_cdf(1 - alpha) + NormalDist().inv_cdf(POWER)
    se = diff["avg"]["se"]
    mde = z * se
    avg = tests.get("avg", {})
    if avg.get("y_better") is None and avg.get("y_worse") is None:
        said = "not tested (low power)"  # fewer than min_questions per bucket: the gate does not test it
    elif avg.get("y_better_fails"):
        said = "better"
    elif avg.get("y_worse_fails"):
        said = "worse"
    else:
        said = "no detectable effect"
    observed = abs(diff["avg"]["diff"])
    needed = None
    if said in ("no detectable effect", "not tested (low power)") and observed > 0 and se > 0:
        needed = int(np.ceil(diff["questions"] * (mde / observed) ** 2))
    return {
        "avg": said,
        "mde_avg_points": round(mde, 2),
        "questions": diff["questions"],
        "questions_to_detect_observed": needed,
    }


def compare_runs(
    runs: Mapping[str, Sequence[TaskResult]], config: ExperimentConfig, seed: int = 0
) -> dict[str, Any]:
    """Every per-question comparison of ``config.comparisons()``: differences, tests, verdicts per task."""
    settings = config.comparison
    out: dict[str, Any] = {"comparisons": {}, "verdicts": {}, "alpha": settings.alpha}
    for x_name, y_name in config.comparisons():
        key = f"{y_name} vs {x_name}"
        xs = {r.task: r for r in runs[x_name]}
        ys = {r.task: r for r in runs[y_name]}
        tests = gate_tests(runs[x_name], runs[y_name], settings, seed)
        per_task = {}
        for task in config.probes.families:
            diff = paired_differences(xs[task], ys[task], settings.bootstrap, seed)
            per_task[task] = {
                **diff,
                "tests": tests[task],
                "verdict": verdict(diff, tests[task], settings.alpha),
            }
            out["verdicts"][f"{key}: {task}"] = per_task[task]["verdict"]["avg"]
        out["comparisons"][key] = per_task
    out["curves"] = {
        name: {
            r.task: {
                "avg": r.summary.avg,
                "gap": r.summary.gap,
                "buckets": [b.mean for b in r.summary.buckets],
            }
            for r in results
        }
        for name, results in runs.items()
    }
    return out


def _ci(v: Mapping[str, Any]) -> str:
    lo, hi = v["ci95"]
    return f"{v['diff']:+.1f} [{lo:+.1f}, {hi:+.1f}]"


def _p(row: Mapping[str, Any], key: str) -> str:
    """The Holm-adjusted p-value; for a low-power metric (not tested) its raw p-value, marked."""
    value = row.get(key)
    if value is not None:
        return f"{value:.3g}"
    raw = row.get(f"{key}_raw")
    return "–" if raw is None else f"({raw:.3g}, low power)"


def comparison_markdown(found: Mapping[str, Any]) -> str:
    """The table: per comparison and task, avg and gap differences with intervals, the gate's p-values
    (Holm-adjusted, one-sided each way), the verdict and the minimum detectable avg difference."""
    from val_probing.tables import markdown_table

    header = [
        "comparison",
        "task",
        "n",
        "Δavg [95% CI]",
        "p better",
        "p worse",
        "Δgap [95% CI]",
        "verdict (avg)",
        "MDE avg",
    ]
    rows = []
    bucket_rows = []
    for key, per_task in found["comparisons"].items():
        for task, r in per_task.items():
            avg = r["tests"].get("avg", {})
            v = r["verdict"]
            rows.append(
                [
                    key,
                    task,
                    str(r["questions"]),
                    _ci(r["avg"]),
                    _p(avg, "y_better"),
                    _p(avg, "y_worse"),
                    _ci(r["gap"]),
                    v["avg"],
                    f"{v['mde_avg_points']:.1f}",
                ]
            )
            bucket_rows.append([key, task, *(f"{b['diff']:+.0f}" for b in r["buckets"].values())])
    n_b = max(len(r) for r in bucket_rows) - 2
    lines = markdown_table(header, rows, right=(2, 3, 4, 5, 6, 8))
    lines += ["", "Per-bucket differences (x100 points, position buckets from the start of the context):", ""]
    lines += markdown_table(
        ["comparison", "task", *(f"b{i:02d}" for i in range(n_b))],
        bucket_rows,
        right=tuple(range(2, n_b + 2)),
    )
    return "\n".join(lines) + "\n"


def power_markdown(power: Mapping[str, Any]) -> str:
    tested = "yes" if power["tested"] else "NO, low power"
    lines = [
        f"Questions per bucket: {power['questions_per_bucket']} (the gate tests a metric when every "
        f"bucket it needs holds {power['min_questions']}: {tested}). Simulated "
        f"power through gate.check ({power['draws']} draws per effect, 0/1 scores at p = 0.5, alpha "
        f"{power['alpha']}, Holm):",
        "",
    ]
    from val_probing.tables import markdown_table

    rows = [[f"+{d} points", f"{v['avg']:.0%}", f"{v['bucket']:.0%}"] for d, v in power["by_effect"].items()]
    return "\n".join([*lines, *markdown_table(["true effect", "power avg", "power bucket"], rows)]) + "\n"


def model_label(model: str, config: ExperimentConfig) -> str:
    """An evaluated model's label: its arm's, with the seed when there are several."""
    arm = arm_of(model)
    label = ARM_LABEL.get(arm, arm)
    return label if config.replicates == 1 or model == arm else f"{label} {model.rpartition('_')[2]}"


def plot_arm_curves(runs: Mapping[str, Sequence[TaskResult]], config: ExperimentConfig) -> Any:
    """One panel per task: each arm's mean curve over seeds, its seeds' spread (min-max band) and every
    seed as a thin line; the middle region shaded."""
    import matplotlib.pyplot as plt

    from val_probing.gate import Regions

    families = config.probes.families
    fig, axes = plt.subplots(1, len(families), figsize=(6 * len(families), 4), squeeze=False)
    regions = Regions()
    for ax, task in zip(axes[0], families, strict=True):
        for i, arm in enumerate(config.arms):
            curves = np.array(
                [
                    [
                        b.mean
                        for b in next(r for r in runs[model_name(arm, s)] if r.task == task).summary.buckets
                    ]
                    for s in config.seeds
                ]
            )
            n = curves.shape[1]
            x = (np.arange(n) + 0.5) / n
            color = f"C{i}"
            for c in curves:
                ax.plot(x, c, color=color, alpha=0.25, linewidth=0.8)
            ax.fill_between(x, curves.min(axis=0), curves.max(axis=0), color=color, alpha=0.12)
            ax.plot(x, curves.mean(axis=0), color=color, linewidth=2.2, label=ARM_LABEL.get(arm, arm))
        ax.axvspan(regions.start, regions.end, color="0.9", zorder=0)
        ax.set_xlim(0, 1)
        ax.set_xlabel("needle depth in the context (bucket centre)")
        ax.set_ylabel(f"val_{task} score (x100)")
        ax.set_title(f"val_{task}: {len(config.seeds)} seeds per arm (band: min-max over seeds)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def write_report(
    folder: Path, runs: Mapping[str, Sequence[TaskResult]], found: dict[str, Any], run: Run
) -> None:
    """``results.json``, ``summary.md`` (endpoint, curves, comparisons, power) and ``curves.png``/``.svg``."""
    from val_probing.plots import plot_position_curves, save_figure
    from val_probing.tables import table_rows, to_markdown

    config = run.config
    labelled = [
        dataclasses.replace(r, model=model_label(name, config)) for name, rs in runs.items() for r in rs
    ]
    fig = plot_arm_curves(runs, config) if config.replicates > 1 else plot_position_curves(labelled)
    arms = " vs ".join(ARM_LABEL.get(a, a) for a in config.arms)
    fig.suptitle(f"{config.name}: {arms}", fontsize=11)
    save_figure(fig, folder / "curves", formats=("png", "svg"))
    write_text_atomic(folder / "results.json", json.dumps(found, indent=2, default=str) + "\n")
    text = [f"# {config.name}\n"]
    if "endpoint" in found:
        from val_probing.in2.experiment.endpoint import endpoint_markdown

        text += ["## Primary endpoint (pre-registered)\n", endpoint_markdown(found["endpoint"])]
    text += [
        "## Curves (avg and gap x100)\n",
        to_markdown(table_rows(labelled)),
        "\n## Differences (Y - X, x100 points, per question)\n",
        comparison_markdown(found),
        "\n## Power of the per-question tests (decided before any model ran)\n",
        power_markdown(found["power"]),
    ]
    write_text_atomic(folder / "summary.md", "\n".join(text))
