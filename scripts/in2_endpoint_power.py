"""Size the powered IN2 experiment from its pilot (issue 24): the primary endpoint's power by seeds.

    python scripts/in2_endpoint_power.py runs/in2-powered-pilot [--effect E] [--sd SD] [--draws 2000]

Reads the pilot's ``stages/compare/results.json`` (its endpoint: the per-model contrasts of the
treatment and control arms), takes the observed difference as the effect and the pooled within-arm SD
of the contrast as the between-model SD (either can be given instead), and prints the simulated power of
the exact permutation test at alpha for 2-8 seeds per arm (``power.endpoint_power``). Write the chosen
figures into the main config's ``endpoint`` (planned_effect, planned_sd, planned_power, pilot) and commit
it before the main run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from val_probing.in2.experiment.power import endpoint_power


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("pilot", type=Path, help="the pilot's experiment folder")
    parser.add_argument("--effect", type=float, default=None, help="points of C (default: the pilot's)")
    parser.add_argument("--sd", type=float, default=None, help="between-model SD of C (default: the pilot's)")
    parser.add_argument("--draws", type=int, default=2000)
    args = parser.parse_args(argv)
    path = args.pilot / "stages" / "compare" / "results.json"
    try:
        endpoint = json.loads(path.read_text(encoding="utf-8"))["endpoint"]
    except (OSError, ValueError, KeyError) as err:
        print(f"error: {path}: not a finished pilot with an endpoint ({err})", file=sys.stderr)
        return 2
    by_arm = endpoint["contrast_by_arm"]
    treated = list(by_arm[endpoint["treatment"]].values())
    control = list(by_arm[endpoint["control"]].values())
    effect = args.effect if args.effect is not None else float(np.mean(treated) - np.mean(control))
    pooled = np.sqrt((np.var(treated, ddof=1) + np.var(control, ddof=1)) / 2) if len(treated) > 1 else None
    sd = args.sd if args.sd is not None else pooled
    if sd is None or not sd > 0:
        print("error: the pilot gives no SD (one seed, or identical contrasts): pass --sd", file=sys.stderr)
        return 2
    print(f"pilot {args.pilot}: treatment {treated}, control {control}")
    print(f"effect {effect:+.2f} points, between-model SD {sd:.2f}, alpha {endpoint['alpha']}")
    for seeds in range(2, 9):
        power = endpoint_power(effect, sd, seeds, endpoint["alpha"], args.draws, seed=seeds)
        print(f"  {seeds} seeds per arm: power {power:.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
