"""Document probes: a context of sentences; the question quotes a piece, the answer is its sentence."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from val_probing.probes.base import find_key, one_line, text_field, text_key_candidates
from val_probing.records import Family

NAME: Family = "document"
SEPARATOR = "\n"
POOL_FILE = "document_sentences.jsonl"
# sha256 of the authors' pool file at commit 20ed4da (2024-05-15), the version this package was tested on
FILM_SHA256 = "9970b18b6ebedbef18cf3870b5dbc5a4d82a8c8b245c60a564e5a1a1d92fad73"
OFFICIAL_SPLIT = "document_bi_32k"
OFFICIAL_GOLD = ("completion",)
DEFAULT_BUCKETS = 16  # 50-position buckets of the official data's 800 positions
_CUE = re.compile(r"sentence|piece|passage|phrase", re.IGNORECASE)


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


def key_marker(key: str) -> str:
    return key


def extract_key(instruction: str, context: str | None = None) -> str:
    """The quoted piece (see :func:`val_probing.probes.base.find_key`)."""
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
    """The needle item in a context: the gold sentence."""
    return re.compile(re.escape(answer.strip()))


def oracle(context: str, instruction: str) -> str:
    """The line (sentence) of the context that holds the quoted piece."""
    piece = extract_key(instruction)
    if context.count(piece) != 1:
        return ""
    at = context.index(piece)
    start = context.rfind(SEPARATOR, 0, at) + 1
    end = context.find(SEPARATOR, at)
    return context[start : end if end >= 0 else len(context)]


ITEM = DocumentItem
