"""Arguments shared by the commands: argparse ``type=`` callables and the options several take."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from val_probing.results import load
from val_probing.results.effective_length import DEFAULT_MAX_GAP, DEFAULT_MIN_AVG


def int_at_least(minimum: int, text: str) -> int:
    """``text`` as an integer >= ``minimum``, else an argparse error saying so."""
    try:
        value = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from err
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text}")
    return value


def finite_float(text: str) -> float:
    """A number that is not NaN or infinite (a threshold compared with scores)."""
    try:
        value = float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from err
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (counts: sets, positions, buckets, ...)."""
    return int_at_least(1, text)


def non_negative_int(text: str) -> int:
    """An integer >= 0 (seeds, offsets)."""
    return int_at_least(0, text)


# the files of a run that RUN_DIR commands read from its folder: an output never replaces one
RUN_FILES = load.RUN_FILES


def add_run_dirs(parser: argparse.ArgumentParser) -> None:
    """``RUN_DIR ...``: the saved runs a command reads (``report``, ``plot``)."""
    parser.add_argument(
        "runs", nargs="+", type=Path, metavar="RUN_DIR", help="lm-eval output folders or files"
    )


def add_run_dir(parser: argparse.ArgumentParser, purpose: str) -> None:
    """``RUN_DIR`` and ``--model``: the run the gate reads (``purpose``: "record" or "check")."""
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="lm-eval output folder or results file")
    parser.add_argument("--model", help=f"the model to {purpose} when RUN_DIR holds several")


def add_context_length(parser: argparse.ArgumentParser, what: str) -> None:
    """``--context-length``: which length of a multi-length run ``what`` (curves, numbers) shows."""
    parser.add_argument(
        "--context-length", type=int, help=f"{what} at this context length (default: each task's longest)"
    )


def add_effective_length(parser: argparse.ArgumentParser) -> None:
    """``--min-avg`` / ``--max-gap``: the thresholds of
    :func:`val_probing.results.effective_length.effective_lengths`."""
    parser.add_argument(
        "--min-avg",
        type=finite_float,
        default=DEFAULT_MIN_AVG,
        help="effective length: lowest avg a length may have (x100, default %(default)s)",
    )
    parser.add_argument(
        "--max-gap",
        type=finite_float,
        default=DEFAULT_MAX_GAP,
        help="effective length: highest CI gap a length may have (x100, default %(default)s)",
    )
