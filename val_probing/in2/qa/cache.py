"""The verified request cache of QA generations.

Every generation is appended to a JSONL file keyed on a hash of the request, each line carrying a check;
rejected generations are kept but never served.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from val_probing.errors import ValProbingError
from val_probing.files import write_jsonl, writing

log = logging.getLogger(__name__)


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
