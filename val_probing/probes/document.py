"""Document probes: a context of sentences; the question quotes a piece, the answer is its sentence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from val_probing.official import extract_key
from val_probing.probes.base import one_line, text_field
from val_probing.records import Family

NAME: Family = "document"
SEPARATOR = "\n"


@dataclass(frozen=True, slots=True)
class DocumentItem:
    """A sentence and a contiguous piece of it (the question names the piece)."""

    sentence: str
    piece: str

    def __post_init__(self) -> None:
        one_line("sentence", self.sentence)
        one_line("piece", self.piece)
        if self.sentence.count(self.piece) != 1:
            raise ValueError("field 'piece' must occur exactly once in the sentence")

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> DocumentItem:
        return cls(sentence=text_field(obj, "sentence"), piece=text_field(obj, "piece"))


def render(item: DocumentItem) -> str:
    return item.sentence


def key(item: DocumentItem) -> str:
    return item.piece


def instruction(key: str) -> str:
    return f'In above context, which sentence contains the piece "{key}"?'


def gold(item: DocumentItem) -> tuple[str, str | None]:
    return item.sentence, None


def unique_strings(item: DocumentItem) -> tuple[str, ...]:
    return (item.piece, item.sentence)


def oracle(context: str, instruction: str) -> str:
    """The line (sentence) of the context that holds the quoted piece."""
    piece = extract_key(NAME, instruction)
    if context.count(piece) != 1:
        return ""
    at = context.index(piece)
    start = context.rfind(SEPARATOR, 0, at) + 1
    end = context.find(SEPARATOR, at)
    return context[start : end if end >= 0 else len(context)]
