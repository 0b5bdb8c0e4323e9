"""``ExtractiveLocalGenerator``: NOT a language model; a deterministic, offline stand-in.

For tests and offline pipelines: it quotes sentences of the segments.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from val_probing.in2.qa.pairs import GenerationResult, QARequest, Rejected, validate_generation
from val_probing.in2.segment import Segment

PhraseFrom = Literal["anywhere", "start"]  # where in its sentence a quoted phrase may begin
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if len(s.split()) >= 6]


@dataclass(frozen=True)
class ExtractiveLocalGenerator:
    """Deterministic, offline QA from the segments' own sentences. Not a language model.

    Fine-grained: "Which sentence contains the phrase "<5 words>"?" -> that sentence. Integration: the same
    for one sentence of each of two segments. Output goes through ``validate_generation`` like any other.
    """

    seed: int = 0
    phrase_words: int = 5
    phrase_from: PhraseFrom = "anywhere"  # "start": the quoted phrase opens its sentence

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "extractive-local", "seed": self.seed}
        if (self.phrase_words, self.phrase_from) != (5, "anywhere"):  # the defaults: manifests as before
            out |= {"phrase_words": self.phrase_words, "phrase_from": self.phrase_from}
        return {**out, "note": "deterministic stand-in, not an LLM"}

    def _quote(self, segment: Segment, rng: random.Random) -> tuple[str, str] | None:
        sentences = _sentences(segment.text)
        if not sentences:
            return None
        sentence = rng.choice(sentences)
        words = sentence.split()
        start = (
            0 if self.phrase_from == "start" else rng.randrange(0, max(1, len(words) - self.phrase_words + 1))
        )
        return " ".join(words[start : start + self.phrase_words]), sentence

    def _raw(self, request: QARequest) -> str:
        rng = random.Random(f"{self.seed}:{request.request_id}")
        if request.kind == "fine_grained":
            quote = self._quote(request.segments[0], rng)
            if quote is None:
                return ""
            phrase, sentence = quote
            question = f'Which sentence of the context contains the phrase "{phrase}"?'
            return json.dumps({"question": question, "answer": sentence})
        first, second = rng.sample(list(request.segments), 2)
        q1, q2 = self._quote(first, rng), self._quote(second, rng)
        if q1 is None or q2 is None:
            return ""
        question = f'Which two sentences of the context contain the phrases "{q1[0]}" and "{q2[0]}"?'
        return json.dumps({"question": question, "answer": f"{q1[1]} {q2[1]}"})

    def generate(self, requests: Sequence[QARequest]) -> GenerationResult:
        result = GenerationResult()
        for i, request in enumerate(requests):
            try:
                result.pairs[i] = validate_generation(self._raw(request), request.segments)
            except Rejected as rej:
                result.rejections[rej.reason] += 1
                result.gave_up += 1
        return result
