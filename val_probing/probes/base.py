"""What the family modules share: the family names, checked fields of pool items, the rule that finds a
question's key, and the types of the scoring checks."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, get_args

from val_probing.errors import ValProbingError

Family = Literal["document", "code", "database"]
FAMILIES: tuple[Family, ...] = get_args(Family)
"""The family names, in table order (one module each: ``val_probing/probes/<family>.py``)."""


def text_field(obj: dict[str, Any], name: str) -> str:
    if name not in obj:
        raise ValueError(f"missing field {name!r}")
    value = obj[name]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"field {name!r} must be a non-empty string, got {value!r}")
    return value


def one_line(name: str, value: str) -> None:
    if "\n" in value or "\r" in value:
        raise ValueError(f"field {name!r} must be a single line")
    if value != value.strip():
        raise ValueError(f"field {name!r} has leading or trailing whitespace")


# --------------------------------------------------------------------------------------------------
# Finding the key a question asks about
#
# The rule does not depend on the exact wording: the key of a document or code question is its quoted
# span, the key of a database question the id after the word "id" (database.py). A loose cue (outside
# the key, any case) tells the three families apart, so a file of another family is refused rather
# than scored as this one.

DOUBLE_QUOTES = '"\u201c\u201d\u201e\u201f\u00ab\u00bb\u2033'  # " “ ” „ ‟ « » ″
KEY_EDGE = "\"'`\u2018\u2019\u201c\u201d?.!;:)("
_UNQUOTED_KEY = re.compile(
    r"(?:piece|snip(?:pet)?|code|line|phrase)\s*(?:is|of)?\s*[:=\-]?\s*(?P<key>\S.*?)\s*[?.!]*\s*$",
    re.IGNORECASE | re.DOTALL,
)


def _quoted_spans(text: str) -> list[str]:
    """Spans between two double quotes of ``text``, longest first (first-to-last quote comes first, so a
    key with quotes inside it is kept whole)."""
    marks = [i for i, ch in enumerate(text) if ch in DOUBLE_QUOTES]
    spans = [text[a + 1 : b] for k, a in enumerate(marks) for b in marks[k + 1 :]]
    return sorted((span for span in spans if span.strip()), key=len, reverse=True)


def text_key_candidates(instruction: str) -> list[str]:
    """Keys a document or code question may quote, most likely first."""
    spans = _quoted_spans(instruction)
    if not spans:  # no quotes: what follows "piece" / "code" / "line" ..., up to the closing punctuation
        match = _UNQUOTED_KEY.search(instruction)
        spans = [match.group("key")] if match else []
    out: list[str] = []
    for span in spans:
        for candidate in (span.strip(), span, span.strip().strip(KEY_EDGE).strip()):
            if candidate and candidate not in out:
                out.append(candidate)
    return out


def find_key(
    family: str,
    instruction: str,
    context: str | None,
    *,
    candidates: Callable[[str], list[str]],
    cue: re.Pattern[str],
    marker: Callable[[str], str],
    what: str,
) -> str:
    """The first of ``candidates(instruction)`` whose ``marker`` occurs in ``context`` (else the first);
    ValueError naming the instruction when there is none or the family's ``cue`` is missing."""
    text = instruction.strip()
    found = candidates(text)
    outside = text.replace(found[0], " ") if found else text  # the cue is looked for around the key
    if not found or not cue.search(outside):
        raise ValueError(f"is not a {family} question with {what}: {instruction[:200]!r}")
    if context is not None:
        for candidate in found:
            if context.count(marker(candidate)):
                return candidate
    return found[0]  # not in the context: the needle check and the skip rules deal with the row


def as_written(key: str) -> str:
    """The ``key_marker`` of a family whose key appears in the context as written (document, code)."""
    return key


def find_quoted_key(family: str, instruction: str, context: str | None, cue: re.Pattern[str]) -> str:
    """:func:`find_key` for a family whose question quotes its key (document, code)."""
    return find_key(
        family,
        instruction,
        context,
        candidates=text_key_candidates,
        cue=cue,
        marker=as_written,
        what="a quoted piece",
    )


# --------------------------------------------------------------------------------------------------
# Scoring: each family's checks are small pure functions of (model output, Target), as inspect_ai's


class MetricError(ValProbingError, ValueError):
    """A gold answer that cannot be scored (e.g. no words in it)."""


@dataclass(frozen=True, slots=True)
class Target:
    """The gold of one question: the answer, and the entity description (database only)."""

    answer: str
    description: str | None = None


Check: TypeAlias = Callable[[str | None, Target], float]
"""A per-sample score in [0, 1] of one model output (None: no output) against the gold."""


# --------------------------------------------------------------------------------------------------
# The constant-answer floor: what one answer, given to every question of a set, scores


@dataclass(frozen=True, slots=True)
class Floor:
    """The best constant answer of a probe set (of the family's kind, see its ``constant_floor``)
    and its reference score over the set: the mean per-question score, x100 (with equal buckets,
    the ``avg`` that answer would get)."""

    score: float
    answer: str
    questions: int

    @property
    def elsewhere(self) -> float:
        """The answer's score on the other questions (x100): the answer is one of the set's golds, so it
        answers its own question fully; with n questions that alone gives 100/n."""
        if self.questions < 2:
            return 0.0
        return max(0.0, (self.score * self.questions - 100.0) / (self.questions - 1))

    def to_dict(self) -> dict[str, float | str]:
        """What results and cache entries record (the question count is theirs already)."""
        return {"score": self.score, "answer": self.answer}


def best_substring_answer(golds: Sequence[Sequence[str]]) -> Floor:
    """The gold string that, as the answer to every question, scores best when a question is right
    as soon as one of its ``golds`` is a substring of the answer (the code and database metrics).

    Exact over the distinct gold strings, and cheap: the candidates holding a gold are found through
    an index of trigrams (a gold of three or more characters lies only in candidates holding its
    rarest trigram; shorter golds are tried against every candidate), then each is confirmed with
    ``in``.
    """
    candidates = sorted({g for row in golds for g in row})
    if not candidates:
        raise MetricError("no gold answers to compute the constant-answer floor from")
    rows_of: dict[str, set[int]] = defaultdict(set)
    for i, row in enumerate(golds):
        for gold in row:
            rows_of[gold].add(i)
    trigrams: dict[str, set[int]] = defaultdict(set)
    for k, candidate in enumerate(candidates):
        for j in range(len(candidate) - 2):
            trigrams[candidate[j : j + 3]].add(k)
    everyone = set(range(len(candidates)))
    contained: list[list[str]] = [[] for _ in candidates]  # the golds inside each candidate
    for gold in rows_of:
        if len(gold) < 3:
            maybe: set[int] = everyone
        else:
            maybe = min((trigrams[gold[j : j + 3]] for j in range(len(gold) - 2)), key=len)
        for k in maybe:
            if gold in candidates[k]:
                contained[k].append(gold)
    # A candidate credits the union of its golds' rows, at most the sum of their sizes: exact unions
    # are taken in decreasing order of that bound, until the bound cannot beat the best union.
    bound = [sum(len(rows_of[g]) for g in found) for found in contained]
    best, best_rows = 0, -1
    for k in sorted(range(len(candidates)), key=lambda k: (-bound[k], k)):
        if bound[k] <= best_rows:
            break
        rows = len(set().union(*(rows_of[g] for g in contained[k])))
        if rows > best_rows:
            best, best_rows = k, rows
    return Floor(100.0 * best_rows / len(golds), candidates[best], len(golds))
