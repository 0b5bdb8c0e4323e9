"""Question-answer generation for IN2 training: the two instructions, the generators, and their checks.

Two kinds of request (arXiv 2404.16811, Section 2 and Appendix D, paraphrased here):

* ``fine_grained``: one 128-token segment; a question highly specific to that segment, answered in the
  generator's own words.
* ``integration``: several segments; a question that needs information from at least two of them.

Every generation is asked for as JSON ``{"question": ..., "answer": ...}`` and checked by
``validate_generation``; malformed generations are rejected (counted by reason) and asked again.

Generators:

* ``OpenAIChatGenerator``: any OpenAI-compatible ``/v1/chat/completions`` endpoint (``vllm serve MODEL``,
  or a hosted API), with bounded concurrency, retries (tenacity: exponential backoff with jitter, at
  least the server's ``Retry-After`` in seconds or as an HTTP-date) on transport errors, 429 and 5xx,
  and a resumable on-disk cache keyed on a hash of (endpoint, model, messages, parameters), so a re-run
  skips requests already answered and partial work survives a crash or an error. Rejected generations
  are cached with their reason but never served: a re-run asks for them again.
* ``ExtractiveLocalGenerator``: NOT a language model. A deterministic stand-in for tests and offline
  pipelines that quotes sentences of the segments; its data teaches retrieval, not the paper's QA.
"""

from val_probing.in2.qa.cache import CacheEntry, RequestCache, request_key
from val_probing.in2.qa.client import OpenAIChatGenerator, parse_retry_after
from val_probing.in2.qa.local import ExtractiveLocalGenerator
from val_probing.in2.qa.pairs import (
    FINE_GRAINED_INSTRUCTION,
    INTEGRATION_INSTRUCTION,
    QA_SCHEMA,
    GenerationError,
    GenerationResult,
    QAGenerator,
    QAKind,
    QAPair,
    QARequest,
    Rejected,
    build_messages,
    validate_generation,
)

__all__ = [
    "FINE_GRAINED_INSTRUCTION",
    "INTEGRATION_INSTRUCTION",
    "QA_SCHEMA",
    "CacheEntry",
    "ExtractiveLocalGenerator",
    "GenerationError",
    "GenerationResult",
    "OpenAIChatGenerator",
    "QAGenerator",
    "QAKind",
    "QAPair",
    "QARequest",
    "Rejected",
    "RequestCache",
    "build_messages",
    "parse_retry_after",
    "request_key",
    "validate_generation",
]
