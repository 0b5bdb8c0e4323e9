"""QA requests and pairs: the two instructions, the messages sent, the rejection checks.

Every generation goes through ``validate_generation``; ``QAGenerator`` is what a generator provides.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from val_probing.errors import ValProbingError
from val_probing.in2.segment import Segment

QAKind = Literal["fine_grained", "integration"]

FINE_GRAINED_INSTRUCTION = """\
Below is one segment taken from a longer text. Write ONE question and its answer about this segment.
Requirements:
- The question must be highly specific to this segment: it asks about a detail stated in the segment, \
one that general knowledge or another text would not answer.
- The question is self-contained (do not say "the segment" or "the text") and ends with a question mark.
- The answer is correct according to the segment and written in your own words; do not copy the segment.
Reply with a JSON object and nothing else: {{"question": "...", "answer": "..."}}

### Segment:
{segment}"""

INTEGRATION_INSTRUCTION = """\
Below are {n} numbered segments taken from texts. Write ONE question and its answer such that answering \
requires integrating or reasoning over information from AT LEAST TWO of the segments; a question that one \
segment alone answers is not acceptable.
Requirements:
- The question is self-contained (do not mention segment numbers) and ends with a question mark.
- The answer is correct according to the segments and written in your own words; do not copy them.
Reply with a JSON object and nothing else: {{"question": "...", "answer": "..."}}

{segments}"""


QA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
    "required": ["question", "answer"],
    "additionalProperties": False,
}


class GenerationError(ValProbingError):
    """The endpoint failed for good (bad URL, auth, model name, or retries exhausted)."""


class Rejected(ValueError):
    """A generation that does not pass the checks; ``reason`` is the counter key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class QAPair:
    question: str
    answer: str

    def __post_init__(self) -> None:
        if not self.question.strip() or not self.answer.strip():
            raise ValueError("question and answer must be non-empty")


@dataclass(frozen=True, slots=True)
class QARequest:
    """Segments to ask about; ``request_id`` is stable across runs (it names the segments)."""

    kind: QAKind
    segments: tuple[Segment, ...]

    def __post_init__(self) -> None:
        if self.kind == "fine_grained" and len(self.segments) != 1:
            raise ValueError(f"fine_grained requests take one segment, got {len(self.segments)}")
        if self.kind == "integration" and len(self.segments) < 2:
            raise ValueError(f"integration requests take at least two segments, got {len(self.segments)}")

    @property
    def request_id(self) -> str:
        return f"{self.kind}:" + "|".join(f"{s.text_id}#{s.index}" for s in self.segments)


def build_messages(request: QARequest) -> list[dict[str, str]]:
    """The chat messages sent for ``request`` (one user turn)."""
    if request.kind == "fine_grained":
        content = FINE_GRAINED_INSTRUCTION.format(segment=request.segments[0].text)
    else:
        blocks = "\n\n".join(f"### Segment {i}:\n{s.text}" for i, s in enumerate(request.segments, start=1))
        content = INTEGRATION_INSTRUCTION.format(n=len(request.segments), segments=blocks)
    return [{"role": "user", "content": content}]


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
_NON_WORD = re.compile(r"\W+")


def _normalise(text: str) -> str:
    return _NON_WORD.sub(" ", text.lower()).strip()


def _parse_json_object(raw: str) -> Any:
    text = raw.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        start, end = text.find("{"), text.rfind("}")
        if start < 0 or end <= start:
            raise Rejected("unparsable", raw[:80]) from None
        try:
            return json.loads(text[start : end + 1])
        except json.JSONDecodeError:
            raise Rejected("unparsable", raw[:80]) from None


def validate_generation(raw: str | None, segments: Sequence[Segment]) -> QAPair:
    """Parse and check one generation; raise ``Rejected`` with the reason when it is not usable."""
    if raw is None or not raw.strip():
        raise Rejected("empty_response")
    obj = _parse_json_object(raw)
    if not isinstance(obj, dict):
        raise Rejected("not_an_object", type(obj).__name__)
    question, answer = obj.get("question"), obj.get("answer")
    if not isinstance(question, str) or not isinstance(answer, str):
        raise Rejected("missing_field", ", ".join(sorted(obj)))
    question, answer = question.strip(), answer.strip()
    if not question or not answer:
        raise Rejected("empty_field")
    if not question.endswith("?"):
        raise Rejected("no_question_mark", question[-40:])
    norm_answer = _normalise(answer)
    for seg in segments:
        norm_seg = _normalise(seg.text)
        if norm_seg and norm_seg in norm_answer:
            raise Rejected("answer_copies_segment", f"{seg.text_id}#{seg.index}")
    if _normalise(question) == norm_answer:
        raise Rejected("answer_repeats_question")
    return QAPair(question, answer)


@dataclass
class GenerationResult:
    """Accepted pairs by request index, rejection counts by reason, and request accounting."""

    pairs: dict[int, QAPair] = field(default_factory=dict)
    rejections: Counter[str] = field(default_factory=Counter)
    sent: int = 0  # HTTP requests answered by the endpoint (0 for local generators)
    cached: int = 0  # generations read from the cache instead of asked again
    gave_up: int = 0  # requests with no accepted generation after every attempt


class QAGenerator(Protocol):
    def describe(self) -> dict[str, Any]:
        """What generated the data, for the manifest."""
        ...

    def generate(self, requests: Sequence[QARequest]) -> GenerationResult: ...
