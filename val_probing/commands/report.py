"""``val-probing report``: the paper's Table 1 (Avg / Gap per task, All) from saved runs."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from val_probing.commands.args import RUN_FILES, add_context_length, add_effective_length, add_run_dirs
from val_probing.files import write_text_atomic

log = logging.getLogger(__name__)

HELP = "print the paper's Table 1 (Avg and Gap per task, All) for saved runs; --csv for a file"

EPILOG = """\
RUN_DIR is an lm-eval --output_path folder (searched for results_*.json), one results_*.json, or
a 'val-probing score --json' file. Avg = mean of the bucket scores, Gap = max - min (lower is
better), x100; All = mean over the three tasks (empty when a model lacks a task). Give a
closed-book run too (lm-eval metadata closed_book: true) and each task gets an "above floor"
column: Avg minus what the model scores without the context.

A model run at two or more context lengths also gets its effective context length per task: the
longest tested length up to which every tested length has avg >= --min-avg (default 80) and a
CI gap <= --max-gap (default 20). The CI gap is max(0, highest bucket CI low - lowest bucket CI
high): the part of the gap that the buckets' 95% bootstrap CIs cannot explain. Its 95% bounds
apply the same rule with every interval inside (low) or reaching (high) the thresholds, and the
peers' definitions are printed beside it: RULER's (avg >= 85.6, a reference model's short-context
score) and NoLiMa's (avg >= 85% of the model's own shortest-length avg) (docs/plots.md).

examples:
  val-probing report results/
  val-probing report results/ --csv table1.csv
  val-probing report results/ --all-runs --digits 2     # one row per run
  val-probing report results/ --context-length 4096 --markdown table1.md
  val-probing report runs/4k runs/8k runs/16k --min-avg 60 --max-gap 25   # effective length
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_dirs(parser)
    parser.add_argument("--csv", type=Path, help="also write the table as CSV (6 decimals)")
    parser.add_argument("--markdown", type=Path, help="also write the Markdown table to this file")
    parser.add_argument("--all-runs", action="store_true", help="one row per run, not only the latest")
    add_context_length(parser, "numbers")
    parser.add_argument("--digits", type=int, default=1, help="decimals in the Markdown table (default 1)")
    add_effective_length(parser)


def run(args: argparse.Namespace) -> int:
    from val_probing.errors import ValProbingError
    from val_probing.files import check_output_file, check_paths
    from val_probing.results import DEFAULT_N_BOOT, load_results
    from val_probing.results.effective_length import effective_lengths
    from val_probing.tables import (
        effective_markdown,
        floors,
        table_rows,
        to_csv,
        to_markdown,
    )

    if args.digits < 0:
        raise ValProbingError(f"--digits: {args.digits} is negative")
    outputs = {"--csv": args.csv, "--markdown": args.markdown}
    check_paths(inputs={"RUN_DIR": args.runs}, outputs=outputs, input_files=RUN_FILES)
    for path in (args.csv, args.markdown):
        if path is not None:
            check_output_file(path)
    results = load_results(args.runs, latest_only=not args.all_runs, n_boot=DEFAULT_N_BOOT, closed_book=True)
    if all(r.closed_book for r in results):
        raise ValProbingError("only closed-book runs: they are floors of a run with the context")
    rows = table_rows(results, context_length=args.context_length)
    if not rows:
        raise ValProbingError(f"no results at context length {args.context_length}")
    markdown = to_markdown(rows, digits=args.digits, floors=floors(results))
    effective = effective_markdown(
        effective_lengths(results, min_avg=args.min_avg, max_gap=args.max_gap), digits=args.digits
    )
    if effective:
        markdown += "\n" + effective
    print(markdown, end="")
    if args.markdown:
        write_text_atomic(args.markdown, markdown)
        log.info("wrote %s", args.markdown)
    if args.csv:
        write_text_atomic(args.csv, to_csv(rows))
        log.info("wrote %s", args.csv)
    return 0
