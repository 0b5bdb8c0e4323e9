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

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from val_probing.errors import ValProbingError
from val_probing.in2.segment import Segment
from val_probing.outputs import writing
from val_probing.records import write_jsonl

log = logging.getLogger(__name__)

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


# --------------------------------------------------------------------------------------------------------
# Offline, deterministic stand-in
# --------------------------------------------------------------------------------------------------------

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

    def describe(self) -> dict[str, Any]:
        return {"kind": "extractive-local", "seed": self.seed, "note": "deterministic stand-in, not an LLM"}

    def _quote(self, segment: Segment, rng: random.Random) -> tuple[str, str] | None:
        sentences = _sentences(segment.text)
        if not sentences:
            return None
        sentence = rng.choice(sentences)
        words = sentence.split()
        start = rng.randrange(0, max(1, len(words) - self.phrase_words + 1))
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


# --------------------------------------------------------------------------------------------------------
# OpenAI-compatible endpoint
# --------------------------------------------------------------------------------------------------------


def request_key(endpoint: str, model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> str:
    """sha256 of the request: what the cache is keyed on. Everything that changes the answer is in it:
    the endpoint (without a trailing slash), the model, the messages and the sampling parameters (with
    the attempt number, which sets the seed)."""
    payload = json.dumps(
        {"endpoint": endpoint.rstrip("/"), "model": model, "messages": messages, "params": params},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _entry_check(key: str, content: str, rejected: str | None) -> str:
    return hashlib.sha256(json.dumps([key, content, rejected]).encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One generation as the endpoint returned it; ``rejected`` is the reason it failed the checks."""

    content: str
    rejected: str | None = None


class RequestCache:
    """Append-only JSONL of ``{"key", "content", "rejected", "check"}``; each generation is flushed as it
    arrives, so a crash or an error keeps every finished request and a re-run asks only for the rest.

    Every line carries a check (a hash of its key, content and verdict) verified on load: a line that
    fails it (cut by a crash, edited, an older format) is dropped with one warning naming the file, and
    its request is asked again. Rejected generations are kept, so the counts stay auditable, but
    :meth:`get` serves accepted ones only: a junk answer is never given to a later run.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._entries: dict[str, CacheEntry] = {}
        if self.path.is_file():
            self._load()

    def _load(self) -> None:
        try:
            data = self.path.read_bytes()
        except OSError as err:
            raise ValProbingError(f"{self.path}: cannot read the QA cache ({err.strerror or err})") from err
        dropped = 0
        for line in data.split(b"\n"):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                key, content, rejected = obj["key"], obj["content"], obj.get("rejected")
                if obj.get("check") != _entry_check(key, content, rejected):
                    raise ValueError("check")
                if not isinstance(content, str) or not (rejected is None or isinstance(rejected, str)):
                    raise ValueError("types")
            except (ValueError, KeyError, TypeError, AttributeError):  # JSONDecodeError is a ValueError
                dropped += 1
                continue
            self._entries[key] = CacheEntry(content, rejected)
        if dropped:
            log.warning(
                "%s: %d line(s) fail their check (cut by a crash, edited, or an older format): dropped, "
                "their requests are asked again",
                self.path,
                dropped,
            )
            self._rewrite()

    def _rewrite(self) -> None:
        """The file without the dropped lines, atomically (so later appends start on a clean file)."""
        write_jsonl(self.path, (self._line(key, entry) for key, entry in self._entries.items()))

    @staticmethod
    def _line(key: str, entry: CacheEntry) -> dict[str, Any]:
        return {
            "key": key,
            "content": entry.content,
            "rejected": entry.rejected,
            "check": _entry_check(key, entry.content, entry.rejected),
        }

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> str | None:
        """The accepted generation for ``key``, or None (none yet, or only a rejected one)."""
        with self._lock:
            entry = self._entries.get(key)
        return entry.content if entry is not None and entry.rejected is None else None

    def put(self, key: str, content: str, rejected: str | None = None) -> None:
        line = json.dumps(self._line(key, CacheEntry(content, rejected)), ensure_ascii=False)
        with self._lock, writing(self.path, "QA cache"):
            self._entries[key] = CacheEntry(content, rejected)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")
                handle.flush()


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP-date (RFC 9110 10.2.3);
    None when absent or unreadable. A date in the past means 0."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an obsolete date form without a zone: HTTP dates are in GMT
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


@dataclass
class OpenAIChatGenerator:
    """QA pairs from an OpenAI-compatible chat endpoint (``base_url`` like ``http://127.0.0.1:8000/v1``)."""

    base_url: str
    model: str
    cache: RequestCache
    api_key: str | None = None
    temperature: float = 0.7
    max_tokens: int = 512
    concurrency: int = 8
    max_retries: int = 5  # per HTTP request, on transport errors, 429 and 5xx
    attempts: int = 3  # generations asked per request before giving up on it (rejections)
    backoff_base: float = 1.0  # first delay; doubles per retry, plus up to backoff_base of jitter
    backoff_max: float = 60.0
    timeout: float = 300.0
    # ask the server to constrain the output to QA_SCHEMA (response_format; vLLM and OpenAI support it)
    structured: bool = False
    sleep: Callable[[float], None] = time.sleep
    show_progress: bool = True
    _client: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.max_retries < 0 or self.attempts < 1:
            raise ValProbingError("concurrency and attempts must be >= 1, max_retries >= 0")

    @property
    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        if self.structured:
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "qa", "schema": QA_SCHEMA},
            }
        return params

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "openai-compatible",
            "base_url": self.base_url,
            "model": self.model,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "structured": self.structured,
        }

    def _post(self, messages: list[dict[str, str]], attempt: int) -> str:
        import httpx

        url = self.base_url.rstrip("/") + "/chat/completions"
        body = {"model": self.model, "messages": messages, **self.params}
        if attempt:
            body["seed"] = attempt  # a re-ask after a rejection should not get the same sample back
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            resp = self._client.post(url, json=body, headers=headers)
        except httpx.TransportError as err:
            raise _Retryable(f"{type(err).__name__}: {err}") from err
        if resp.status_code == 429 or resp.status_code >= 500:
            raise _Retryable(f"HTTP {resp.status_code}", parse_retry_after(resp.headers.get("retry-after")))
        if resp.status_code != 200:
            raise GenerationError(
                f"{url}: HTTP {resp.status_code} for model {self.model!r}: {resp.text[:300]} "
                "(check --endpoint, --model and the API key)"
            )
        try:
            content = resp.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise _Retryable(f"malformed response body: {resp.text[:120]}") from err
        return content if isinstance(content, str) else ""

    def _wait(self, state: RetryCallState) -> float:
        """Exponential backoff with jitter; a server's ``Retry-After`` is waited at least (up to the cap)."""
        jittered = wait_exponential(multiplier=self.backoff_base, max=self.backoff_max) + wait_random(
            0, self.backoff_base
        )
        delay = min(self.backoff_max, jittered(state))
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, _Retryable) and error.retry_after is not None:
            delay = max(delay, min(self.backoff_max, error.retry_after))
        log.debug("retrying in %.2fs after %s", delay, error)
        return delay

    def _ask(self, messages: list[dict[str, str]], attempt: int) -> str:
        retrying = Retrying(
            retry=retry_if_exception_type(_Retryable),
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            sleep=self.sleep,
            reraise=True,
        )
        try:
            return retrying(self._post, messages, attempt)
        except _Retryable as err:
            kept = (
                f"; finished requests are kept in {self.cache.path}, re-run to resume"
                if self.cache.path.is_file()
                else "; no request was answered yet"
            )
            raise GenerationError(
                f"{self.base_url}: gave up after {self.max_retries + 1} tries ({err}){kept}"
            ) from err

    def _one(
        self, request: QARequest, result: GenerationResult, lock: threading.Lock, stop: threading.Event
    ) -> QAPair | None:
        """An accepted generation from the cache (any attempt), else ask attempt after attempt; every
        generation is cached with its verdict, rejected ones are never served."""
        messages = build_messages(request)
        keys = [
            request_key(self.base_url, self.model, messages, {**self.params, "attempt": attempt})
            for attempt in range(self.attempts)
        ]
        for key in keys:
            content = self.cache.get(key)
            if content is None:
                continue
            try:
                pair = validate_generation(content, request.segments)
            except Rejected:  # accepted by an earlier version of the checks: not served
                continue
            with lock:
                result.cached += 1
            return pair
        for attempt, key in enumerate(keys):
            if stop.is_set():  # another request failed for good: send nothing more
                return None
            try:
                content = self._ask(messages, attempt)
            except GenerationError:
                stop.set()
                raise
            with lock:
                result.sent += 1
            try:
                pair = validate_generation(content, request.segments)
            except Rejected as rej:
                self.cache.put(key, content, rejected=rej.reason)
                with lock:
                    result.rejections[rej.reason] += 1
                continue
            self.cache.put(key, content)
            return pair
        with lock:
            result.gave_up += 1
        return None

    def generate(self, requests: Sequence[QARequest]) -> GenerationResult:
        import httpx
        from tqdm.auto import tqdm

        result = GenerationResult()
        lock = threading.Lock()
        stop = threading.Event()
        owns_client = self._client is None
        if owns_client:
            self._client = httpx.Client(timeout=self.timeout)
        try:
            with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
                futures: dict[Future[QAPair | None], int] = {
                    pool.submit(self._one, req, result, lock, stop): i for i, req in enumerate(requests)
                }
                bar = tqdm(total=len(futures), desc="QA generation", disable=not self.show_progress)
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                    for fut in done:
                        failure = fut.exception()
                        if failure is not None:
                            stop.set()
                            for other in pending:
                                other.cancel()
                            wait(pending)  # in-flight requests finish and land in the cache
                            raise failure
                        pair = fut.result()
                        if pair is not None:
                            result.pairs[futures[fut]] = pair
                        bar.update(1)
                bar.close()
        finally:
            if owns_client:
                self._client.close()
                self._client = None
        return result
