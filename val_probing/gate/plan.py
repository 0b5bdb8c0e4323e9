"""The power planner behind ``val-probing plan``: detection rates by simulation, and the smallest slice.

The truth is a baseline's own bucket means (or an idealised U-curve for a layout alone); each cell
is the share of simulated (baseline, rerun) pairs that :func:`val_probing.gate.check` fails when the
rerun's region lost the given points (:mod:`val_probing.gate.simulate`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from val_probing.gate.baseline import GateInputError, Regions, Statistics
from val_probing.gate.baseline_file import read_baseline
from val_probing.gate.simulate import (
    Layout,
    Truth,
    candidate_layouts,
    detection,
    truth_from_baseline,
    u_curve,
)

DROPS = (5.0, 10.0, 20.0, 30.0)
REGION_ROWS = ("start", "middle", "end", "all")


def _setup(
    baseline: Path | None, sets: int | None, positions: int | None, buckets: int | None
) -> tuple[Layout, Truth, str, Statistics, Regions]:
    if baseline is None:
        layout = Layout(sets or 4, positions or 64, buckets or 16)
        return (
            layout,
            u_curve,
            "an idealised U-curve (0.9 at the ends, 0.6 in the middle)",
            Statistics(),
            Regions(),
        )
    b = read_baseline(baseline)
    truth, n_buckets = truth_from_baseline(b)
    known_sets = known_positions = None
    for t in b.tasks.values():
        if t.samples:
            known_sets = len({s.set_id for s in t.samples})
            known_positions = len(t.samples) // known_sets
    if (sets or known_sets) is None or (positions or known_positions) is None:
        raise GateInputError(
            f"{baseline}: no per-sample scores to read the layout from; give --sets and --positions"
        )
    layout = Layout(
        int(sets or known_sets or 0), int(positions or known_positions or 0), buckets or n_buckets
    )
    means = ", ".join(f"{n} {t.avg:.1f}" for n, t in b.tasks.items())
    return layout, truth, f"the bucket means of {baseline} (avg {means})", b.statistics, b.regions


def plan(
    *,
    baseline: Path | None,
    sets: int | None,
    positions: int | None,
    buckets: int | None,
    drop: float,
    region: str,
    tasks: frozenset[str] | None,
    target: float,
    draws: int,
    seed: int,
    echo: Callable[[str], None],
) -> int:
    """Print the detection table at the layout and the smallest slice reaching ``target``; exit code."""
    layout, truth, source, stats, regions = _setup(baseline, sets, positions, buckets)
    if layout.positions < layout.buckets:
        raise GateInputError(f"--positions {layout.positions} cannot fill {layout.buckets} buckets")
    regions.buckets(layout.buckets)  # every region holds a bucket (else unusable input)
    who = ", ".join(sorted(tasks)) if tasks else "every task"
    echo(f"truth: {source}; the drop hits {who}; alpha {stats.alpha}, min_drop {stats.min_drop:g}; "
         f"{draws} simulated run pairs per cell; cells: share that FAIL the gate [95% CI]")  # fmt: skip
    drops = sorted({*DROPS, drop})
    echo(f"\nat {layout}:")
    echo("| region | " + " | ".join(f"-{d:g}" for d in drops) + " |")
    echo("|---|" + "---|" * len(drops))
    for i, row in enumerate(REGION_ROWS):
        cells = [
            str(detection(layout, truth, row, d, draws, seed=seed + 10 * i + j, statistics=stats,
                          regions=regions, tasks=tasks).outcome)
            for j, d in enumerate(drops)
        ]  # fmt: skip
        echo(f"| {row} | " + " | ".join(cells) + " |")
    echo(f"\nsmallest sets x positions ({layout.buckets} buckets) that catch {region} -{drop:g} in "
         f"{target:.0%} of runs:")  # fmt: skip
    for candidate in candidate_layouts(layout.buckets):
        d = detection(candidate, truth, region, drop, draws, seed=seed + 1000, statistics=stats,
                      regions=regions, tasks=tasks)  # fmt: skip
        echo(f"  {candidate}: {d.outcome}")
        if d.outcome.rate >= target:
            echo(f"=> {candidate.sets} sets x {candidate.positions} positions "
                 f"(val-probing demo --sets {candidate.sets} --positions {candidate.positions})")  # fmt: skip
            return 0
    echo(f"=> no slice up to 4096 questions per task reaches {target:.0%} (a score too close to 0 or 1 to "
         "drop by that much, or a drop too small): try a larger --drop or another --region")  # fmt: skip
    return 0
