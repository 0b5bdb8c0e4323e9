"""``val-probing html``: one self-contained interactive HTML page of saved runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from val_probing.commands.args import add_effective_length, add_run_dirs, positive_int

HELP = "write one offline, interactive HTML page of saved runs: curves, heatmap, Table 1, questions"

EPILOG = """\
RUN_DIR is an lm-eval --output_path folder (searched for results_*.json), one results_*.json, or
a 'val-probing score --json' file; give several to overlay models. The page is ONE file with every
script and style inlined: it opens offline and makes no request (share it as it is).

It shows the position curves per task and context length with 95% bootstrap intervals (hover for
values, click the legend to hide a model), the depth x length heatmap when several lengths ran,
Table 1, the effective context length, the closed-book and constant-answer floors where known, and
provenance. Click a point (or a heatmap cell) to list that bucket's questions: needle depth, key,
gold, answer, score; with two models, what changed, right -> wrong first (the first RUN_DIR is
"before"). Runs saved without --log_samples have curves but no questions.

examples:
  val-probing html results/demo --out report.html
  val-probing html runs/base runs/tuned --out compare.html       # two models, what changed
  val-probing html runs/tuned --baseline baseline.yaml --out gate.html
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_dirs(parser)
    parser.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    parser.add_argument("--baseline", type=Path, help="a gate baseline (YAML): add the gate's verdict rows")
    parser.add_argument("--title", help="page title (default: the models' names)")
    parser.add_argument(
        "--answer-chars",
        type=positive_int,
        default=None,
        help="longest answer kept in the page, in characters (default 2000; longer ones are cut)",
    )
    add_effective_length(parser)


def run(args: argparse.Namespace) -> int:
    from val_probing.webpage import DEFAULT_ANSWER_CHARS, write_html

    path = write_html(
        args.runs,
        args.out,
        baseline=args.baseline,
        title=args.title,
        answer_chars=args.answer_chars or DEFAULT_ANSWER_CHARS,
        min_avg=args.min_avg,
        max_gap=args.max_gap,
    )
    print(f"report: {path} ({path.stat().st_size / 1024:.0f} KiB)")
    return 0
