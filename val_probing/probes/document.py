"""Document probes: a context of sentences; the question quotes a piece, the answer is its sentence."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rapidfuzz import fuzz
from rapidfuzz.utils import default_process

from val_probing.probes.base import (
    Check,
    Family,
    Floor,
    MetricError,
    Target,
    as_written,
    find_quoted_key,
    one_line,
    text_field,
)

NAME: Family = "document"
LABEL = "Document"
TITLE = "Document Sentence Retrieval (Bi-Direction)"
SEPARATOR = "\n"
POOL_FILE = "document_sentences.jsonl"
FILM_SHA256 = "9970b18b6ebedbef18cf3870b5dbc5a4d82a8c8b245c60a564e5a1a1d92fad73"
OFFICIAL_SPLIT = "document_bi_32k"
OFFICIAL_GOLD = ("completion",)
DEFAULT_BUCKETS = 16  # of 800 positions
# The constant-answer floor (x100) above which a set is warned about;
# the authors' pool: 22 (word recall credits common words)
FLOOR_WARN = 30.0
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


def check_gold_fields(answer: str, description: str | None) -> None:
    """The gold is the answer alone (a description, when given, is kept and never scored)."""


def unique_strings(item: DocumentItem) -> tuple[str, ...]:
    return (item.piece, item.sentence)


key_marker = as_written


def extract_key(instruction: str, context: str | None = None) -> str:
    """The quoted piece (see :func:`val_probing.probes.base.find_key`)."""
    return find_quoted_key(NAME, instruction, context, _CUE)


def needle_pattern(answer: str, key: str) -> re.Pattern[str]:
    """The needle item in a context: the gold sentence."""
    return re.compile(re.escape(answer.strip()))


def read_gold(context: str, key: str) -> tuple[str, str | None] | None:
    """(the line (sentence) of the context that holds the piece ``key``, None); None when the piece is
    absent or occurs more than once."""
    if context.count(key) != 1:
        return None
    at = context.index(key)
    start = context.rfind(SEPARATOR, 0, at) + 1
    end = context.find(SEPARATOR, at)
    return context[start : end if end >= 0 else len(context)], None


def oracle(context: str, instruction: str) -> str:
    """The line (sentence) of the context that holds the quoted piece."""
    found = read_gold(context, extract_key(instruction))
    return "" if found is None else found[0]


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


def constant_floor(targets: Sequence[Target]) -> Floor:
    """The best single gold sentence given as the answer to every question: exact over the set's
    sentences, and a lower bound of what any constant answer of one sentence's length can score.

    Recall is linear in the answer's words: the answer's total over the set is the sum, over its
    distinct words ``w``, of ``weight(w)`` = sum of ``1 / |words(gold)|`` over the golds holding ``w``.
    So each sentence's score is a sum of word weights (one pass over the words). The best bag of k
    words is the k heaviest (stop words such as "the" and "of" weigh most), which can score more than
    any real sentence; the floor reported is the sentence, an answer a model can actually give.
    """
    golds = [set(t.answer.strip().lower().split()) for t in targets]
    if not golds or not all(golds):
        raise MetricError("document floor: every gold sentence needs words")
    weight: dict[str, float] = defaultdict(float)
    for words in golds:
        for word in words:
            weight[word] += 1.0 / len(words)
    answers = sorted({t.answer for t in targets})
    # fsum: exactly rounded, so the floor does not depend on the (hash-seeded) order of a set's words
    totals = [math.fsum(weight[w] for w in set(a.strip().lower().split())) for a in answers]
    best = max(range(len(answers)), key=lambda k: (totals[k], -k))
    return Floor(100.0 * totals[best] / len(golds), answers[best], len(golds))


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
