"""The gate's promise, by fixed-seed simulation (seconds): rerun noise does not fail the build at more
than alpha, an improvement everywhere never fails, and a real drop still does.

Runs are simulated with bench/bench_gate.py's generator and checked with ``gate.check``, the function
``val-probing check`` calls. "Exceeds alpha by more than its sampling error" means: the lower end of
the 95% Wilson interval of the observed rate is above alpha.
"""

from __future__ import annotations

import importlib.util
import random
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from val_probing import gate

ALPHA = 0.05


@pytest.fixture(scope="module")
def bench(repo_root: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_gate", repo_root / "bench" / "bench_gate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gate"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def small_shapes(bench: ModuleType) -> list:
    """The embedded run's shape (4 per bucket, 8 buckets) and the U-curve at 4 and 8 per bucket."""
    return [
        bench.Shape("embedded 2 x 16", 2, 16, 8, bench.embedded_truth()),
        bench.Shape("U 4 x 16", 4, 16, 16, bench.u_curve),
        bench.Shape("U 2 x 64", 2, 64, 16, bench.u_curve),  # 8 per bucket
    ]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_no_metric_raises_false_alarms_above_alpha_on_null_reruns(bench: ModuleType, index: int) -> None:
    """Every metric tested (--fail-low-power): its own p-value is <= alpha at most alpha of the time."""
    shape = small_shapes(bench)[index]
    rng = random.Random(100 + index)
    draws = 120
    hits: Counter[tuple[str, str]] = Counter()
    failed = 0
    for _ in range(draws):
        baseline = gate.make_baseline(bench.draw_run(shape, bench.no_shift, rng))
        result = gate.check(baseline, bench.draw_run(shape, bench.no_shift, rng), fail_low_power=True)
        failed += not result.passed
        for c in result.checks:
            assert c.p_value is not None and c.p_adjusted is not None
            hits[(c.task, c.metric)] += c.p_value <= ALPHA
    assert len(hits) == 3 * (shape.buckets + 2)
    too_often = {m: k for m, k in hits.items() if bench.wilson(k, draws)[0] > ALPHA}
    assert not too_often, f"{shape.name}: metrics significant at {ALPHA} too often: {too_often} of {draws}"
    assert bench.wilson(failed, draws)[0] <= ALPHA, f"{shape.name}: {failed} of {draws} null reruns failed"
    if shape.truth is bench.u_curve:  # graded scores at 0.6-0.9: the gap test is not degenerate
        assert hits[("document", "gap")] > 0


def test_the_gap_test_has_its_stated_size_where_a_bootstrap_did_not(bench: ModuleType) -> None:
    """The graded task at 4 questions per bucket, 16 buckets: the issue's 50% false-alarm case."""
    shape = bench.Shape("U 4 x 16", 4, 16, 16, bench.u_curve)
    rng = random.Random(7)
    draws, hits = 200, 0
    for _ in range(draws):
        baseline = gate.make_baseline(bench.draw_run(shape, bench.no_shift, rng))
        result = gate.check(baseline, bench.draw_run(shape, bench.no_shift, rng), fail_low_power=True)
        (gap,) = [c for c in result.checks if c.task == "document" and c.metric == "gap"]
        assert gap.method == "permutation"
        hits += gap.p_value is not None and gap.p_value <= ALPHA
    assert bench.wilson(hits, draws)[0] <= ALPHA, f"gap p <= {ALPHA} in {hits} of {draws} null reruns"


@pytest.mark.parametrize("strict", [False, True], ids=["default", "all-tested"])
def test_an_improvement_everywhere_never_fails(bench: ModuleType, strict: bool) -> None:
    shapes = [*small_shapes(bench), bench.Shape("U 4 x 64", 4, 64, 16, bench.u_curve)]
    rng = random.Random(11)
    for shape in shapes:
        for _ in range(25):
            baseline = gate.make_baseline(bench.draw_run(shape, bench.no_shift, rng))
            result = gate.check(
                baseline, bench.draw_run(shape, bench.uniform(10), rng), fail_low_power=strict
            )
            assert result.passed, f"{shape.name}:\n{gate.format_table(result)}"


def test_a_middle_drop_still_fails_at_16_questions_per_bucket(bench: ModuleType) -> None:
    """Not a gate that passes everything: a 30-point drop in the middle quarter is caught."""
    shape = bench.Shape("U 4 x 64", 4, 64, 16, bench.u_curve)
    outcome = bench.simulate(shape, bench.middle_drop(30), 20, seed=5, fail_low_power=False)
    assert outcome.failed >= 16, f"caught {outcome.failed} of 20"
    assert outcome.by_kind["bucket"] > 0
