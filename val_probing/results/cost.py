"""What a run cost, per bucket and per run: questions, prompt tokens, the prompt tokens a prefix
cache can serve and those the backend says it served, generation tokens, seconds.

* ``prompt_tokens``: the context's tokens (``doc.context_tokens``, measured by the probes' own
  tokenizer) plus the instruction's; the chat template's few tokens are not counted.
* ``shared_prefix_tokens``: the context tokens a prefix cache *can* serve: each context is read
  once, every other question on it may reuse it (an upper bound of what caching saves).
* ``cached_tokens``: what the backend reported it served from its cache (a samples line's
  ``cached_tokens``); None when it reported nothing: lm-eval 0.4.13's backends drop vLLM's
  ``num_cached_tokens``, so for lm-eval runs it is None.
* ``generation_tokens``: the answers' tokens, by the same tokenizer.
* ``seconds``: lm-eval's ``total_evaluation_time_seconds`` of the whole results file (every task
  of the run together); None per bucket, where nothing measured it.

Token counts are None when the probes' tokenizer is unknown or cannot be loaded (logged).
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from val_probing.buckets import bucket_of
from val_probing.errors import ValProbingError
from val_probing.results.questions import Question
from val_probing.token_counters import TokenCounter
from val_probing.typed import is_number

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Cost:
    """The price of some questions (see the module docstring); None: not known."""

    questions: int
    prompt_tokens: int | None
    shared_prefix_tokens: int | None
    cached_tokens: int | None
    generation_tokens: int | None
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "questions": self.questions,
            "prompt_tokens": self.prompt_tokens,
            "shared_prefix_tokens": self.shared_prefix_tokens,
            "cached_tokens": self.cached_tokens,
            "generation_tokens": self.generation_tokens,
            "seconds": self.seconds,
        }


@functools.lru_cache(maxsize=4)
def _counter(name: str) -> TokenCounter | None:
    from val_probing.tokenizer_names import load_counter

    try:
        return load_counter(name)
    except (ValProbingError, OSError, ValueError) as err:
        log.warning("tokenizer %r cannot be loaded (%s): token counts unknown", name, err)
        return None


def _sum(values: Iterable[int | None]) -> int | None:
    total = 0
    for v in values:
        if v is None:
            return None
        total += v
    return total


def cost_of(
    questions: Sequence[Question], counter: TokenCounter | None, seconds: float | None = None
) -> Cost:
    """The cost of ``questions`` (one run's, or one bucket's) counted with ``counter``."""
    if counter is None:
        prompt: list[int | None] = [None] * len(questions)
        generated: list[int | None] = [None] * len(questions)
    else:
        instructions = counter.count_batch([q.instruction for q in questions]) if questions else []
        answers = counter.count_batch([q.answer for q in questions]) if questions else []
        prompt = [
            None if q.context_tokens is None else q.context_tokens + n
            for q, n in zip(questions, instructions, strict=True)
        ]
        generated = list(answers)
    seen: set[str] = set()
    shared: list[int | None] = []
    for q in questions:
        if q.context_id in seen:
            shared.append(q.context_tokens)
        seen.add(q.context_id)
    return Cost(
        questions=len(questions),
        prompt_tokens=_sum(prompt),
        shared_prefix_tokens=_sum(shared),
        cached_tokens=_sum(q.cached_tokens for q in questions) if questions else None,
        generation_tokens=_sum(generated),
        seconds=seconds,
    )


def bucket_costs(
    questions: Sequence[Question], n_buckets: int, *, seconds: float | None = None
) -> tuple[dict[int, Cost], Cost]:
    """Per bucket and for all ``questions`` of one run (one task, one length): their :class:`Cost`,
    counted with the probes' own tokenizer (``Question.tokenizer``)."""
    names = {q.tokenizer for q in questions}
    name = next(iter(names)) if len(names) == 1 else None
    counter = _counter(name) if name else None
    if len(names) > 1:
        log.warning(
            "questions measured by several tokenizers %s: token counts unknown", sorted(map(str, names))
        )
    by_bucket: dict[int, list[Question]] = {}
    for q in questions:
        by_bucket.setdefault(bucket_of(q.position_id, q.n_items, n_buckets), []).append(q)
    per = {b: cost_of(qs, counter) for b, qs in sorted(by_bucket.items())}
    return per, cost_of(questions, counter, seconds)


def run_seconds(data: Mapping[str, Any]) -> float | None:
    """lm-eval's ``total_evaluation_time_seconds`` of a results file (a text or a number)."""
    value = data.get("total_evaluation_time_seconds")
    if not (isinstance(value, str) or is_number(value)):
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
