"""The IN2 experiment's pre-registered primary endpoint (issue 24): the middle-minus-edges contrast per
trained model, the exact permutation test across models, the paired interval and the power simulation."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pytest

from val_probing.buckets import ScoredSample, summarize
from val_probing.gate import Regions
from val_probing.in2.experiment import design, endpoint, power
from val_probing.results import TaskResult


def test_the_contrast_is_the_middle_regions_mean_minus_the_edge_regions_mean() -> None:
    # 8 buckets: start 0-1, middle 2-5, end 6-7 (bucket centres against 0.25 / 0.75)
    curve = [90.0, 80.0, 10.0, 20.0, 30.0, 40.0, 70.0, 60.0]
    assert endpoint.middle_contrast(curve) == pytest.approx(25.0 - 75.0)
    assert endpoint.middle_contrast([50.0] * 8) == 0.0
    # other regions move the boundary: a middle of buckets 1-6 at (0.125, 0.875)
    wide = endpoint.middle_contrast(curve, Regions(start=0.125, end=0.875))
    assert wide == pytest.approx(np.mean(curve[1:7]) - np.mean([90.0, 60.0]))


def test_the_permutation_p_value_is_exact() -> None:
    # all treated above all control: only the observed split is as extreme, 1 / C(8, 4)
    assert endpoint.permutation_p([5, 6, 7, 8], [1, 2, 3, 4]) == pytest.approx(1 / 70)
    # the reverse: every split is at least as extreme
    assert endpoint.permutation_p([1, 2, 3, 4], [5, 6, 7, 8]) == 1.0
    # against a brute-force count on random values
    rng = np.random.default_rng(3)
    t, c = list(rng.normal(1, 1, 3)), list(rng.normal(0, 1, 3))
    values, obs = [*t, *c], np.mean(t) - np.mean(c)
    splits = list(itertools.combinations(range(6), 3))
    brute = sum(
        np.mean([values[i] for i in s]) - np.mean([values[i] for i in range(6) if i not in s]) >= obs - 1e-9
        for s in splits
    ) / len(splits)
    assert endpoint.permutation_p(t, c) == pytest.approx(brute)


def test_the_paired_interval_is_students_t() -> None:
    lo, hi = endpoint.paired_interval([1.0, 2.0, 3.0, 4.0])
    half = 3.182 * np.std([1, 2, 3, 4], ddof=1) / 2
    assert (lo, hi) == pytest.approx((2.5 - half, 2.5 + half))
    assert endpoint.paired_interval([1.0]) == (-np.inf, np.inf)


def test_the_endpoint_power_rises_with_the_effect_and_the_seeds() -> None:
    null = power.endpoint_power(0.0, 5.0, seeds=4, draws=400, seed=1)
    assert null <= 0.1  # a size-alpha test: about 5% (discrete: at most 1/70 steps)
    small = power.endpoint_power(5.0, 5.0, seeds=4, draws=400, seed=1)
    big = power.endpoint_power(15.0, 5.0, seeds=4, draws=400, seed=1)
    more = power.endpoint_power(5.0, 5.0, seeds=8, draws=400, seed=1)
    assert null < small < big and big > 0.9 and more > small


def _result(model: str, curve: list[float], per_bucket: int = 4) -> TaskResult:
    n = len(curve)
    positions = n * per_bucket
    samples = tuple(
        ScoredSample(0, pos, positions, f"k{pos}", curve[pos // per_bucket] / 100) for pos in range(positions)
    )
    meta = MappingProxyType({"source": "built", "n_buckets": n, "probe_hash": "h"})
    summary = summarize(samples, n_buckets=n, n_boot=None)
    return TaskResult(model, "document", Path(model), 256, meta, summary, samples)


def _scratch_config(**changes: Any) -> design.ExperimentConfig:
    config = design.ExperimentConfig(
        "t",
        "scratch",
        replicates=3,
        arms=("middle", "ends", "uniform"),
        evaluate_base=False,
        corpus=design.CorpusSettings(source="synthetic"),
        probes=design.ProbeSettings(pool="synthetic", families=("document",), positions=8, n_buckets=4),
        endpoint=design.EndpointSettings(),
    )
    return dataclasses.replace(config, **changes)


def test_the_endpoint_test_reads_one_contrast_per_trained_model() -> None:
    config = _scratch_config()
    flat, dipped = [50.0, 50.0, 50.0, 50.0], [75.0, 25.0, 25.0, 75.0]
    runs = {}
    for s in config.seeds:
        runs[design.model_name("middle", s)] = [_result("m", [v + s for v in flat])]
        runs[design.model_name("ends", s)] = [_result("e", dipped)]
        runs[design.model_name("uniform", s)] = [_result("u", flat)]
    found = endpoint.endpoint_test(runs, config)
    assert found["contrast_by_arm"]["ends"] == {str(s): pytest.approx(-50.0) for s in config.seeds}
    assert found["contrast_by_arm"]["middle"] == {str(s): pytest.approx(0.0) for s in config.seeds}
    assert found["difference"] == pytest.approx(50.0)
    assert found["p_value"] == pytest.approx(1 / 20)  # C(6, 3): the observed split is the one extreme
    assert found["paired_differences"] == [pytest.approx(50.0)] * 3
    assert "not shown" in found["verdict"]  # 0.05 is not below alpha 0.05: three seeds cannot decide
    more = _scratch_config(replicates=4)
    for s in more.seeds:
        runs[design.model_name("middle", s)] = [_result("m", flat)]
        runs[design.model_name("ends", s)] = [_result("e", dipped)]
        runs[design.model_name("uniform", s)] = [_result("u", flat)]
    decided = endpoint.endpoint_test(runs, more)
    assert decided["p_value"] == pytest.approx(1 / 70) and "flattens" in decided["verdict"]


def test_a_seed_set_of_models_is_named_and_compared_within_its_seed() -> None:
    config = _scratch_config()
    assert config.seeds == (0, 1, 2)
    assert config.models == tuple(f"{a}_s{s}" for s in (0, 1, 2) for a in ("middle", "ends", "uniform"))
    pairs = config.comparisons()
    assert ("ends_s1", "middle_s1") in pairs and ("ends_s1", "uniform_s1") in pairs
    assert all(x.rpartition("_")[2] == y.rpartition("_")[2] for x, y in pairs)  # never across seeds
