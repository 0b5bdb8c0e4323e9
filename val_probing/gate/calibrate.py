"""The noise floor: two runs of the same configuration, compared question by question.

Greedy decoding is not always reproducible: vLLM's prefix caching and batching can change outputs
between runs of the same model and settings (vllm #54490, #5543). :func:`calibrate` reports, per task
and depth region, how many paired questions changed their score (the flip rate), and what the gate
would have said had the first run been the baseline and the second the run to check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from val_probing.gate.baseline import (
    REGIONS,
    GateInputError,
    GateResult,
    Regions,
    Statistics,
    make_baseline,
    task_order,
)
from val_probing.gate.compare import check
from val_probing.gate.stats import pair_samples
from val_probing.results import TaskResult


@dataclass(frozen=True, slots=True)
class FlipRate:
    """Paired questions of one task and region whose score changed between the two runs."""

    task: str
    region: str  # start, middle, end or all
    questions: int
    changed: int
    worse: int  # lower score in the second run
    mean_abs: float  # mean |score B - score A| over the questions, x100

    @property
    def rate(self) -> float:
        return self.changed / self.questions if self.questions else 0.0


@dataclass(frozen=True, slots=True)
class Calibration:
    rates: tuple[FlipRate, ...]
    result: GateResult  # the check of run B against a baseline made from run A


def calibrate(
    run_a: Sequence[TaskResult],
    run_b: Sequence[TaskResult],
    *,
    statistics: Statistics | None = None,
    regions: Regions | None = None,
) -> Calibration:
    """Flip rates per task and region, and the gate's verdict on B against A (see the module doc)."""
    baseline = make_baseline(run_a, statistics=statistics, regions=regions)
    missing = sorted(n for n, t in baseline.tasks.items() if t.samples is None)
    missing += sorted(r.task for r in run_b if not r.has_samples and r.task not in missing)
    if missing:
        raise GateInputError(
            f"calibrate needs per-sample scores in both runs (lm_eval --log_samples): none for "
            f"{', '.join(missing)}"
        )
    result = check(baseline, run_b)
    current = {r.task: r for r in run_b}
    rates = []
    for name in sorted(baseline.tasks, key=task_order):
        t = baseline.tasks[name]
        n_buckets = int(t.settings.get("n_buckets") or current[name].summary.n_buckets)
        p = pair_samples(name, t.samples or (), current[name].samples, n_buckets)
        bucket_of_column = {j: b for b, j in p.column.items()}
        region_of = {b: baseline.regions.of_bucket(b, n_buckets) for b in p.column}
        row_region = np.array([region_of[bucket_of_column[int(j)]] for j in np.argmax(p.matrix > 0, axis=1)])
        diff = p.new - p.old
        for region in (*REGIONS, "all"):
            mask = np.ones(diff.size, bool) if region == "all" else row_region == region
            d = diff[mask]
            changed, worse = int(np.count_nonzero(np.abs(d) > 1e-12)), int((d < -1e-12).sum())
            mean_abs = float(np.abs(d).mean()) * 100 if d.size else 0.0
            rates.append(FlipRate(name, region, int(d.size), changed, worse, mean_abs))
    return Calibration(tuple(rates), result)


def format_calibration(c: Calibration) -> str:
    head = ["task", "region", "questions", "changed", "flip rate", "worse", "better", "mean |delta|"]
    rows = [[r.task, r.region, str(r.questions), str(r.changed), f"{r.rate:.1%}", str(r.worse),
             str(r.changed - r.worse), f"{r.mean_abs:.1f}"] for r in c.rates]  # fmt: skip
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in [head, *rows]]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    from val_probing.gate.render import verdict

    gated = [x for x in c.result.checks if x.status in ("pass", "fail")]
    worst = min(gated, key=lambda x: x.p_adjusted if x.p_adjusted is not None else 1.0, default=None)
    closest = (
        f"; closest to failing: {worst.task}/{worst.metric} (Holm p {worst.p_adjusted:.3g})"
        if worst is not None and worst.p_adjusted is not None
        else ""
    )
    lines += [
        "",
        "flip rate: paired questions whose score differs between the two runs (mean |delta| x100).",
        *c.result.notes,
        f"the gate, run B checked against a baseline made from run A: {verdict(c.result)}{closest}",
    ]
    if not c.result.passed:
        lines.append(
            "the noise floor of this configuration fails the gate: disable prefix caching / fix the "
            "batch size for CI, or set a margin (--min-drop) above the noise (docs/ci-gate.md)"
        )
    return "\n".join(lines)
