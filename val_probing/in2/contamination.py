"""Keep evaluation text out of training data: drop raw texts that share a word 10-gram with any probe.

Words are lower-cased runs of letters and digits (punctuation and spacing do not matter). The probe side
is any iterable of ``ProbeExample``: probes built by this project (``records.read_probes`` on a probes
JSONL, or ``build.cached_probes``) or the official VaLProbing-32K data (``official.load_official``). Each
distinct context is indexed once, plus every instruction, answer and description.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from val_probing.errors import ValProbingError
from val_probing.in2.segment import RawText
from val_probing.records import ProbeExample

NGRAM = 10
_WORD = re.compile(r"[^\W_]+")


def normalise_words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngrams(words: Sequence[str], n: int = NGRAM) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


@dataclass(frozen=True)
class ProbeIndex:
    """The word n-grams of a set of probes."""

    grams: frozenset[tuple[str, ...]]
    n: int
    n_probes: int
    n_contexts: int

    @classmethod
    def build(cls, probes: Iterable[ProbeExample], n: int = NGRAM) -> ProbeIndex:
        if n < 1:
            raise ValProbingError(f"n-gram size: expected a positive int, got {n}")
        grams: set[tuple[str, ...]] = set()
        contexts: set[str] = set()
        n_probes = 0
        for probe in probes:
            n_probes += 1
            if probe.context not in contexts:
                contexts.add(probe.context)
                grams |= ngrams(normalise_words(probe.context), n)
            for text in (probe.instruction, probe.answer, probe.description or ""):
                grams |= ngrams(normalise_words(text), n)
        if n_probes == 0:
            raise ValProbingError("contamination filter: the probe set is empty (nothing to filter against)")
        return cls(frozenset(grams), n, n_probes, len(contexts))

    def hits(self, text: str) -> bool:
        words = normalise_words(text)
        return any(tuple(words[i : i + self.n]) in self.grams for i in range(len(words) - self.n + 1))


@dataclass(frozen=True)
class ContaminationReport:
    n_texts: int
    n_dropped: int
    dropped_ids: tuple[str, ...]
    n_probes: int
    n_probe_contexts: int
    n_probe_ngrams: int
    ngram: int

    def to_dict(self) -> dict[str, object]:
        return {
            "ngram": self.ngram,
            "texts_in": self.n_texts,
            "texts_dropped": self.n_dropped,
            "texts_kept": self.n_texts - self.n_dropped,
            "dropped_ids": list(self.dropped_ids),
            "probes": self.n_probes,
            "probe_contexts": self.n_probe_contexts,
            "probe_ngrams": self.n_probe_ngrams,
        }


def filter_texts(texts: Sequence[RawText], index: ProbeIndex) -> tuple[list[RawText], ContaminationReport]:
    """The texts that share no n-gram with the probes, and what was dropped."""
    kept: list[RawText] = []
    dropped: list[str] = []
    for raw in texts:
        if index.hits(raw.text):
            dropped.append(raw.text_id)
        else:
            kept.append(raw)
    report = ContaminationReport(
        n_texts=len(texts),
        n_dropped=len(dropped),
        dropped_ids=tuple(dropped),
        n_probes=index.n_probes,
        n_probe_contexts=index.n_contexts,
        n_probe_ngrams=len(index.grams),
        ngram=index.n,
    )
    return kept, report
