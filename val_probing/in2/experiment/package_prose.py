"""The packages regime's corpus: the long descriptions (README prose) of the installed distributions.

Every install has them (the METADATA body of each ``*.dist-info``), and they are not the embedded probe
pools' sources (standard-library docstrings, generated code and tables).
"""

from __future__ import annotations

import importlib.metadata as md
import re


def installed_distributions() -> list[str]:
    return sorted({f"{d.metadata['Name']}=={d.version}" for d in md.distributions() if d.metadata["Name"]})


_FENCE = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1[ \t]*$", re.M | re.S)
_MARKUP = re.compile(r"^\s*(\.\. |:[a-z]+:|<|\[!\[|!\[|\|)")


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
PARAGRAPH_CHARS = 600  # longer paragraphs are cut at sentence ends: segments stay near 128 tokens


def _short_paragraphs(paragraph: str, limit: int = PARAGRAPH_CHARS) -> list[str]:
    """A paragraph as pieces of at most about ``limit`` characters, cut at sentence ends; a piece still
    over ``2 x limit`` (no sentence end: a table row, a list of links) is left out."""
    pieces: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(paragraph):
        if current and len(current) + 1 + len(sentence) > limit:
            pieces.append(current)
            current = ""
        current = f"{current} {sentence}" if current else sentence
    if current:
        pieces.append(current)
    return [p for p in pieces if len(p) <= 2 * limit]


def _prose(body: str) -> str:
    """A long description without code blocks, images, tables, directives or HTML lines, in paragraphs of
    at most about :data:`PARAGRAPH_CHARS` characters."""
    body = _FENCE.sub("", body)
    lines = [ln for ln in body.splitlines() if not _MARKUP.match(ln) and not ln.startswith("    ")]
    paragraphs = re.split(r"\n\s*\n", "\n".join(lines))
    flat = [" ".join(para.split()) for para in paragraphs if para.strip()]
    kept = [piece for para in flat for piece in _short_paragraphs(para)]
    return "\n\n".join(kept)


def package_texts(min_words: int, max_texts: int | None = None) -> list[tuple[str, str]]:
    """(id, text) of the long descriptions of the installed distributions, prose only, one per name.

    Every install has them (the METADATA body of each ``*.dist-info``: mostly README prose); they are
    not the embedded probe pools' sources (standard-library docstrings, generated code and tables).
    """
    seen: dict[str, tuple[str, str]] = {}
    for dist in md.distributions():
        name = dist.metadata["Name"]
        raw = dist.read_text("METADATA") or ""
        _headers, _sep, body = raw.partition("\n\n")
        text = _prose(body)
        if not name or len(text.split()) < min_words:
            continue
        key = re.sub(r"[-_.]+", "-", name).lower()
        seen.setdefault(key, (f"{key}=={dist.version}", text))
    texts = [seen[k] for k in sorted(seen)]
    return texts[:max_texts] if max_texts is not None else texts
