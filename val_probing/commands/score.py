"""``val-probing score``: score model outputs that are row-aligned with probe data.

Line i of OUTPUTS answers row i of DATA. DATA is the official schema (the authors' VaLProbing-32K
JSONL, a folder holding ``<split>.jsonl``, or built probes exported with ``to_official_row``) or a
file of probe records as ``val-probing build`` writes them. Omit --data to read the split from the
hub (offline this fails, saying how to get the files).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from val_probing.commands.args import non_negative_int
from val_probing.records import FAMILIES
from val_probing.score import score_outputs
from val_probing.tables import score_table

HELP = "score model outputs against official or built probe data (buckets, avg, gap, CIs)"

EPILOG = """\
OUTPUTS holds one JSON object per line, in the order of the DATA rows, with the answer text under
"samples" (a list; the first is scored, as in the authors' vllm_inference.py), "sample", "text" or
"output". A null answer scores 0.

examples:
  # the authors' released FILM-7B outputs, scored exactly as their plot.py does
  # (clone github.com/microsoft/FILM; get the data with its VaLProbing/download.py elsewhere)
  val-probing score --task code --data ValProbing-32K/ --reference \\
      --outputs FILM/VaLProbing/VaLProbing-32K/results/FILM-7B/sample_code_backward_32k.jsonl \\
      --skip-list FILM/VaLProbing/VaLProbing-32K/code_backward_32k_skip_list.json

  # your model's outputs on the official database split, whole buckets, JSON for scripts
  val-probing score --task database --data ValProbing-32K/database_forward_32k.jsonl \\
      --outputs my_model/database.jsonl --json

  # built probes (val-probing build), 8 buckets, with the tolerant diagnostic metrics
  val-probing score --task document --data probes/document.jsonl --outputs out.jsonl \\
      --buckets 8 --diagnostics

modes:
  default      every position counts; skip rows are derived from the data (or --skip-list)
  --reference  the authors' plot.py: 50-position buckets whose last position is dropped
               (positions 50i..50i+48), rows on the skip list left out
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, choices=FAMILIES, help="probe family")
    parser.add_argument(
        "--data",
        type=Path,
        help="official JSONL, a folder with <split>.jsonl, or built probe records "
        "(omitted: the hub split In2Training/VaLProbing-32K)",
    )
    parser.add_argument(
        "--outputs", type=Path, required=True, help="model outputs, one JSON line per data row"
    )
    parser.add_argument(
        "--reference",
        action="store_true",
        help="reproduce the authors' plot.py: 50-position buckets minus their last position",
    )
    parser.add_argument(
        "--skip-list",
        type=Path,
        help="the authors' JSON list of 0-based rows to leave out (default: derived)",
    )
    parser.add_argument(
        "--buckets",
        type=int,
        metavar="N",
        help="number of position buckets (default: n_items/50 for official rows, as in the paper; "
        "built probes: the lm-eval tasks' count, see docs/scoring.md)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print JSON (Summary.to_dict() plus task, n_skipped)"
    )
    parser.add_argument(
        "--diagnostics", action="store_true", help="also summarize the tolerant metrics (not the paper's)"
    )
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for CIs (default 1000)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="bootstrap seed (default 0)")


def run(args: argparse.Namespace) -> int:
    from val_probing.files import check_paths

    check_paths(inputs={"--data": args.data, "--outputs": args.outputs, "--skip-list": args.skip_list})
    result = score_outputs(
        args.task,
        args.outputs,
        data=args.data,
        reference=args.reference,
        skip_list=args.skip_list,
        n_buckets=args.buckets,
        diagnostics=args.diagnostics,
        n_boot=args.n_boot,
        seed=args.seed,
    )
    print(json.dumps(result.to_dict(), indent=2) if args.json else score_table(result))
    return 0
