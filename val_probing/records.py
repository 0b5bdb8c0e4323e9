"""The one typed record every stage passes around: a probe example that always carries its position.

Stages talk through JSONL files of these records (schema below, also in docs/schema.md):

    family               "document" | "code" | "database"
    set_id               which fixed context (0-based); every example of a set shares its context
    position_id          index of the needle among the context's items (0-based)
    n_items              number of items in the context (so depth = position_id / n_items)
    needle_token_offset  tokens of the context before the needle item (with `tokenizer`); None only for an
                         official row whose needle is not found once (official.read_official)
    context_tokens       tokens of the whole context (with `tokenizer`)
    tokenizer            the tokenizer name as given: an alias (tokenizer_names.py), a folder, a hub name
    context              the haystack text; identical for every example of a set
    instruction          the question, placed after the context
    key                  what the question asks about (sentence piece / code line / entity id)
    answer               gold: the sentence / the function name / the entity label
    description          gold entity description (database only, else None)
    source               "built" | "official"
    row                  0-based row index in the file it came from (official data: the authors' index)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal, get_args

from val_probing.files import RecordError, iter_jsonl, write_jsonl
from val_probing.probes import get_family
from val_probing.probes.base import FAMILIES, Family
from val_probing.typed import is_int

__all__ = ["FAMILIES", "Family", "ProbeExample", "Source", "read_probes", "write_probes"]

Source = Literal["built", "official"]


@dataclass(frozen=True, slots=True)
class ProbeExample:
    family: Family
    set_id: int
    position_id: int
    n_items: int
    needle_token_offset: int | None  # None: an official row whose needle is not found once
    context_tokens: int
    tokenizer: str
    context: str
    instruction: str
    key: str
    answer: str
    description: str | None = None
    source: Source = "built"
    row: int = 0

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family: {self.family!r} is not one of {FAMILIES}")
        located = self.needle_token_offset is not None or self.source != "official"
        for name in ("set_id", "position_id", "n_items", "needle_token_offset", "context_tokens", "row"):
            value = getattr(self, name)
            if name == "needle_token_offset" and not located:
                continue  # an official row whose needle item is not found exactly once
            if not is_int(value) or value < 0:
                raise ValueError(f"{name}: expected a non-negative int, got {value!r}")
        if self.n_items < 1:
            raise ValueError("n_items: a context holds at least one item")
        if self.position_id >= self.n_items:
            raise ValueError(f"position_id: {self.position_id} is not below n_items={self.n_items}")
        if self.needle_token_offset is not None and self.needle_token_offset > self.context_tokens:
            raise ValueError(
                f"needle_token_offset: {self.needle_token_offset} lies past "
                f"context_tokens={self.context_tokens}"
            )
        for name in ("context", "instruction", "key", "answer", "tokenizer"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name}: expected a non-empty string")
        get_family(self.family).check_gold_fields(self.answer, self.description)  # the family's own rule
        if self.source not in get_args(Source):
            raise ValueError(f"source: {self.source!r} is not one of {get_args(Source)}")

    @property
    def depth(self) -> float:
        """Relative position of the needle in the context, in [0, 1)."""
        return self.position_id / self.n_items

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "") -> ProbeExample:
        """Build from a JSON object; errors name ``where`` (file:line) and the field."""
        prefix = f"{where}: " if where else ""
        known = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.default is MISSING}
        missing = sorted(name for name in required if name not in data)
        if missing:
            raise RecordError(f"{prefix}missing field(s) {', '.join(missing)}")
        unknown = sorted(set(data) - known)
        if unknown:
            raise RecordError(f"{prefix}unknown field(s) {', '.join(unknown)}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as err:
            raise RecordError(f"{prefix}{err}") from err


def read_probes(path: Path) -> list[ProbeExample]:
    return [ProbeExample.from_dict(obj, where=f"{path}:{lineno}") for lineno, obj in iter_jsonl(path)]


def write_probes(path: Path, examples: Iterable[ProbeExample]) -> None:
    write_jsonl(path, (ex.to_dict() for ex in examples))
