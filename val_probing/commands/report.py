"""``val-probing report``: the paper's Table 1 (Avg / Gap per task, All) from saved runs."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from val_probing.records import write_text_atomic

log = logging.getLogger(__name__)

HELP = "print the paper's Table 1 (Avg and Gap per task, All) for saved runs; --csv for a file"

EPILOG = """\
RUN_DIR is an lm-eval --output_path folder (searched for results_*.json), one results_*.json, or
a 'val-probing score --json' file. Avg = mean of the bucket scores, Gap = max - min (lower is
better), x100; All = mean over the three tasks (empty when a model lacks a task).

examples:
  val-probing report results/
  val-probing report results/ --csv table1.csv
  val-probing report results/ --all-runs --digits 2     # one row per run
  val-probing report results/ --context-length 4096 --markdown table1.md
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs", nargs="+", type=Path, metavar="RUN_DIR", help="lm-eval output folders or files"
    )
    parser.add_argument("--csv", type=Path, help="also write the table as CSV (6 decimals)")
    parser.add_argument("--markdown", type=Path, help="also write the Markdown table to this file")
    parser.add_argument("--all-runs", action="store_true", help="one row per run, not only the latest")
    parser.add_argument(
        "--context-length", type=int, help="numbers at this context length (default: each task's longest)"
    )
    parser.add_argument("--digits", type=int, default=1, help="decimals in the Markdown table (default 1)")


def run(args: argparse.Namespace) -> int:
    from val_probing.errors import ValProbingError
    from val_probing.report import table_rows, to_csv, to_markdown
    from val_probing.results import load_results

    if args.digits < 0:
        raise ValProbingError(f"--digits: {args.digits} is negative")
    rows = table_rows(
        load_results(args.runs, latest_only=not args.all_runs), context_length=args.context_length
    )
    if not rows:
        raise ValProbingError(f"no results at context length {args.context_length}")
    markdown = to_markdown(rows, digits=args.digits)
    print(markdown, end="")
    if args.markdown:
        write_text_atomic(args.markdown, markdown)
        log.info("wrote %s", args.markdown)
    if args.csv:
        write_text_atomic(args.csv, to_csv(rows))
        log.info("wrote %s", args.csv)
    return 0
