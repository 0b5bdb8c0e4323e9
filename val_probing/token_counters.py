"""Token counters: the one way the package measures text length.

Probe building needs two things from a tokenizer: the length of a piece of text, and the token index
at which a character offset falls in a long text (to record where the needle starts). ``TokenCounter``
is that small interface; ``WhitespaceCounter`` implements it without any model files (unit tests), and
``HFTokenCounter`` wraps any Hugging Face tokenizer (fast tokenizers give offsets in one pass).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from val_probing.errors import ValProbingError

if TYPE_CHECKING:  # transformers is heavy: imported only when a real tokenizer is asked for
    from transformers import PreTrainedTokenizerBase


class TokenizerNotFound(ValProbingError):
    """The tokenizer could not be loaded: unknown name, missing folder, or the hub is unreachable."""


@runtime_checkable
class TokenCounter(Protocol):
    name: str

    def count(self, text: str) -> int:
        """Number of tokens in ``text`` (no special tokens)."""
        ...

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        """``[count(t) for t in texts]``, batched where the backend can."""
        ...

    def token_starts(self, text: str) -> list[int]:
        """Character offset at which each token of ``text`` starts, ascending."""
        ...


def token_index_at(counter: TokenCounter, text: str, char_offsets: Sequence[int]) -> list[int]:
    """For each character offset, the number of tokens of ``text`` that start before it.

    One tokenization of ``text`` serves every offset, so a context is tokenized once per set.
    """
    starts = counter.token_starts(text)
    return [bisect.bisect_left(starts, offset) for offset in char_offsets]


_WORD = re.compile(r"\S+")


class WhitespaceCounter:
    """Counts whitespace-separated words. Deterministic and dependency-free, for tests."""

    name = "whitespace"

    def count(self, text: str) -> int:
        return len(text.split())

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) for t in texts]

    def token_starts(self, text: str) -> list[int]:
        return [m.start() for m in _WORD.finditer(text)]


class HFTokenCounter:
    """Any Hugging Face tokenizer, by hub name or local folder."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, name: str) -> None:
        self.tokenizer = tokenizer
        self.name = name

    @classmethod
    def load(cls, name_or_path: str) -> HFTokenCounter:
        from transformers import AutoTokenizer  # heavy import, only when a real tokenizer is asked for

        try:
            tok = AutoTokenizer.from_pretrained(name_or_path)
        except (OSError, ValueError) as err:
            where = "folder" if Path(name_or_path).exists() else "name"
            raise TokenizerNotFound(
                f"cannot load tokenizer {name_or_path!r} ({where}): {err}. "
                "Pass a local folder with tokenizer files, or a hub name when the hub is reachable "
                "(offline, set HF_HUB_OFFLINE=1 and use a name already in the Hugging Face cache)."
            ) from err
        return cls(tok, name_or_path)

    def count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        enc = self.tokenizer(list(texts), add_special_tokens=False)
        return [len(ids) for ids in enc["input_ids"]]

    def token_starts(self, text: str) -> list[int]:
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [start for start, _end in enc["offset_mapping"]]


def looks_like_path(name: str) -> bool:
    """Whether a tokenizer name can only be a local path: absolute, ``./``/``../``/``~``, a Windows
    drive, or more than one ``/`` (hub ids are ``NAME`` or ``ORG/NAME``)."""
    return (
        name.startswith(("/", "./", "../", "~", ".\\"))
        or name in (".", "..")
        or bool(re.match(r"^[A-Za-z]:[\\/]", name))
        or name.count("/") > 1
        or "\\" in name
    )


def check_tokenizer_path(name: str) -> None:
    """A clear error for a tokenizer given as a path that is not a folder (before transformers is
    asked, whose error would be about hub repo ids)."""
    path = Path(name).expanduser()
    if path.is_file():
        raise TokenizerNotFound(
            f"tokenizer {name!r}: {path} is a file; pass the folder that holds it (tokenizer.json, "
            "tokenizer_config.json, ...)"
        )
    if looks_like_path(name) and not path.exists():
        raise TokenizerNotFound(
            f"tokenizer {name!r}: the path {path} does not exist (pass a folder with tokenizer files, "
            "'embedded', 'whitespace' or a hub name like ORG/NAME)"
        )
