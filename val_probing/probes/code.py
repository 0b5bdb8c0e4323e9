"""Code probes: a context of functions; the question quotes a body line, the answer is the function's name.

An item is rendered as the authors did: ``def {name}:`` then the body lines (each indented), so a
header is the only kind of line that starts at column 0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rapidfuzz import fuzz

from val_probing.probes.base import (
    Check,
    Family,
    Floor,
    MetricError,
    Target,
    as_written,
    best_substring_answer,
    find_quoted_key,
    one_line,
    text_field,
)

NAME: Family = "code"
LABEL = "Code"
TITLE = "Code Function Retrieval (Backward)"
SEPARATOR = "\n"
POOL_FILE = "code_functions.jsonl"
FILM_SHA256 = "06efc99bf274eba23be55325da349652e55f87c603aa52381b57ef871c060431"
OFFICIAL_SPLIT = "code_backward_32k"
OFFICIAL_GOLD = ("completion",)
DEFAULT_BUCKETS = 16  # of 800 positions
# The constant-answer floor (x100) above which a set is warned about; the authors' pool: 0.04
FLOOR_WARN = 10.0
_CUE = re.compile(r"function|code|snip|line", re.IGNORECASE)
_HEADER = "def "


@dataclass(frozen=True, slots=True)
class CodeItem:
    """A function: its name, body lines (each indented), and one of those lines (stripped) as the key."""

    function_name: str
    function_define: str
    piece: str

    def __post_init__(self) -> None:
        name = self.function_name
        if not name.isidentifier():
            raise ValueError(f"field 'function_name' must be an identifier, got {name!r}")
        lines = self.function_define.split("\n")
        for line in lines:
            if not line.strip() or not line[0].isspace() or line != line.rstrip():
                raise ValueError(
                    "field 'function_define' must be non-blank body lines, each indented, "
                    f"without trailing whitespace (got line {line!r})"
                )
        one_line("piece", self.piece)
        if self.piece not in {line.strip() for line in lines}:
            raise ValueError("field 'piece' must be one of the lines of 'function_define', stripped")

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> CodeItem:
        return cls(
            function_name=text_field(obj, "function_name"),
            function_define=text_field(obj, "function_define").rstrip("\n"),
            piece=text_field(obj, "piece"),
        )


def header(name: str) -> str:
    return f"{_HEADER}{name}:"


def render(item: CodeItem) -> str:
    return f"{header(item.function_name)}\n{item.function_define}"


def key(item: CodeItem) -> str:
    return item.piece


def instruction(key: str) -> str:
    return f'In above context, which function contains the code snip "{key}" ?'


def gold(item: CodeItem) -> tuple[str, str | None]:
    return item.function_name, None


def check_gold_fields(answer: str, description: str | None) -> None:
    """The gold is the answer alone (a description, when given, is kept and never scored)."""


def unique_strings(item: CodeItem) -> tuple[str, ...]:
    # "def NAME" without the colon: once in the context, it is the header and nothing else can be
    # mistaken for one (also by needle_pattern, which accepts "def NAME(" or "def NAME ").
    return (item.piece, f"{_HEADER}{item.function_name}")


key_marker = as_written


def extract_key(instruction: str, context: str | None = None) -> str:
    """The quoted code line (see :func:`val_probing.probes.base.find_key`)."""
    return find_quoted_key(NAME, instruction, context, _CUE)


def needle_pattern(answer: str, key: str) -> re.Pattern[str]:
    """The needle item in a context: its ``def NAME`` header."""
    # Functions may be joined by newlines or by spaces: a header starts the text or follows whitespace.
    return re.compile(rf"(?<!\S)def {re.escape(answer.strip().strip('.'))}(?=[:(\s])")


def read_gold(context: str, key: str) -> tuple[str, str | None] | None:
    """(the name in the nearest ``def NAME:`` header above the line ``key``, None); None when the
    line is absent, occurs more than once, or has no header above it."""
    if context.count(key) != 1:
        return None
    at = context.index(key)
    head = context.rfind("\n" + _HEADER, 0, at) + 1  # 0 when the needle is the first function
    if not context.startswith(_HEADER, head):
        return None
    end = context.find("\n", head)
    title = context[head + len(_HEADER) : end if end >= 0 else len(context)]
    return title.removesuffix(":"), None


def oracle(context: str, instruction: str) -> str:
    """The name in the nearest ``def NAME:`` header above the quoted line."""
    found = read_gold(context, extract_key(instruction))
    return "" if found is None else found[0]


# --------------------------------------------------------------------------------------------------
# Scoring (val_probing.metrics documents the rules)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def match(pred: str | None, gold: str) -> float:
    """1.0 when the function name (trailing/leading dots stripped) is a substring of the prediction."""
    name = gold.strip(".")
    if not name:
        raise MetricError(f"code gold {gold!r} is empty after strip('.')")
    if not pred:
        return 0.0
    return 1.0 if name in pred else 0.0


def check(value: str | None, target: Target) -> float:
    """The reference score (the authors' plot.py): the name is a case-sensitive substring."""
    return match(value, target.answer)


def constant_floor(targets: Sequence[Target]) -> Floor:
    """The best single function name given as the answer to every question (a name also credits the
    names it contains, ``get`` in ``get_value``): exact over the set's names."""
    return best_substring_answer([(t.answer.strip("."),) for t in targets])


def _normalise_identifier(name: str) -> str:
    return name.replace("_", "").lower()


def name_token(value: str | None, target: Target) -> float:
    """1.0 when the gold name is a whole identifier of the prediction (``get_num`` != ``get_number``)."""
    if not value:
        return 0.0
    return 1.0 if target.answer.strip(".") in _IDENTIFIER.findall(value) else 0.0


def name_normalised(value: str | None, target: Target) -> float:
    """1.0 when an identifier of the prediction equals the gold name ignoring case and underscores."""
    if not value:
        return 0.0
    wanted = _normalise_identifier(target.answer.strip("."))
    return 1.0 if any(_normalise_identifier(tok) == wanted for tok in _IDENTIFIER.findall(value)) else 0.0


def name_fuzzy(value: str | None, target: Target) -> float:
    """Best rapidfuzz ratio between the gold name and any identifier of the prediction, in [0, 1]."""
    if not value:
        return 0.0
    tokens = _IDENTIFIER.findall(value)
    if not tokens:
        return 0.0
    return max(fuzz.ratio(target.answer.strip("."), tok) for tok in tokens) / 100.0


DIAGNOSTICS: Mapping[str, Check] = {
    "name_token": name_token,
    "name_normalised": name_normalised,
    "name_fuzzy": name_fuzzy,
}
"""Tolerant checks, reported under these names (stable API), never as the reference score."""

ITEM = CodeItem
