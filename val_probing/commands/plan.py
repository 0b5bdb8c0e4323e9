"""``val-probing plan``: what a CI slice can detect, by simulation through the real check."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "simulate the gate: detection rate per depth region and drop, and the smallest slice at 80 percent"

EPILOG = """\
From a baseline (its own bucket means are the per-question success rates, its layout, regions and
statistics are used) or from a layout (--sets, --positions, --buckets; an idealised U-curve, 0.9 at
the ends and 0.6 in the middle), simulate pairs of runs through `val-probing check` and print how
often the gate fails a drop of each size in each region, then the smallest sets x positions whose
detection rate for --drop in --region reaches --target. A drop is applied to every task (--task to
pick), capped by the score (a task at 3% cannot drop 10 points: such a drop is undetectable).

examples:
  val-probing plan --baseline ci/val-baseline.yaml --drop 10 --region middle
  val-probing plan --sets 4 --positions 64 --buckets 16 --drop 20
  # quicker (fewer simulated draws per cell, wider intervals)
  val-probing plan --baseline tests/data/runs/embedded/baseline.yaml --draws 40
"""

REGION_CHOICES = ("start", "middle", "end", "all")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--baseline", type=Path, help="baseline YAML: its bucket means and layout")
    parser.add_argument("--sets", type=int, help="contexts (default: the baseline's, else 4)")
    parser.add_argument(
        "--positions", type=int, help="needle positions per context (default: the baseline's, else 64)"
    )
    parser.add_argument("--buckets", type=int, help="buckets (default: the baseline's, else 16)")
    parser.add_argument(
        "--drop", type=float, default=10.0, help="the drop to detect, x100 points (default 10)"
    )
    parser.add_argument("--region", choices=REGION_CHOICES, default="middle", help="where (default middle)")
    parser.add_argument("--task", action="append", choices=("document", "code", "database"),
                        help="the drop hits only this task (repeatable; default every task)")  # fmt: skip
    parser.add_argument("--target", type=float, default=0.8, help="detection rate to reach (default 0.8)")
    parser.add_argument("--draws", type=int, default=100, help="simulated run pairs per cell (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="simulation seed (default 0)")


def run(args: argparse.Namespace) -> int:
    from val_probing.errors import ValProbingError
    from val_probing.files import check_paths
    from val_probing.gate import plan

    check_paths(inputs={"--baseline": args.baseline})  # a FIFO would block the read: refused, named
    if args.draws < 10:
        raise ValProbingError(f"--draws: expected at least 10, got {args.draws}")
    if not 0 < args.target < 1:
        raise ValProbingError(f"--target: expected a rate with 0 < target < 1, got {args.target}")
    if not 0 < args.drop <= 100:
        raise ValProbingError(f"--drop: expected points with 0 < drop <= 100, got {args.drop}")
    for name in ("sets", "positions", "buckets"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValProbingError(f"--{name}: expected an integer >= 1, got {value}")
    return plan(
        baseline=args.baseline, sets=args.sets, positions=args.positions, buckets=args.buckets,
        drop=args.drop, region=args.region, tasks=frozenset(args.task) if args.task else None,
        target=args.target, draws=args.draws, seed=args.seed, echo=print,
    )  # fmt: skip
