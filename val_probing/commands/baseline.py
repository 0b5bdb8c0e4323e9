"""``val-probing baseline``: record a run as the CI gate's baseline (YAML + per-sample scores)."""

from __future__ import annotations

import argparse
from pathlib import Path

from val_probing.commands.args import RUN_FILES, add_run_dir

HELP = "record one model's VAL run (lm-eval output) as the baseline for `val-probing check`"

EPILOG = """\
RUN_DIR is what lm_eval wrote with --output_path (or the <model> folder below it, or one
results_*.json); the latest results file is used. Run lm_eval with --log_samples: the per-sample
scores are kept beside the YAML (BASELINE.samples.<hash>.jsonl, its sha256 recorded in the YAML)
so `check` can run paired tests: commit both files. The pair is replaced as one unit.

examples:
  # the embedded model on a slice big enough for bucket-level tests (16 questions per bucket)
  val-probing demo --out runs/main --sets 4 --positions 64
  val-probing baseline runs/main --out ci/val-baseline.yaml
  # any model through lm_eval (keep --log_samples)
  lm_eval --model vllm --model_args pretrained=DIR,max_model_len=5120 \\
      --tasks valprobing --include_path "$(val-probing tasks-path)" --apply_chat_template \\
      --metadata '{"source": "built", "context_length": 4096, "sets": 4, "positions": 64}' \\
      --output_path runs/main --log_samples
  val-probing baseline runs/main --out ci/val-baseline.yaml
  # a non-inferiority margin of 1 point, and the buckets gated too
  val-probing baseline runs/main --out ci/val-baseline.yaml --min-drop 1 --gate-buckets
  # re-record the repository's own baseline (tests/test_ci_gate.py) after an intended change
  val-probing baseline tests/data/runs/embedded --out tests/data/runs/embedded/baseline.yaml

The YAML's statistics, regions and tolerances are settings, meant to be edited; the recorded scores
are checked against the samples file. The run's environment (backend, dtype, prefix caching,
versions) is recorded too. See docs/ci-gate.md.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from val_probing.gate import Regions, Statistics, Tolerances

    tol, stats, regions = Tolerances(), Statistics(), Regions()
    add_run_dir(parser, "record")
    parser.add_argument("--out", type=Path, required=True, help="baseline YAML to write")
    parser.add_argument(
        "--avg-tolerance", type=float, default=tol.avg,
        help=f"tolerance mode (no per-sample scores): points x100 (default {tol.avg})",
    )  # fmt: skip
    parser.add_argument(
        "--region-tolerance", type=float, default=tol.region,
        help=f"tolerance mode: points x100 for start / middle / end and shape (default {tol.region})",
    )  # fmt: skip
    parser.add_argument(
        "--bucket-tolerance", type=float, default=tol.bucket,
        help=f"tolerance mode, gated buckets: points x100 (default {tol.bucket})",
    )  # fmt: skip
    parser.add_argument(
        "--min-drop", type=float, default=stats.min_drop, metavar="POINTS",
        help=f"non-inferiority margin x100 for avg and regions (default {stats.min_drop:g})",
    )  # fmt: skip
    parser.add_argument(
        "--gate-buckets", action="store_true", help="gate every bucket too (statistics.gate_buckets)"
    )
    parser.add_argument(
        "--region-start", type=float, default=regions.start,
        help=f"depth where the start region ends (default {regions.start}: the first quarter)",
    )  # fmt: skip
    parser.add_argument(
        "--region-end", type=float, default=regions.end,
        help=f"depth where the end region begins (default {regions.end}: the last quarter)",
    )  # fmt: skip
    parser.add_argument(
        "--alpha", type=float, default=stats.alpha, help=f"one-sided level after Holm (default {stats.alpha})"
    )
    parser.add_argument(
        "--resamples",
        type=int,
        default=stats.resamples,
        help=f"resamples for Monte Carlo permutation p-values (default {stats.resamples})",
    )
    parser.add_argument(
        "--min-questions",
        type=int,
        default=stats.min_questions,
        help="with --gate-buckets: paired questions a bucket needs to be tested (fewer: low power, "
        f"not failing; default {stats.min_questions})",
    )


def run(args: argparse.Namespace) -> int:
    from val_probing.errors import ValProbingError
    from val_probing.files import check_output_file, check_paths
    from val_probing.gate import Regions, Statistics, Tolerances, make_baseline, read_run, write_baseline

    try:
        tolerances = Tolerances(args.avg_tolerance, args.region_tolerance, args.bucket_tolerance)
    except ValueError as err:  # "avg: expected a number >= 0, got -1"
        raise ValProbingError(f"--{err}".replace(":", "-tolerance:", 1)) from err
    try:
        statistics = Statistics(alpha=args.alpha, resamples=args.resamples, min_questions=args.min_questions,
                                min_drop=args.min_drop, gate_buckets=args.gate_buckets)  # fmt: skip
    except ValueError as err:  # "min_questions: expected an integer >= 1, got 0"
        raise ValProbingError(f"--{err}".replace("_", "-", 1)) from err
    try:
        regions = Regions(start=args.region_start, end=args.region_end)
    except ValueError as err:  # "start: expected a depth with 0 < depth < 1, got 2"
        raise ValProbingError(f"--region-{err}") from err
    check_paths(inputs={"RUN_DIR": args.run_dir}, outputs={"--out": args.out}, input_files=RUN_FILES)
    check_output_file(args.out, "baseline YAML")  # before the work: a folder or read-only path is exit 2
    results = read_run(args.run_dir, args.model)
    sources = sorted({str(r.source) for r in results})
    baseline = make_baseline(
        results,
        tolerances=tolerances,
        statistics=statistics,
        created_from=", ".join(sources),
        regions=regions,
    )
    written = write_baseline(baseline, args.out)
    kind = "with per-sample scores" if baseline.has_samples else "WITHOUT per-sample scores (tolerances only)"
    print(
        f"baseline for {baseline.model} ({', '.join(baseline.tasks)}) {kind}: {', '.join(map(str, written))}"
    )
    return 0
