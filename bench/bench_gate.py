"""Benchmark: the CI gate's false-alarm rate and power, by simulation through the real check.

Every simulated run is a list of ``TaskResult`` (the three VAL tasks, per-sample scores as lm-eval
logs them) built in memory; the baseline is ``gate.make_baseline`` of one draw and the check is
``gate.check``, the library function ``val-probing check`` calls. Baseline and rerun are drawn
independently from per-question success probabilities:

* null: the same probabilities (rerun noise): every failure is a false alarm;
* middle drop of d points: the middle quarter of the positions loses d (absolute) in every task;
* uniform drop of d points everywhere; uniform improvement of 10 points (must pass).

Run shapes (sets x positions, buckets): the shipped embedded run (2 x 16, 8 buckets, its own
bucket means: document ~35% graded recall, code and database ~3%), and a synthetic U-curve
(0.9 at both ends, 0.6 in the middle; document graded in quarters, code and database 0/1) at 4, 8,
16 and 32 questions per bucket (4 sets x 16, 32, 64, 128 positions, 16 buckets).

Each size is checked twice where it matters: ``default`` (metrics on buckets smaller than
statistics.min_questions are low power and do not fail) and ``all tested`` (--fail-low-power: the
size of every test). False-alarm rates come with a 95% Wilson interval beside alpha.

    .venv/bin/python bench/bench_gate.py            # 400 null draws, 100 per effect (~minutes)
    .venv/bin/python bench/bench_gate.py --quick    # 100 / 40
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from val_probing import gate
from val_probing.buckets import ScoredSample, bucket_of, summarize
from val_probing.records import FAMILIES
from val_probing.results import TaskResult

ALPHA = 0.05
META = {"source": "built", "context_length": 2048, "pool": "embedded", "seed": 0, "probe_version": 1,
        "probe_hash": "sim", "limit": None}  # fmt: skip
EMBEDDED = Path(__file__).resolve().parent.parent / "tests" / "data" / "runs" / "embedded" / "baseline.yaml"

Probability = Callable[[str, int, int], float]  # (task, position, n_items) -> success probability


@dataclass(frozen=True, slots=True)
class Shape:
    name: str
    sets: int
    positions: int
    buckets: int
    truth: Probability  # per-question success probability of the baseline model

    @property
    def per_bucket(self) -> int:
        return self.sets * self.positions // self.buckets


def u_curve(_task: str, position: int, n_items: int) -> float:
    depth = (position + 0.5) / n_items
    return 0.6 + 0.3 * (2 * depth - 1) ** 2


def embedded_truth() -> Probability:
    """The shipped embedded run's bucket means, as the per-question probabilities."""
    means = {name: dict(t.buckets) for name, t in gate.read_baseline(EMBEDDED).tasks.items()}

    def truth(task: str, position: int, n_items: int) -> float:
        return means[task][bucket_of(position, n_items, 8)] / 100

    return truth


def draw_score(task: str, p: float, rng: random.Random) -> float:
    p = min(1.0, max(0.0, p))
    if task == "document":  # graded recall in quarters, mean p
        return sum(rng.random() < p for _ in range(4)) / 4
    return 1.0 if rng.random() < p else 0.0


def draw_run(shape: Shape, shift: Probability, rng: random.Random) -> list[TaskResult]:
    """One run: every question's score drawn from truth + shift."""
    out = []
    for task in FAMILIES:
        samples = tuple(
            ScoredSample(s, pos, shape.positions, f"{task}-{s}-{pos}",
                        draw_score(task, shape.truth(task, pos, shape.positions)
                                   + shift(task, pos, shape.positions), rng))
            for s in range(shape.sets)
            for pos in range(shape.positions)
        )  # fmt: skip
        summary = summarize(samples, n_buckets=shape.buckets, n_boot=None)
        meta = MappingProxyType({**META, "n_buckets": shape.buckets})
        out.append(TaskResult("sim/model", task, Path("mem"), 2048, meta, summary, samples))
    return out


def no_shift(_task: str, _position: int, _n: int) -> float:
    return 0.0


def middle_drop(points: float) -> Probability:
    def shift(_task: str, position: int, n_items: int) -> float:
        depth = (position + 0.5) / n_items
        return -points / 100 if 0.375 <= depth < 0.625 else 0.0

    return shift


def uniform(points: float) -> Probability:
    def shift(_task: str, _position: int, _n: int) -> float:
        return points / 100

    return shift


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True, slots=True)
class Outcome:
    failed: int
    draws: int
    by_kind: Counter[str]  # failing metric kinds (avg, bucket, gap), counted once per draw
    raw_hits: Counter[str]  # per kind: tests whose own (unadjusted) p-value was <= alpha
    raw_tests: Counter[str]  # per kind: tests with a p-value

    def raw_size(self, kind: str) -> tuple[int, int]:
        return self.raw_hits[kind], self.raw_tests[kind]


def simulate(shape: Shape, shift: Probability, draws: int, *, seed: int, fail_low_power: bool) -> Outcome:
    """``draws`` independent (baseline, rerun) pairs through gate.check; how many failed, and on what."""
    rng = random.Random(seed)
    failed, kinds, hits, tests = 0, Counter[str](), Counter[str](), Counter[str]()
    for _ in range(draws):
        baseline = gate.make_baseline(draw_run(shape, no_shift, rng))
        result = gate.check(baseline, draw_run(shape, shift, rng), fail_low_power=fail_low_power)
        if not result.passed:
            failed += 1
            kinds.update({c.kind.value for c in result.failures})
        for c in result.checks:
            if c.p_value is not None:
                tests[c.kind.value] += 1
                hits[c.kind.value] += c.p_value <= ALPHA
    return Outcome(failed, draws, kinds, hits, tests)


def shapes() -> list[Shape]:
    return [
        Shape("embedded run 2 x 16, 8 buckets", 2, 16, 8, embedded_truth()),
        *(Shape(f"U-curve 4 x {n}, 16 buckets", 4, n, 16, u_curve) for n in (16, 32, 64, 128)),
    ]


EFFECTS: Sequence[tuple[str, Probability]] = (
    ("middle -20", middle_drop(20)),
    ("middle -30", middle_drop(30)),
    ("uniform -10", uniform(-10)),
    ("uniform +10", uniform(10)),
)


def _rate(o: Outcome) -> str:
    return f"{o.failed / o.draws:.1%}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="100 null draws, 40 per effect")
    parser.add_argument("--null-draws", type=int, help="null draws per row (default 400; --quick 100)")
    parser.add_argument("--effect-draws", type=int, help="draws per effect (default 100; --quick 40)")
    args = parser.parse_args(argv)
    n_null = args.null_draws or (100 if args.quick else 400)
    n_effect = args.effect_draws or (40 if args.quick else 100)
    min_q = gate.Statistics().min_questions
    print(f"alpha {ALPHA} (one-sided, Holm over every tested metric); {n_null} null draws, "
          f"{n_effect} per effect; min_questions {min_q}")  # fmt: skip
    head = ["run", "q/bucket", "mode", "false alarms [95% CI]", "failing", "raw size gap / bucket / avg",
            *(e for e, _ in EFFECTS)]  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    over = []
    t0 = time.perf_counter()
    for i, shape in enumerate(shapes()):
        modes = (
            [("default", False), ("all tested", True)] if shape.per_bucket < min_q else [("default", False)]
        )
        for mode, strict in modes:
            null = simulate(shape, no_shift, n_null, seed=1000 + i, fail_low_power=strict)
            lo, hi = wilson(null.failed, null.draws)
            if lo > ALPHA:
                over.append(f"{shape.name} ({mode})")
            effects = [simulate(shape, f, n_effect, seed=2000 + 10 * i + j, fail_low_power=strict)
                       for j, (_e, f) in enumerate(EFFECTS)]  # fmt: skip
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(null.by_kind.items())) or "-"
            raw = []
            for kind in ("gap", "bucket", "avg"):
                k, n = null.raw_size(kind)
                raw.append(f"{k / max(1, n):.1%}")
                if wilson(k, n)[0] > ALPHA:
                    over.append(f"{shape.name}: raw size of the {kind} test")
            cells = [shape.name, str(shape.per_bucket), mode,
                     f"{null.failed}/{null.draws} = {_rate(null)} [{lo:.1%}, {hi:.1%}]", kinds,
                     " / ".join(raw), *(_rate(o) for o in effects)]  # fmt: skip
            print("| " + " | ".join(cells) + " |", flush=True)
    print(f"\n{time.perf_counter() - t0:.0f} s. false alarms: null draws that FAIL the gate. raw size: "
          f"share of null tests (every task's metric of that kind) whose own p-value is <= {ALPHA}, "
          "before Holm and tolerances. effects: share of draws that FAIL (uniform +10: 0%)")  # fmt: skip
    if over:
        print("FALSE-ALARM RATE ABOVE ALPHA (interval entirely above it): " + "; ".join(over))
        return 1
    print(f"every false-alarm rate is within its 95% interval of alpha {ALPHA} or below")
    return 0


if __name__ == "__main__":
    sys.exit(main())
