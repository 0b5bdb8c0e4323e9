"""``val-probing calibrate``: the noise floor of a configuration, from two runs of it."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "compare two runs of the same configuration: flip rate per task and region, the gate's verdict"

EPILOG = """\
Greedy decoding is not always reproducible: vLLM's prefix caching and batching can change outputs
between runs of the same model and settings (vllm issues #54490, #5543). Run the same configuration
twice (lm_eval ... --log_samples, or val-probing demo) and compare: the flip rate is the share of
paired questions whose score changed, per task and depth region; the gate's verdict is that of
`val-probing check RUN_B --baseline <a baseline of RUN_A>`.

exit status: 0 the gate passes the second run, 1 it would have failed it (rerun noise alone fails the
gate: see the note printed), 2 unusable input (no per-sample scores, different probes).

examples:
  val-probing demo --out runs/a && val-probing demo --out runs/b
  val-probing calibrate runs/a runs/b
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", type=Path, metavar="RUN_A", help="the first run (lm_eval --output_path)")
    parser.add_argument("run_b", type=Path, metavar="RUN_B", help="the second run of the same configuration")
    parser.add_argument("--model", help="the model to read when a run folder holds several")


def run(args: argparse.Namespace) -> int:
    from val_probing.files import check_paths
    from val_probing.gate import calibrate, format_calibration, read_run

    check_paths(inputs={"RUN_A": args.run_a, "RUN_B": args.run_b})  # a FIFO or device: named as what it is
    result = calibrate(read_run(args.run_a, args.model), read_run(args.run_b, args.model))
    print(format_calibration(result))
    return 0 if result.result.passed else 1
