"""What a running server says about itself: its served window and its own token counts.

lm-eval's API backends (``local-completions``, ``local-chat-completions``, ...) name the server by
``base_url``. A ``vllm serve`` started with a smaller ``--max-model-len`` than the model's config
rejects a longer prompt only once the run has started (after lm-eval's retries); a chat endpoint
renders the chat template itself, so only the server knows the exact prompt length. vLLM answers
both questions: ``GET /v1/models`` lists ``max_model_len`` per model, ``POST /tokenize`` counts a
prompt or a message list with the server's own template. Servers that do not (OpenAI, gateways)
are simply not asked twice: every call here returns None on any failure.
"""

from __future__ import annotations

import functools
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from val_probing.typed import is_int

log = logging.getLogger(__name__)

_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Server:
    """The server root of an API backend (``http://host:port``) and the model it serves."""

    root: str
    model: str | None
    chat: bool  # base_url names /chat/completions: the server renders the chat template

    @classmethod
    def of(cls, meta: Mapping[str, Any]) -> Server | None:
        """The server of the merged metadata's ``base_url``; None for in-process backends."""
        base_url = str(meta.get("base_url") or "")
        if not base_url.startswith(("http://", "https://")):
            return None
        root = base_url.split("/v1", 1)[0].rstrip("/")
        model = meta.get("model") or meta.get("pretrained")
        return cls(root, str(model) if model else None, "chat/completions" in base_url)


def _request(url: str, body: Mapping[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=_TIMEOUT_S) as resp:
            return json.loads(resp.read())
    except (OSError, urllib.error.URLError, ValueError) as err:
        log.debug("%s: %s", url, err)
        return None


@functools.cache
def served_window(server: Server) -> int | None:
    """The served model's ``max_model_len`` from ``/v1/models`` (vLLM), else None."""
    listing = _request(f"{server.root}/v1/models")
    entries = listing.get("data") if isinstance(listing, dict) else None
    if not isinstance(entries, list):
        return None
    named = [e for e in entries if isinstance(e, dict) and e.get("id") == server.model]
    for entry in named or [e for e in entries if isinstance(e, dict)][:1]:
        value = entry.get("max_model_len")
        if is_int(value) and value > 0:
            return value
    return None


def server_counts(server: Server, prompts: Sequence[str | list[dict[str, Any]]]) -> list[int] | None:
    """Each prompt's token count as the server tokenizes it (``/tokenize``), or None when it cannot."""
    counts = []
    for prompt in prompts:
        body: dict[str, Any] = {"model": server.model} if server.model else {}
        if isinstance(prompt, list):
            body |= {"messages": prompt, "add_generation_prompt": True}
        else:
            body |= {"prompt": prompt}
        reply = _request(f"{server.root}/tokenize", body)
        count = reply.get("count") if isinstance(reply, dict) else None
        if not is_int(count):
            return None
        counts.append(count)
    return counts
