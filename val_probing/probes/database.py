"""Database probes: a context of entities; the question gives an id, the answer is label and description."""

from __future__ import annotations

import re

from val_probing.official import extract_key
from val_probing.pools import DatabaseItem
from val_probing.records import Family

NAME: Family = "database"
SEPARATOR = "\n"
_ENTRY = re.compile(r"<id: (?P<id>[^,\s>]+), label: (?P<label>.*), description: (?P<dcpt>.*)>")


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
