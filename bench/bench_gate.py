"""Benchmark: the CI gate's false-alarm rate and power, by simulation through the real check.

Every simulated run is a list of ``TaskResult`` (the three VAL tasks, per-sample scores as lm-eval
logs them) built in memory; the baseline is ``gate.make_baseline`` of one draw and the check is
``gate.check``, the library function ``val-probing check`` calls (default settings: the fixed family
avg / start / middle / end / shape per task and the middle pooled over the tasks, weighted Holm,
buckets informational). Baseline and rerun are
drawn independently from per-question success probabilities:

* null: the same probabilities (rerun noise): every failure is a false alarm;
* "midq -d": the middle QUARTER of the positions (depth 0.375-0.625) loses d points in every task;
  "midh -d": the middle HALF (the default middle region, depth 0.25-0.75);
* "uniform -10" / "uniform +10" everywhere; "edges +20": the first and last two of 16 buckets (the
  first and last 1/8 of depth) +20; "last +25": the last 1/16 of depth +25 (better models: must pass);
* "code only: midh -20": the middle half of one task (code, 0/1 scores: the noisiest) loses 20 points
  (the others unchanged: what the per-task tests are for);
* "collapse": the embedded layout's middle half loses 30 points and the edge quarters gain 30 (avg
  unchanged: the issue's middle collapse);
* "rise: mid -15, last +15": a rising curve (0.5 -> 0.9 with depth) whose middle half loses 15 and
  whose last 1/16 gains 15 (the middle is not the minimum).

Run shapes (sets x positions, buckets): the shipped embedded run (2 x 16, 8 buckets, its own bucket
means: document ~35% graded recall, code and database ~3%), a U-curve (0.9 at both ends, 0.6 in the
middle; document graded in quarters, code and database 0/1) at 4, 8, 16 and 32 questions per bucket
(4 sets x 16, 32, 64, 128 positions, 16 buckets), and the rising curve at 4 x 64. Every rate comes
with its 95% Wilson interval.

    .venv/bin/python bench/bench_gate.py            # 400 null draws, 100 per effect (~minutes)
    .venv/bin/python bench/bench_gate.py --quick    # 100 / 40
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from val_probing import gate
from val_probing.gate.simulate import (
    Layout,
    Outcome,
    Truth,
    depth_shift,
    no_shift,
    truth_from_buckets,
    u_curve,
    wilson,
)
from val_probing.gate.simulate import simulate as simulate_layout

ALPHA = 0.05
EMBEDDED = Path(__file__).resolve().parent.parent / "tests" / "data" / "runs" / "embedded"

__all__ = ["EFFECTS", "Shape", "depth_shift", "embedded_truth", "no_shift", "simulate", "u_curve", "wilson"]


@dataclass(frozen=True, slots=True)
class Shape:
    name: str
    sets: int
    positions: int
    buckets: int
    truth: Truth  # per-question success probability of the baseline model

    @property
    def layout(self) -> Layout:
        return Layout(self.sets, self.positions, self.buckets)

    @property
    def per_bucket(self) -> int:
        return self.layout.per_bucket


def rising(_task: str, position: int, n_items: int) -> float:
    return 0.5 + 0.4 * (position + 0.5) / n_items


def embedded_truth() -> Truth:
    """The shipped embedded run's bucket means, as the per-question probabilities."""
    means = {r.task: {b.index: b.mean for b in r.summary.buckets} for r in gate.read_run(EMBEDDED)}
    return truth_from_buckets(means, 8)


def uniform(points: float) -> Truth:
    return depth_shift((0.0, 1.0 + 1e-9, points))


def middle_drop(points: float) -> Truth:
    """The middle quarter of the positions loses ``points``."""
    return depth_shift((0.375, 0.625, -points))


def simulate(shape: Shape, shift: Truth, draws: int, *, seed: int) -> Outcome:
    """``draws`` independent (baseline, rerun) pairs through gate.check (default settings)."""
    return simulate_layout(shape.layout, shape.truth, shift, draws, seed=seed)


def shapes() -> list[Shape]:
    return [
        Shape("embedded 2 x 16, 8 b", 2, 16, 8, embedded_truth()),
        *(Shape(f"U 4 x {n}, 16 b", 4, n, 16, u_curve) for n in (16, 32, 64, 128)),
        Shape("rising 4 x 64, 16 b", 4, 64, 16, rising),
    ]


# name -> (shift, whether a failure is wanted, which shapes it runs on: None = all but "rising")
EFFECTS: Sequence[tuple[str, Truth, bool, str | None]] = (
    ("midq -20", middle_drop(20), True, None),
    ("midh -10", depth_shift((0.25, 0.75, -10)), True, None),
    ("midh -20", depth_shift((0.25, 0.75, -20)), True, None),
    ("uniform -10", uniform(-10), True, None),
    ("uniform +10", uniform(10), False, None),
    ("edges +20", depth_shift((0.0, 0.125, 20), (0.875, 1.0, 20)), False, None),
    ("last +25", depth_shift((0.9375, 1.0, 25)), False, None),
    ("code only: midh -20", depth_shift((0.25, 0.75, -20), tasks=frozenset({"code"})), True, None),
    ("collapse", depth_shift((0.0, 0.25, 30), (0.25, 0.75, -30), (0.75, 1.0, 30)), True, "embedded"),
    ("rise: mid -15, last +15", depth_shift((0.25, 0.75, -15), (0.9375, 1.0, 15)), True, "rising"),
)


def _applies(only: str | None, shape: Shape) -> bool:
    return shape.name.startswith(only) if only else not shape.name.startswith("rising")


def _cell(o: Outcome) -> str:
    return str(o)


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
    print(f"alpha {ALPHA} (one-sided; weighted Holm: half of alpha to the middle pooled over the tasks, "
          "half to avg, start, middle, end, shape x 3 tasks, less any that cannot reach significance "
          "at the size); "
          f"{n_null} null draws, {n_effect} per effect; cells: draws that FAIL [95% CI]")  # fmt: skip
    head = ["run", "q/bucket", "null (false alarms)", "failing", *(e[0] for e in EFFECTS)]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    problems = []
    t0 = time.perf_counter()
    for i, shape in enumerate(shapes()):
        null = simulate(shape, no_shift, n_null, seed=1000 + i)
        if wilson(null.failed, null.draws)[0] > ALPHA:
            problems.append(f"{shape.name}: false alarms above alpha")
        cells = [shape.name, str(shape.per_bucket), _cell(null),
                 ", ".join(f"{k} {n}" for k, n in sorted(null.by_kind.items())) or "-"]  # fmt: skip
        for j, (name, shift, wanted, only) in enumerate(EFFECTS):
            if not _applies(only, shape):
                cells.append("")
                continue
            o = simulate(shape, shift, n_effect, seed=2000 + 100 * i + j)
            if not wanted and wilson(o.failed, o.draws)[0] > ALPHA:
                problems.append(f"{shape.name}: the improvement {name} fails above alpha")
            cells.append(_cell(o))
        print("| " + " | ".join(cells) + " |", flush=True)
    print(f"\n{time.perf_counter() - t0:.0f} s")
    if problems:
        print("ABOVE ALPHA (interval entirely above it): " + "; ".join(problems))
        return 1
    print(f"every false-alarm and improvement failure rate is within its 95% interval of alpha {ALPHA}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
