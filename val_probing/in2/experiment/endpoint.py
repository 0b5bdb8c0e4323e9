"""The IN2 experiment's pre-registered primary endpoint (issue 24), per trained model and across models.

C = the pooled middle region's score minus the pooled edge regions' (the gate's regions by bucket centre
depth); H1: mean C(treatment) > mean C(control), tested by the exact permutation test over the
model-level contrasts, with the 95% t interval of the paired per-seed differences beside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from val_probing.in2.experiment.design import ARM_LABEL, ExperimentConfig, ExperimentError, model_name

if TYPE_CHECKING:
    from val_probing.gate import Regions
    from val_probing.results import TaskResult


# Student's t, 0.975 quantile, for 1..30 degrees of freedom (beyond: the normal's 1.96)
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def middle_contrast(buckets: Sequence[float], regions: Regions | None = None) -> float:
    """C = the pooled middle region's score minus the pooled edge regions' (x100 bucket means in; the
    gate's regions by bucket centre depth; a pooled region is the mean of its buckets)."""
    from val_probing.gate import Regions

    by_region = (regions or Regions()).buckets(len(buckets))
    middle = [buckets[b] for b in by_region["middle"]]
    edges = [buckets[b] for r in ("start", "end") for b in by_region[r]]
    return float(np.mean(middle) - np.mean(edges))


def permutation_p(treatment: Sequence[float], control: Sequence[float]) -> float:
    """Exact one-sided permutation p-value of mean(treatment) - mean(control) > 0: the share of all
    ``C(n, k)`` relabellings of the pooled values whose difference is at least the observed one."""
    from itertools import combinations

    values = [*treatment, *control]
    k, total = len(treatment), sum(treatment) + sum(control)
    observed = float(np.mean(treatment) - np.mean(control))
    hits = n = 0
    for chosen in combinations(range(len(values)), k):
        t = sum(values[i] for i in chosen)
        diff = t / k - (total - t) / (len(values) - k)
        hits += diff >= observed - 1e-9
        n += 1
    return hits / n


def paired_interval(differences: Sequence[float]) -> tuple[float, float]:
    """95% t interval of the mean of the per-seed paired differences (one seed: unbounded)."""
    d = np.asarray(differences, dtype=float)
    if d.size < 2:
        return (-np.inf, np.inf)
    half = _T975[min(d.size - 1, len(_T975)) - 1] * float(d.std(ddof=1)) / np.sqrt(d.size)
    return (float(d.mean() - half), float(d.mean() + half))


def endpoint_test(runs: Mapping[str, Sequence[TaskResult]], config: ExperimentConfig) -> dict[str, Any]:
    """The pre-registered primary endpoint: C per trained model, the exact permutation test of
    mean C(treatment) > mean C(control) over the seed-level contrasts, and the paired per-seed interval;
    C of every arm beside it (secondary)."""
    e = config.endpoint
    if e is None:
        raise ExperimentError("the config registers no endpoint")
    contrasts: dict[str, dict[str, float]] = {}
    for arm in config.arms:
        for seed in config.seeds:
            result = next(r for r in runs[model_name(arm, seed)] if r.task == e.task)
            contrasts.setdefault(arm, {})[str(seed)] = round(
                middle_contrast([b.mean for b in result.summary.buckets]), 3
            )
    treated, control = list(contrasts[e.treatment].values()), list(contrasts[e.control].values())
    paired = [contrasts[e.treatment][str(s)] - contrasts[e.control][str(s)] for s in config.seeds]
    p = permutation_p(treated, control)
    lo, hi = paired_interval(paired)
    difference = float(np.mean(treated) - np.mean(control))
    said = (
        f"{e.treatment} flattens more than {e.control} (p < alpha)"
        if p < e.alpha
        else "not shown at this alpha (bounded by the interval)"
    )
    return {
        "task": e.task,
        "treatment": e.treatment,
        "control": e.control,
        "seeds": list(config.seeds),
        "contrast_by_arm": contrasts,
        "mean_contrast": {a: round(float(np.mean(list(v.values()))), 3) for a, v in contrasts.items()},
        "sd_contrast": {
            a: round(float(np.std(list(v.values()), ddof=1)), 3) if len(v) > 1 else None
            for a, v in contrasts.items()
        },
        "difference": round(difference, 3),
        "paired_differences": [round(d, 3) for d in paired],
        "ci95": [round(lo, 3), round(hi, 3)],
        "p_value": p,
        "alpha": e.alpha,
        "test": f"exact one-sided permutation test over {len(treated) + len(control)} model-level contrasts",
        "verdict": said,
        "registered": {
            "planned_effect": e.planned_effect,
            "planned_sd": e.planned_sd,
            "planned_power": e.planned_power,
            "pilot": e.pilot,
        },
    }


def endpoint_markdown(found: Mapping[str, Any]) -> str:
    """The primary endpoint: per-seed contrasts of every arm, the test, the interval and the verdict."""
    from val_probing.tables import markdown_table

    e = found
    seeds = [str(s) for s in e["seeds"]]
    rows = [
        [ARM_LABEL.get(arm, arm), *(f"{by_seed[s]:+.1f}" for s in seeds), f"{e['mean_contrast'][arm]:+.1f}"]
        for arm, by_seed in e["contrast_by_arm"].items()
    ]
    lo, hi = e["ci95"]
    reg = e["registered"]
    planned = (
        f"Registered before the run: effect {reg['planned_effect']} points, between-seed SD "
        f"{reg['planned_sd']}, power {reg['planned_power']} ({reg['pilot']})."
        if reg["planned_effect"] is not None
        else "No power analysis was registered."
    )
    lines = [
        f"C = pooled middle region minus pooled edge regions of `{e['task']}` (x100 points, the gate's "
        "regions by bucket centre depth), one value per trained model:",
        "",
        *markdown_table(
            ["arm", *(f"seed {s}" for s in seeds), "mean"], rows, right=tuple(range(1, len(seeds) + 2))
        ),
        "",
        f"**H1: mean C({e['treatment']}) > mean C({e['control']}).** "
        f"Difference {e['difference']:+.2f} points, "
        f"paired 95% t interval over seeds [{lo:+.2f}, {hi:+.2f}]; {e['test']}: p = {e['p_value']:.4g} "
        f"(alpha {e['alpha']}). Verdict: {e['verdict']}.",
        "",
        planned,
    ]
    return "\n".join(lines) + "\n"
