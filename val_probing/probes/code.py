"""Code probes: a context of functions; the question quotes a body line, the answer is the function's name.

An item is rendered as the authors did: ``def {name}:`` then the body lines (each indented), so a
header is the only kind of line that starts at column 0.
"""

from __future__ import annotations

from val_probing.official import extract_key
from val_probing.pools import CodeItem
from val_probing.records import Family

NAME: Family = "code"
SEPARATOR = "\n"
_HEADER = "def "


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
    # mistaken for one (also by official.needle_start, which accepts "def NAME(" or "def NAME ").
    return (item.piece, f"{_HEADER}{item.function_name}")


def oracle(context: str, instruction: str) -> str:
    """The name in the nearest ``def NAME:`` header above the quoted line."""
    line = extract_key(NAME, instruction)
    if context.count(line) != 1:
        return ""
    at = context.index(line)
    head = context.rfind("\n" + _HEADER, 0, at) + 1  # 0 when the needle is the first function
    if not context.startswith(_HEADER, head):
        return ""
    end = context.find("\n", head)
    title = context[head + len(_HEADER) : end if end >= 0 else len(context)]
    return title.removesuffix(":")
