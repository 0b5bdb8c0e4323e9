"""Document probes: a context of sentences; the question quotes a piece, the answer is its sentence."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rapidfuzz import fuzz
from rapidfuzz.utils import default_process

from val_probing.probes.base import (
    Check,
    MetricError,
    Target,
    as_written,
    find_quoted_key,
    one_line,
    text_field,
)
from val_probing.records import Family

NAME: Family = "document"
LABEL = "Document"
TITLE = "Document Sentence Retrieval (Bi-Direction)"
SEPARATOR = "\n"
POOL_FILE = "document_sentences.jsonl"
FILM_SHA256 = "9970b18b6ebedbef18cf3870b5dbc5a4d82a8c8b245c60a564e5a1a1d92fad73"
OFFICIAL_SPLIT = "document_bi_32k"
OFFICIAL_GOLD = ("completion",)
DEFAULT_BUCKETS = 16  # of 800 positions
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


key_marker = as_written


def extract_key(instruction: str, context: str | None = None) -> str:
    """The quoted piece (see :func:`val_probing.probes.base.find_key`)."""
    return find_quoted_key(NAME, instruction, context, _CUE)


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


# --------------------------------------------------------------------------------------------------
# Scoring (val_probing.metrics documents the rules)


def recall(pred: str | None, gold: str) -> float:
    """Fraction of the gold sentence's distinct lower-cased words that appear in the prediction."""
    gold_words = set(gold.strip().lower().split())
    if not gold_words:
        raise MetricError(f"document gold {gold!r} has no words: recall is undefined")
    if not pred:
        return 0.0
    pred_words = set(pred.strip().lower().split())
    return len(gold_words & pred_words) / len(gold_words)


def check(value: str | None, target: Target) -> float:
    """The reference score (the authors' plot.py): word-set recall of the gold sentence."""
    return recall(value, target.answer)


def _words(text: str) -> set[str]:
    """Lower-cased words with punctuation removed (rapidfuzz's default_process), as a set."""
    return set(default_process(text).split())


def recall_nopunct(value: str | None, target: Target) -> float:
    """Word-set recall that ignores punctuation and case: ``"model."`` counts as ``"model"``."""
    gold_words = _words(target.answer)
    if not gold_words:
        raise MetricError(f"document gold {target.answer!r} has no words once punctuation is removed")
    if not value:
        return 0.0
    return len(gold_words & _words(value)) / len(gold_words)


def sentence_fuzzy(value: str | None, target: Target) -> float:
    """rapidfuzz partial_ratio of the gold sentence against the prediction, scaled to [0, 1]."""
    if not value:
        return 0.0
    return fuzz.partial_ratio(target.answer, value, processor=default_process) / 100.0


DIAGNOSTICS: Mapping[str, Check] = {"recall_nopunct": recall_nopunct, "sentence_fuzzy": sentence_fuzzy}
"""Tolerant checks, reported under these names (stable API), never as the reference score."""

ITEM = DocumentItem
