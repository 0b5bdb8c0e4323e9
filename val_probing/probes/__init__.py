"""The three VAL probe families, one module each, behind one small interface (:class:`FamilySpec`).

A family module owns everything about its family; nothing outside ``val_probing.probes`` branches on
a family name (the names themselves, ``FAMILIES``, are in :mod:`.base`). It names its pool item type
(``ITEM``) and pool file (``POOL_FILE``), its split of the authors' VaLProbing-32K data
(``OFFICIAL_SPLIT``, gold fields ``OFFICIAL_GOLD``) and its default bucket count, and says how a pool
item appears in the context (``render``), what a question names (``key``) and how it is asked
(``instruction``, the authors' VaLProbing-32K wording), what the gold answer is (``gold``) and which
gold fields a probe record needs (``check_gold_fields``, asked by every ``ProbeExample``), which strings
must occur exactly once in a context for the question to be unambiguous (``unique_strings``), and how
to answer a question from the context alone (``oracle``, for tests: it finds the key in the context and
never reads gold fields); how to find the key of a question in any wording (``extract_key``), how the
key and the needle item appear in a context (``key_marker``, ``needle_pattern``); and how an answer is
scored (``check``, the paper's reference metric, and the tolerant ``DIAGNOSTICS``).

Items are joined with ``SEPARATOR`` (a newline for every family), so every item starts a line and
no key (which never contains a newline) can straddle two items.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any, Protocol, cast

from val_probing.probes.base import FAMILIES, Check, Family, Floor, Target


class FamilySpec(Protocol):
    NAME: Family
    LABEL: str  # the family's name in tables ("Document")
    TITLE: str  # the paper's name of the task, on figures
    SEPARATOR: str
    ITEM: type[Any]  # the pool item: a frozen, checked record with ``from_dict(obj)``
    POOL_FILE: str  # the authors' pool file name (microsoft/FILM VaLProbing/pieces)
    FILM_SHA256: str  # sha256 of that file at commit 20ed4da (2024-05-15), the version tested on
    OFFICIAL_SPLIT: str  # the split of In2Training/VaLProbing-32K
    OFFICIAL_GOLD: tuple[str, ...]  # the official row's gold fields: (answer,) or (answer, description)
    DEFAULT_BUCKETS: int  # position buckets of the official data (50 positions each)
    FLOOR_WARN: float  # the constant-answer floor (x100) above which a probe set is warned about

    def render(self, item: Any) -> str:
        """The item's text in the context."""
        ...

    def key(self, item: Any) -> str:
        """What the question names (sentence piece / code line / entity id)."""
        ...

    def instruction(self, key: str) -> str:
        """The question, in the authors' wording."""
        ...

    def gold(self, item: Any) -> tuple[str, str | None]:
        """(answer, description): description only for database."""
        ...

    def check_gold_fields(self, answer: str, description: str | None) -> None:
        """The gold fields a probe record needs (``ProbeExample`` asks; whether the reference metric can
        score them is ``probes.checks.check_gold``); ValueError naming the field."""
        ...

    def unique_strings(self, item: Any) -> tuple[str, ...]:
        """Strings that must occur exactly once in a context holding the item (the key first)."""
        ...

    def read_gold(self, context: str, key: str) -> tuple[str, str | None] | None:
        """(answer, description) read off the context at ``key``; None when the key is not there once."""
        ...

    def constant_floor(self, targets: Sequence[Target]) -> Floor:
        """The best constant answer of the family's kind and its reference score over ``targets``."""
        ...

    def oracle(self, context: str, instruction: str) -> str:
        """The answer read off the context alone; "" when the key is absent or ambiguous."""
        ...

    def extract_key(self, instruction: str, context: str | None = None) -> str:
        """The key a question asks about, in any wording; ValueError naming the instruction."""
        ...

    def key_marker(self, key: str) -> str:
        """The text that names the key in a context (its count is the key's count)."""
        ...

    def check(self, value: str | None, target: Target) -> float:
        """The paper's reference score in [0, 1] of one model output (None: no output)."""
        ...

    DIAGNOSTICS: Mapping[str, Check]  # tolerant checks by name, never mixed into the reference score

    def needle_pattern(self, answer: str, key: str) -> re.Pattern[str]:
        """What matches the needle item in a context (the sentence / ``def NAME`` / ``<id: KEY,``)."""
        ...


def get_family(name: str) -> FamilySpec:
    """The module of family ``name`` ("document", "code" or "database")."""
    if name not in FAMILIES:
        raise ValueError(f"family: {name!r} is not one of {FAMILIES}")
    from val_probing.probes import code, database, document

    modules: dict[str, ModuleType] = {"document": document, "code": code, "database": database}
    return cast(FamilySpec, modules[name])
