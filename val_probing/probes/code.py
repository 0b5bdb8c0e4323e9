"""Code probes: a context of functions; the question quotes a body line, the answer is the function's name.

An item is rendered as the authors did: ``def {name}:`` then the body lines (each indented), so a
header is the only kind of line that starts at column 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from val_probing.probes.base import find_key, one_line, text_field, text_key_candidates
from val_probing.records import Family

NAME: Family = "code"
SEPARATOR = "\n"
POOL_FILE = "code_functions.jsonl"
# sha256 of the authors' pool file at commit 20ed4da (2024-05-15), the version this package was tested on
FILM_SHA256 = "06efc99bf274eba23be55325da349652e55f87c603aa52381b57ef871c060431"
OFFICIAL_SPLIT = "code_backward_32k"
OFFICIAL_GOLD = ("completion",)
DEFAULT_BUCKETS = 16  # 50-position buckets of the official data's 800 positions
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


def unique_strings(item: CodeItem) -> tuple[str, ...]:
    # "def NAME" without the colon: once in the context, it is the header and nothing else can be
    # mistaken for one (also by needle_pattern, which accepts "def NAME(" or "def NAME ").
    return (item.piece, f"{_HEADER}{item.function_name}")


def key_marker(key: str) -> str:
    return key


def extract_key(instruction: str, context: str | None = None) -> str:
    """The quoted code line (see :func:`val_probing.probes.base.find_key`)."""
    return find_key(
        NAME,
        instruction,
        context,
        candidates=text_key_candidates,
        cue=_CUE,
        marker=key_marker,
        what="a quoted piece",
    )


def needle_pattern(answer: str, key: str) -> re.Pattern[str]:
    """The needle item in a context: its ``def NAME`` header."""
    # Functions may be joined by newlines or by spaces: a header starts the text or follows whitespace.
    return re.compile(rf"(?<!\S)def {re.escape(answer.strip().strip('.'))}(?=[:(\s])")


def oracle(context: str, instruction: str) -> str:
    """The name in the nearest ``def NAME:`` header above the quoted line."""
    line = extract_key(instruction)
    if context.count(line) != 1:
        return ""
    at = context.index(line)
    head = context.rfind("\n" + _HEADER, 0, at) + 1  # 0 when the needle is the first function
    if not context.startswith(_HEADER, head):
        return ""
    end = context.find("\n", head)
    title = context[head + len(_HEADER) : end if end >= 0 else len(context)]
    return title.removesuffix(":")


ITEM = CodeItem
