"""Raw texts and 128-token segments (Algorithm 1 of arXiv 2404.16811).

A raw text is split at paragraph boundaries (blank lines; a text without blank lines is split at single
newlines). Paragraphs are accumulated into a segment until it holds at least ``min_tokens`` tokens; a
shorter tail that is left over at the end joins the last segment. A whole text shorter than one segment
gives no segment (the caller counts and reports such texts).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from val_probing.errors import ValProbingError
from val_probing.token_counters import TokenCounter

SEGMENT_TOKENS = 128
PARAGRAPH_JOIN = "\n"


@dataclass(frozen=True, slots=True)
class RawText:
    """One raw text of the training corpus; ``text_id`` names where it came from (file, or file:line)."""

    text_id: str
    text: str

    def __post_init__(self) -> None:
        if not self.text_id:
            raise ValueError("text_id: expected a non-empty string")
        if not isinstance(self.text, str):
            raise ValueError(f"text: expected a string, got {type(self.text).__name__}")


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of whole paragraphs of one raw text with at least ``SEGMENT_TOKENS`` tokens."""

    text_id: str
    index: int  # 0-based index of the segment within its text
    text: str
    n_tokens: int  # sum of the token counts of its paragraphs

    def __post_init__(self) -> None:
        if self.index < 0:
            raise ValueError(f"index: expected a non-negative int, got {self.index}")
        if not self.text.strip():
            raise ValueError("text: a segment is never empty")
        if self.n_tokens < 1:
            raise ValueError(f"n_tokens: expected a positive int, got {self.n_tokens}")

    @property
    def key(self) -> tuple[str, int]:
        return (self.text_id, self.index)


_BLANK_LINES = re.compile(r"\n\s*\n")


def split_paragraphs(text: str) -> list[str]:
    """Paragraphs separated by blank lines, or by single newlines when the text has no blank line."""
    parts = _BLANK_LINES.split(text) if _BLANK_LINES.search(text) else text.split("\n")
    return [p.strip() for p in parts if p.strip()]


def segment_text(raw: RawText, counter: TokenCounter, *, min_tokens: int = SEGMENT_TOKENS) -> list[Segment]:
    """Algorithm 1: accumulate paragraphs until a segment holds >= ``min_tokens`` tokens; a shorter tail
    joins the last segment; a text shorter than one segment gives none."""
    if min_tokens < 1:
        raise ValProbingError(f"min_tokens: expected a positive int, got {min_tokens}")
    paragraphs = split_paragraphs(raw.text)
    counts = counter.count_batch(paragraphs)
    groups: list[tuple[list[str], int]] = []
    current: list[str] = []
    current_tokens = 0
    for paragraph, n in zip(paragraphs, counts, strict=True):
        current.append(paragraph)
        current_tokens += n
        if current_tokens >= min_tokens:
            groups.append((current, current_tokens))
            current, current_tokens = [], 0
    if current and groups:  # the short tail joins the last segment
        last, last_tokens = groups[-1]
        groups[-1] = (last + current, last_tokens + current_tokens)
    return [
        Segment(raw.text_id, i, PARAGRAPH_JOIN.join(parts), n_tokens)
        for i, (parts, n_tokens) in enumerate(groups)
    ]


@dataclass(frozen=True, slots=True)
class Segmentation:
    """Segments of a corpus, plus the ids of texts too short to give one segment."""

    segments: tuple[Segment, ...]
    too_short: tuple[str, ...]

    def by_text(self) -> dict[str, list[Segment]]:
        out: dict[str, list[Segment]] = {}
        for seg in self.segments:
            out.setdefault(seg.text_id, []).append(seg)
        return out


def segment_corpus(
    texts: Sequence[RawText], counter: TokenCounter, *, min_tokens: int = SEGMENT_TOKENS
) -> Segmentation:
    """Segment every text; an empty corpus, or one with no text long enough, is an error."""
    if not texts:
        raise ValProbingError("the corpus is empty: no raw text was given")
    ids = [t.text_id for t in texts]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ValProbingError(f"duplicate text ids in the corpus: {', '.join(dup)}")
    segments: list[Segment] = []
    too_short: list[str] = []
    for raw in texts:
        found = segment_text(raw, counter, min_tokens=min_tokens)
        if found:
            segments.extend(found)
        else:
            too_short.append(raw.text_id)
    if not segments:
        raise ValProbingError(
            f"no text of the corpus holds one segment of {min_tokens} tokens "
            f"({len(texts)} text(s), all shorter; tokenizer {counter.name!r})"
        )
    return Segmentation(tuple(segments), tuple(too_short))
