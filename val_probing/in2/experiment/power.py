"""Power of the compare stage's paired tests at the probe layout, simulated before any model runs.

The simulation goes through the gate's own ``make_baseline`` and ``check``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from val_probing.in2.experiment.design import ExperimentConfig


def simulated_power(config: ExperimentConfig, questions: Mapping[str, int]) -> dict[str, Any]:
    """Power of the paired tests at this probe layout, by simulation through ``gate.make_baseline`` and
    ``gate.check`` (tolerances 0, Holm over every test of a check, as in the compare stage).

    Scores are 0/1 with success probability 0.5 (the largest variance) for the control, and 0.5 + d for
    the treated model, for each d in ``comparison.power_effects`` (points, everywhere): the rate at which
    a task's avg (and, averaged over buckets, a bucket) is found better. Also the gate's own rule: a
    metric is tested only when every bucket it needs holds ``statistics.min_questions`` questions."""
    from val_probing import gate

    p, c = config.probes, config.comparison
    stats = gate.Statistics(alpha=c.alpha, resamples=c.resamples, seed=config.seed, gate_buckets=True)
    rng = random.Random(config.seed)
    per_bucket = p.sets * p.positions // p.n_buckets
    out: dict[str, Any] = {
        "questions_per_bucket": per_bucket,
        "min_questions": stats.min_questions,
        "tested": per_bucket >= stats.min_questions,
        "alpha": c.alpha,
        "draws": c.power_draws,
        "by_effect": {},
    }
    for d in c.power_effects:
        avg_hits = bucket_hits = bucket_tests = 0
        for _ in range(c.power_draws):
            treated = _draw(config, 0.5 + d / 100, rng)
            baseline = gate.make_baseline(treated, tolerances=_ZERO(), statistics=stats)
            result = gate.check(baseline, _draw(config, 0.5, rng), ignore=frozenset({"model"}))
            for chk in result.checks:
                if chk.task not in p.families:  # the pooled level ("all"): the rates are per task
                    continue
                if chk.kind is gate.MetricKind.AVG:
                    avg_hits += chk.status == "fail"
                elif chk.kind is gate.MetricKind.BUCKET:
                    bucket_tests += 1
                    bucket_hits += chk.status == "fail"
        out["by_effect"][f"{d:g}"] = {
            "avg": avg_hits / (c.power_draws * len(p.families)),
            "bucket": bucket_hits / max(1, bucket_tests),
        }
    out["built_questions"] = dict(questions)  # the layout decides the simulation; the built counts beside it
    return out


def _ZERO() -> Any:
    from val_probing import gate

    return gate.Tolerances(avg=0.0, gap=0.0, bucket=0.0)


def _draw(config: ExperimentConfig, prob: float, rng: random.Random) -> list[Any]:
    from types import MappingProxyType

    from val_probing.buckets import ScoredSample, summarize
    from val_probing.results import TaskResult

    p = config.probes
    meta = MappingProxyType(
        {
            "source": "built",
            "context_length": p.context_length,
            "n_buckets": p.n_buckets,
            "pool": p.pool,
            "seed": p.seed,
            "probe_version": 1,
            "probe_hash": "sim",
            "limit": None,
        }
    )
    out = []
    for task in p.families:
        samples = tuple(
            ScoredSample(s, pos, p.positions, f"{task}-{s}-{pos}", float(rng.random() < prob))
            for s in range(p.sets)
            for pos in range(p.positions)
        )
        summary = summarize(samples, n_buckets=p.n_buckets, n_boot=None)
        out.append(TaskResult(f"sim/{prob}", task, Path("sim"), p.context_length, meta, summary, samples))
    return out


def endpoint_power(
    effect: float, sd: float, seeds: int, alpha: float = 0.05, draws: int = 2000, seed: int = 0
) -> float:
    """Power of the primary endpoint's exact permutation test with ``seeds`` models per arm: the share of
    simulated experiments, model-level contrasts drawn Normal(effect, sd) for the treatment arm and
    Normal(0, sd) for the control, whose p-value is below ``alpha``. ``sd`` is the between-model SD of
    the contrast within an arm (seed-to-seed variation and question sampling together, as a pilot
    measures it)."""
    from val_probing.in2.experiment.endpoint import permutation_p

    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(draws):
        treated = rng.normal(effect, sd, seeds)
        control = rng.normal(0.0, sd, seeds)
        hits += permutation_p(list(treated), list(control)) < alpha
    return hits / draws
