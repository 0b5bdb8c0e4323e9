"""``val-probing check``: gate a run against a baseline. Exit 0 pass, 1 regression, 2 unusable input."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from val_probing.records import write_text_atomic

HELP = "compare a VAL run with a baseline (paired tests per bucket); exit 1 on a regression"

EPILOG = """\
exit status: 0 no regression, 1 regression, 2 unusable input (settings, probe hash or tasks that
differ from the baseline, unreadable files). A check never passes silently: without per-sample
scores it falls back to tolerances and says so.

examples:
  val-probing check runs/pr --baseline ci/val-baseline.yaml
  # in CI: a job summary (also written to $GITHUB_STEP_SUMMARY when set) and JUnit XML
  val-probing check runs/pr --baseline ci/val-baseline.yaml --markdown gate.md --junit gate.xml
  # a new checkpoint against the previous one's baseline (the model may differ; it is named)
  val-probing check runs/ckpt-2 --baseline ci/val-baseline.yaml --junit gate.xml

See docs/ci-gate.md for the statistics and the baseline schema.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="lm-eval output folder or results file")
    parser.add_argument("--baseline", type=Path, required=True, help="baseline YAML (val-probing baseline)")
    parser.add_argument("--model", help="the model to check when RUN_DIR holds several")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="write a Markdown summary here")
    parser.add_argument("--junit", type=Path, metavar="FILE", help="write JUnit XML here")
    parser.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="SETTING",
        help="a setting allowed to differ (limit, probe_hash, ...); repeatable; model: no model note",
    )


def _same_file(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def run(args: argparse.Namespace) -> int:
    from val_probing.errors import ValProbingError
    from val_probing.gate import check, format_markdown, format_table, junit_xml, read_baseline
    from val_probing.results import load_results

    baseline = read_baseline(args.baseline)
    results = load_results([args.run_dir], n_boot=200)
    if args.model is not None:
        results = [r for r in results if r.model == args.model]
        if not results:
            raise ValProbingError(f"{args.run_dir}: no results for model {args.model!r}")
    result = check(baseline, results, ignore=frozenset(args.ignore))
    print(format_table(result))
    markdown = format_markdown(result)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if args.markdown is not None and not (summary and _same_file(args.markdown, Path(summary))):
        write_text_atomic(args.markdown, markdown)
    if summary:  # --markdown "$GITHUB_STEP_SUMMARY" lands here too: appended once, earlier steps kept
        with open(summary, "a", encoding="utf-8") as handle:  # appended, as GitHub expects
            handle.write(markdown)
    if args.junit is not None:
        write_text_atomic(args.junit, junit_xml(result))
    return 0 if result.passed else 1
