"""Database probes: a context of entities; the question gives an id, the answer is label and description."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from val_probing.official import extract_key
from val_probing.probes.base import one_line, text_field
from val_probing.records import Family

NAME: Family = "database"
SEPARATOR = "\n"
_ENTRY = re.compile(r"<id: (?P<id>[^,\s>]+), label: (?P<label>.*), description: (?P<dcpt>.*)>")


@dataclass(frozen=True, slots=True)
class DatabaseItem:
    """An entity: an id (the key), its label and its description (``dcpt``, the authors' name)."""

    id: str
    label: str
    dcpt: str

    def __post_init__(self) -> None:
        if any(ch.isspace() for ch in self.id) or "," in self.id or ">" in self.id:
            raise ValueError(f"field 'id' must have no spaces, commas or '>', got {self.id!r}")
        one_line("label", self.label)
        one_line("dcpt", self.dcpt)

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> DatabaseItem:
        return cls(id=text_field(obj, "id"), label=text_field(obj, "label"), dcpt=text_field(obj, "dcpt"))


def id_marker(entity_id: str) -> str:
    """The text that names an entity in the context: ``<id: X,``."""
    return f"<id: {entity_id},"


def render(item: DatabaseItem) -> str:
    return f"<id: {item.id}, label: {item.label}, description: {item.dcpt}>"


def key(item: DatabaseItem) -> str:
    return item.id


def instruction(key: str) -> str:
    return f"In above context , what is the label and description for the query where the id is {key} ?"


def gold(item: DatabaseItem) -> tuple[str, str | None]:
    return item.label, item.dcpt


def unique_strings(item: DatabaseItem) -> tuple[str, ...]:
    return (id_marker(item.id),)


def oracle(context: str, instruction: str) -> str:
    """``label: L, description: D`` of the entry whose id the question gives."""
    marker = id_marker(extract_key(NAME, instruction))
    if context.count(marker) != 1:
        return ""
    start = context.index(marker)
    end = context.find(SEPARATOR, start)
    match = _ENTRY.fullmatch(context[start : end if end >= 0 else len(context)])
    if match is None:
        return ""
    return f"label: {match['label']}, description: {match['dcpt']}"
