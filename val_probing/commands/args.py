"""Argument types shared by the commands (argparse ``type=`` callables)."""

from __future__ import annotations

import argparse


def int_at_least(minimum: int, text: str) -> int:
    """``text`` as an integer >= ``minimum``, else an argparse error saying so."""
    try:
        value = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from err
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (counts: sets, positions, buckets, ...)."""
    return int_at_least(1, text)


def non_negative_int(text: str) -> int:
    """An integer >= 0 (seeds, offsets)."""
    return int_at_least(0, text)
