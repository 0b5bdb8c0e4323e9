"""``val-probing check``: gate a run against a baseline. Exit 0 pass, 1 regression, 2 unusable in or out."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from val_probing.commands.args import RUN_FILES, add_run_dir
from val_probing.files import write_text_atomic

HELP = "compare a VAL run with a baseline (paired tests of avg and depth regions); exit 1 on a regression"

EPILOG = """\
Per task it tests a fixed family: avg, the depth regions start / middle / end (pooled buckets) and
the shape (the middle's dip below the edges; fails only when the middle also got worse), one-sided
paired sign-flip tests of "worse", Holm-corrected. Improvements never fail. Buckets and the max-min
gap are shown with 95% intervals, informational unless --gate-buckets.

exit status: 0 no regression, 1 regression, 2 unusable input or output (settings, probe hash or
tasks that differ from the baseline, unreadable or mismatched files, an output path that cannot be
written, an old-format baseline, with --strict-environment a different environment). A check never
passes silently: without per-sample scores it falls back to tolerances and says so; a test that
cannot fail at the slice's size is named (LOW POWER); environment differences are named.

examples:
  val-probing check runs/pr --baseline ci/val-baseline.yaml
  # in CI: a job summary (also written to $GITHUB_STEP_SUMMARY when set) and JUnit XML
  val-probing check runs/pr --baseline ci/val-baseline.yaml --markdown gate.md --junit gate.xml
  # a new checkpoint against the previous one's baseline (the model may differ; it is named)
  val-probing check runs/ckpt-2 --baseline ci/val-baseline.yaml --junit gate.xml
  # a big slice: fail only on evidence of a drop of more than 1 point (non-inferiority margin)
  val-probing check runs/pr --baseline ci/val-baseline.yaml --min-drop 1
  # the serving stack must be the baseline's (backend, dtype, prefix caching, versions...)
  val-probing check runs/pr --baseline ci/val-baseline.yaml --strict-environment
  # also gate every bucket (Holm over more tests: less power for the regions)
  val-probing check runs/pr --baseline ci/val-baseline.yaml --gate-buckets

See docs/ci-gate.md for the statistics and the baseline schema.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_dir(parser, "check")
    parser.add_argument("--baseline", type=Path, required=True, help="baseline YAML (val-probing baseline)")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="write a Markdown summary here")
    parser.add_argument("--junit", type=Path, metavar="FILE", help="write JUnit XML here")
    parser.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="SETTING",
        help="a setting allowed to differ (limit, probe_hash, ...); repeatable; model: no model note",
    )
    parser.add_argument(
        "--min-drop",
        type=float,
        metavar="POINTS",
        help="non-inferiority margin (x100 points): avg and regions fail only on evidence of a drop larger "
        "than this (default: the baseline's statistics.min_drop, 0)",
    )
    parser.add_argument(
        "--gate-buckets",
        action="store_true",
        help="also test every bucket (in the Holm family), as statistics.gate_buckets: true",
    )
    parser.add_argument(
        "--fail-low-power",
        action="store_true",
        help="with --gate-buckets: also test buckets holding fewer than statistics.min_questions questions",
    )
    parser.add_argument(
        "--strict-environment",
        action="store_true",
        help="a run whose environment (backend, serving settings, versions) differs from the baseline's "
        "is unusable input (exit 2); by default each difference is named and the check goes on",
    )


def _same_file(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def run(args: argparse.Namespace) -> int:
    from val_probing.files import check_output_file, check_paths, writing
    from val_probing.gate import (
        check,
        format_markdown,
        format_table,
        junit_xml,
        load_run,
        read_baseline,
        samples_files_beside,
    )

    # every output path is checked before the work starts: a check never prints PASS and then fails
    summary_env = os.environ.get("GITHUB_STEP_SUMMARY")
    summary = Path(summary_env) if summary_env else None
    markdown_path = args.markdown
    if markdown_path is not None and summary is not None and _same_file(markdown_path, summary):
        markdown_path = None  # --markdown "$GITHUB_STEP_SUMMARY": appended once, below
    outputs = {"--markdown": markdown_path, "--junit": args.junit, "$GITHUB_STEP_SUMMARY": summary}
    # the baseline's samples file is an input too: `--junit ci/val-baseline.samples.<hash>.jsonl` is refused
    inputs = {"RUN_DIR": args.run_dir, "--baseline": [args.baseline, *samples_files_beside(args.baseline)]}
    check_paths(inputs=inputs, outputs=outputs, input_files=RUN_FILES)
    for path, what in ((markdown_path, "Markdown summary"), (args.junit, "JUnit XML"),
                       (summary, "GitHub step summary ($GITHUB_STEP_SUMMARY)")):  # fmt: skip
        if path is not None:
            check_output_file(path, what)

    baseline = read_baseline(args.baseline)
    results = load_run(args.run_dir, args.model, baseline)
    result = check(
        baseline,
        results,
        ignore=frozenset(args.ignore),
        fail_low_power=args.fail_low_power,
        gate_buckets=args.gate_buckets,
        min_drop=args.min_drop,
        strict_environment=args.strict_environment,
    )
    markdown = format_markdown(result)
    if markdown_path is not None:
        write_text_atomic(markdown_path, markdown)
    if summary is not None:  # appended, as GitHub expects: earlier steps' summaries are kept
        with (
            writing(summary, "GitHub step summary ($GITHUB_STEP_SUMMARY)"),
            summary.open("a", encoding="utf-8") as handle,
        ):
            handle.write(markdown)
    if args.junit is not None:
        write_text_atomic(args.junit, junit_xml(result))
    print(format_table(result))  # last: every output is written, so the verdict is the exit status
    return 0 if result.passed else 1
