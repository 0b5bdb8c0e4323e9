"""Database probes: a context of entities; the question gives an id, the answer is label and description."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rapidfuzz import fuzz
from rapidfuzz.utils import default_process

from val_probing.probes.base import (
    KEY_EDGE,
    Check,
    Family,
    Floor,
    MetricError,
    Target,
    best_substring_answer,
    find_key,
    one_line,
    text_field,
)

NAME: Family = "database"
LABEL = "Database"
TITLE = "Database Entity Retrieval (Forward)"
SEPARATOR = "\n"
POOL_FILE = "database_entities.jsonl"
FILM_SHA256 = "cad506afa64bafa3e37e3be39f2d6153e9e0d6005d6fdfded4fe6b86d682310b"
OFFICIAL_SPLIT = "database_forward_32k"
OFFICIAL_GOLD = ("label", "description")
DEFAULT_BUCKETS = 15  # of 750 positions
# The constant-answer floor (x100) above which a set is warned about;
# the authors' pool: 9.2 (shared Wikidata descriptions)
FLOOR_WARN = 10.0
_CUE = re.compile(r"\bid\b|\bidentifier\b", re.IGNORECASE)
_ID_KEY = re.compile(
    r"\b(?:id|identifier)\b\s*(?:is|of|equals|=|:)?\s*[:=]?\s*(?P<key>[^\s,>]+)", re.IGNORECASE
)
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


def check_gold_fields(answer: str, description: str | None) -> None:
    """A database probe's gold is a label and a description: both are scored (``check``)."""
    if not description:
        raise ValueError("description: database examples need the entity description")


def unique_strings(item: DatabaseItem) -> tuple[str, ...]:
    return (id_marker(item.id),)


def _id_key_candidates(instruction: str) -> list[str]:
    out: list[str] = []
    for match in reversed(list(_ID_KEY.finditer(instruction))):  # the last "id ..." is the question's
        raw = match.group("key")
        for candidate in (raw.strip(KEY_EDGE), raw):
            if candidate and candidate not in out:
                out.append(candidate)
    return out


def extract_key(instruction: str, context: str | None = None) -> str:
    """The entity id after the word "id" (see :func:`val_probing.probes.base.find_key`)."""
    return find_key(
        NAME,
        instruction,
        context,
        candidates=_id_key_candidates,
        cue=_CUE,
        marker=id_marker,
        what="an entity id after the word 'id'",
    )


def key_marker(key: str) -> str:
    return id_marker(key)


def needle_pattern(answer: str, key: str) -> re.Pattern[str]:
    """The needle item in a context: its ``<id: KEY,`` entry."""
    return re.compile(re.escape(id_marker(key)))


def read_gold(context: str, key: str) -> tuple[str, str | None] | None:
    """(label, description) of the entry whose id is ``key``; None when it is absent, occurs more
    than once or is not a whole entry."""
    marker = id_marker(key)
    if context.count(marker) != 1:
        return None
    start = context.index(marker)
    end = context.find(SEPARATOR, start)
    match = _ENTRY.fullmatch(context[start : end if end >= 0 else len(context)])
    if match is None:
        return None
    return match["label"], match["dcpt"]


def oracle(context: str, instruction: str) -> str:
    """``label: L, description: D`` of the entry whose id the question gives."""
    found = read_gold(context, extract_key(instruction))
    return "" if found is None else f"label: {found[0]}, description: {found[1]}"


# --------------------------------------------------------------------------------------------------
# Scoring (val_probing.metrics documents the rules)

FUZZY_THRESHOLD = 90.0
"""rapidfuzz partial_ratio (0-100) at or above which a label/description counts as found."""


def match(pred: str | None, label: str, description: str | None) -> float:
    """1.0 when the label or the description (dots stripped, any case) is a substring of the prediction.

    ``description=None`` checks the label alone (the reference always passes both).
    """
    golds = []
    for field, text in (("label", label), ("description", description)):
        if text is None:
            continue
        gold = text.strip(".").lower()
        if not gold:
            raise MetricError(f"database {field} {text!r} is empty after strip('.')")
        golds.append(gold)
    if not pred:
        return 0.0
    text = pred.lower()
    return 1.0 if any(gold in text for gold in golds) else 0.0


def _description(target: Target) -> str:
    if target.description is None:
        raise MetricError("database scoring needs the gold description")
    return target.description


def check(value: str | None, target: Target) -> float:
    """The reference score (the authors' plot.py): the label or the description, any case."""
    return match(value, target.answer, _description(target))


def constant_floor(targets: Sequence[Target]) -> Floor:
    """The best single label or description (normalised as the metric does) given as the answer to
    every question: exact over those strings. An answer naming k of them scores at most the sum of
    their single scores, so a set whose floor is small is hard to game with a short constant answer."""
    return best_substring_answer(
        [(t.answer.strip(".").lower(), _description(t).strip(".").lower()) for t in targets]
    )


def fuzzy_found(pred: str | None, gold: str, threshold: float = FUZZY_THRESHOLD) -> float:
    """1.0 when rapidfuzz partial_ratio(gold, pred) on processed text reaches ``threshold``."""
    if not pred:
        return 0.0
    return 1.0 if fuzz.partial_ratio(gold, pred, processor=default_process) >= threshold else 0.0


def label_fuzzy(value: str | None, target: Target) -> float:
    _description(target)
    return fuzzy_found(value, target.answer)


def description_fuzzy(value: str | None, target: Target) -> float:
    return fuzzy_found(value, _description(target))


def label_or_description_fuzzy(value: str | None, target: Target) -> float:
    return max(fuzzy_found(value, target.answer), fuzzy_found(value, _description(target)))


DIAGNOSTICS: Mapping[str, Check] = {
    "label_fuzzy": label_fuzzy,
    "description_fuzzy": description_fuzzy,
    "label_or_description_fuzzy": label_or_description_fuzzy,
}
"""Tolerant checks, reported under these names (stable API), never as the reference score."""

ITEM = DatabaseItem
