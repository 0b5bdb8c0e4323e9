"""The length guard: refuse a prompt that, as the backend receives it, does not fit the model.

lm-eval itself would cut a prompt longer than the model's limit from the left, with only a
warning (and the needles with it); :func:`check_prompts_fit` raises :class:`PromptTooLong` instead.
The limit is the one lm-eval uses (:func:`model_limit`); prompts are counted as the backend counts
them, the chat template included (:func:`backend_text`).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm
from transformers import AutoConfig, AutoTokenizer

from val_probing.adapter.options import TaskSetupError, as_int
from val_probing.adapter.served import Server, served_window, server_counts
from val_probing.errors import ValProbingError
from val_probing.tokenizer_names import load_counter

log = logging.getLogger(__name__)

# lm-eval's own default max_length for API backends (local-completions, local-chat-completions).
API_DEFAULT_MAX_LENGTH = 2048
# HFLM's fallback when neither the model config nor the tokenizer names a length.
HF_DEFAULT_MAX_LENGTH = 2048
_SEQLEN_CONFIG_ATTRS = ("n_positions", "max_position_embeddings", "n_ctx")
_API_DEFAULT_SOURCE = "lm-eval's default max_length for API models"


class PromptTooLong(ValProbingError):
    """A prompt plus the generation budget does not fit the model's context window."""


@dataclass(frozen=True, slots=True)
class ModelLimit:
    tokens: int
    source: str  # where the number came from, for the error message


def model_limit(meta: Mapping[str, Any]) -> ModelLimit | None:
    """The backend's maximum sequence length, as lm-eval will use it, from the merged metadata.

    ``max_length`` (hf, vllm, local-completions) or ``max_model_len`` (vllm) when given; else lm-eval's
    2048 for API backends (``base_url``); else the model config's length (HFLM and vLLM read the same
    fields); None when nothing names a model (e.g. ``--model dummy``).
    """
    for key in ("max_length", "max_model_len"):
        if meta.get(key) not in (None, ""):
            return ModelLimit(as_int(key, meta[key], 1), f"model_args {key}")
    if meta.get("base_url"):
        return ModelLimit(API_DEFAULT_MAX_LENGTH, _API_DEFAULT_SOURCE)
    pretrained = meta.get("pretrained")
    if not pretrained:
        return None
    return _config_limit(str(pretrained))


@functools.cache
def _config_limit(pretrained: str) -> ModelLimit:
    try:
        config = AutoConfig.from_pretrained(pretrained)
    except (OSError, ValueError) as err:
        raise TaskSetupError(
            f"cannot read the config of {pretrained!r} to check prompt lengths: {err}"
        ) from err
    text_config = getattr(config, "text_config", None) or config
    for attr in _SEQLEN_CONFIG_ATTRS:
        value = getattr(text_config, attr, None)
        if isinstance(value, int):
            return ModelLimit(value, f"{pretrained} config {attr}")
    tok = AutoTokenizer.from_pretrained(pretrained)
    if tok.model_max_length < 10**9:
        return ModelLimit(int(tok.model_max_length), f"{pretrained} tokenizer model_max_length")
    return ModelLimit(HF_DEFAULT_MAX_LENGTH, "HFLM's default max_length")


@functools.cache
def hf_tokenizer(name: str) -> Any:
    counter = load_counter(name)
    tokenizer = getattr(counter, "tokenizer", None)
    if tokenizer is None:
        raise TaskSetupError(f"tokenizer {name!r} cannot count model tokens (use an HF tokenizer)")
    return tokenizer


def chat_messages(prompt: object) -> list[dict[str, Any]] | None:
    """The message list of a chat prompt, else None.

    lm-eval hands chat APIs (``local-chat-completions``, ``openai-chat-completions``) a ``JsonChatStr``
    (a NamedTuple whose ``prompt`` is the JSON of the messages), a ``remote``-tokenizer backend a
    plain list of messages; every other backend gets the rendered text (a ``str``).
    """
    value = getattr(prompt, "prompt", prompt)
    if isinstance(value, str) and value.startswith("[{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    if isinstance(value, list) and all(isinstance(m, dict) and "content" in m for m in value):
        return value
    return None


def backend_text(tokenizer: Any, prompt: object) -> str:
    """The text the backend tokenizes: a chat prompt rendered with the tokenizer's chat template."""
    messages = chat_messages(prompt)
    if messages is None:
        return prompt if isinstance(prompt, str) else str(getattr(prompt, "prompt", prompt))
    if getattr(tokenizer, "chat_template", None):
        return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    return "\n".join(str(m.get("content", "")) for m in messages)


def longest_prompt(tokenizer: Any, prompts: Sequence[object]) -> tuple[int, int]:
    """(index, token count) of the longest prompt, counted as the backend counts (special tokens on)."""
    i, counts = _exact_counts(tokenizer, [backend_text(tokenizer, p) for p in prompts])
    return i, counts[i]


# Prompts of one context share all but their last lines: their shared prefix is tokenized once and
# only the rest of each prompt is, which is exact up to a few tokens at the cut (a line break).
_SHARED_PREFIX_MIN_CHARS = 4000
_APPROX_MARGIN = 32  # tokens; far above the error of cutting at a line break


def approx_lengths(tokenizer: Any, prompts: Sequence[object], groups: Sequence[Any]) -> list[int]:
    """Token counts of ``prompts`` (backend view), counting each group's shared prefix once.

    Exact for groups whose shared prefix is short; otherwise within a few tokens (see
    :func:`check_prompts_fit`, which re-counts exactly wherever the decision depends on it).
    """
    texts = [backend_text(tokenizer, p) for p in prompts]
    by_group: dict[Any, list[int]] = {}
    for i, group in enumerate(groups):
        by_group.setdefault(group, []).append(i)
    out = [0] * len(texts)
    for members in by_group.values():
        texts_of = [texts[i] for i in members]
        shared = os.path.commonprefix(texts_of) if len(members) > 1 else ""  # noqa: RUF071 (text, not paths)
        cut = shared.rfind("\n") + 1
        if cut < _SHARED_PREFIX_MIN_CHARS:
            _i, counts = _exact_counts(tokenizer, [texts[i] for i in members])
            for i, n in zip(members, counts, strict=True):
                out[i] = n
            continue
        head = len(tokenizer(texts[members[0]][:cut], add_special_tokens=True)["input_ids"])
        tails = tokenizer([texts[i][cut:] for i in members], add_special_tokens=False)["input_ids"]
        for i, ids in zip(members, tails, strict=True):
            out[i] = head + len(ids)
    return out


def _exact_counts(tokenizer: Any, texts: Sequence[str], batch: int = 32) -> tuple[int, list[int]]:
    counts: list[int] = []
    for start in tqdm(range(0, len(texts), batch), desc="counting prompt tokens", leave=False):
        counts += [len(ids) for ids in tokenizer(list(texts[start : start + batch]))["input_ids"]]
    return max(range(len(counts)), key=counts.__getitem__), counts


def check_prompts_fit(
    task: str,
    prompts: Sequence[object],
    tokenizer: Any,
    limit: ModelLimit,
    max_gen_toks: int,
    groups: Sequence[Any] | None = None,
    *,
    server: Server | None = None,
    truncation: str = "left",
) -> int:
    """Raise :class:`PromptTooLong` unless every prompt plus ``max_gen_toks`` fits; the longest length.

    ``groups`` (e.g. the context of each prompt) lets prompts sharing a context be counted from one
    tokenization of that context. Counts are exact wherever the outcome depends on them: when the
    estimate is within a margin of the limit, the prompts near the longest are tokenized in full.
    Chat prompts sent to a ``server`` that counts tokens (vLLM's ``/tokenize``) are counted by the
    server, which renders its own chat template: the longest few by the local estimate, always.
    ``truncation`` is the side lm-eval would cut (its ``truncation_side`` model argument), named in
    the refusal.
    """
    if not prompts:
        return 0
    approx = approx_lengths(tokenizer, prompts, groups if groups is not None else range(len(prompts)))
    top = max(approx)
    chat = server is not None and chat_messages(prompts[0]) is not None
    if not chat and top + _APPROX_MARGIN + max_gen_toks <= limit.tokens:
        return top
    near = [i for i, n in enumerate(approx) if n >= top - 2 * _APPROX_MARGIN]
    exact: list[int] | None = None
    if chat and server is not None:
        exact = server_counts(server, [chat_messages(prompts[i]) or [] for i in near])
        if exact is None:
            log.info("%s: the server has no /tokenize; prompts counted with the local chat template", task)
    if exact is None:
        _j, exact = _exact_counts(tokenizer, [backend_text(tokenizer, prompts[i]) for i in near])
    longest = max(exact)
    if longest + max_gen_toks > limit.tokens:
        raise PromptTooLong(
            f"{task}: the longest prompt has {longest} tokens; with max_gen_toks={max_gen_toks} it needs "
            f"{longest + max_gen_toks} but the model's limit is {limit.tokens} ({limit.source}). lm-eval "
            f"would cut the prompt (truncation_side={truncation}: the needles with it). Lower "
            "context_length, or raise max_length / max_model_len if the model supports it."
        )
    return longest


def served_limit(meta: Mapping[str, Any], limit: ModelLimit | None) -> ModelLimit | None:
    """``limit``, lowered to the window the server reports (``/v1/models``) when that is smaller.

    A chat endpoint is not truncated by lm-eval (it sends text, not tokens), so there the served
    window replaces lm-eval's 2048-token default for API models.
    """
    server = Server.of(meta)
    window = served_window(server) if server is not None else None
    if window is None or server is None:
        return limit
    served = ModelLimit(window, f"the server's max_model_len at {server.root}/v1/models")
    if limit is None or window < limit.tokens:
        return served
    if server.chat and limit.source == _API_DEFAULT_SOURCE:
        return served
    return limit
