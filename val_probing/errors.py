"""The package's error base: anything raised as ``ValProbingError`` is a message for the user.

The CLI prints such errors without a traceback and exits with code 2. Raise them with the file,
line and field (or task, prompt and limit) that a user needs to fix the input.

The Python API checks its arguments with :func:`items_of`: a ``TypeError`` naming the argument and
what it expects, never a raw ``AttributeError`` from deep inside.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


class ValProbingError(Exception):
    """A problem with the user's input or environment, explained in the message."""


def items_of(value: object, kind: type[T], argument: str, wanted: str) -> list[T]:
    """``value`` (an iterable of ``kind``, not a str, bytes or dict) as a list; a ``TypeError`` saying
    ``argument: expected {wanted}, got ...`` (the offending item's index too) otherwise."""
    if isinstance(value, str | bytes | dict) or not isinstance(value, Iterable):
        raise TypeError(f"{argument}: expected {wanted}, got {type(value).__name__}")
    items = list(value)
    for index, item in enumerate(items):
        if not isinstance(item, kind):
            raise TypeError(f"{argument}: expected {wanted}, got {type(item).__name__} at index {index}")
    return items
