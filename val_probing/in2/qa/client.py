"""``OpenAIChatGenerator``: QA pairs from any OpenAI-compatible chat endpoint.

Bounded concurrency, tenacity retries (exponential backoff with jitter, at least the server's
``Retry-After``) and the request cache.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from val_probing.errors import ValProbingError
from val_probing.in2.qa.cache import RequestCache, request_key
from val_probing.in2.qa.pairs import (
    QA_SCHEMA,
    GenerationError,
    GenerationResult,
    QAPair,
    QARequest,
    Rejected,
    build_messages,
    validate_generation,
)

if TYPE_CHECKING:  # tenacity and httpx come with the [train] extra: imported where used, so the
    from tenacity import RetryCallState  # CLI and the local generator work without them

log = logging.getLogger(__name__)


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
        from tenacity import wait_exponential, wait_random

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
        from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

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
