"""The three VAL probe families, one module each, behind one small interface (:class:`FamilySpec`).

A family says how a pool item appears in the context (``render``), what a question names (``key``)
and how it is asked (``instruction``, the authors' VaLProbing-32K wording), what the gold answer is
(``gold``), which strings must occur exactly once in a context for the question to be unambiguous
(``unique_strings``), and how to answer a question from the context alone (``oracle``, for tests:
it finds the key in the context and never reads gold fields).

Items are joined with ``SEPARATOR`` (a newline for every family), so every item starts a line and
no key (which never contains a newline) can straddle two items.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Protocol, cast

from val_probing.records import FAMILIES, Family


class FamilySpec(Protocol):
    NAME: Family
    SEPARATOR: str

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

    def unique_strings(self, item: Any) -> tuple[str, ...]:
        """Strings that must occur exactly once in a context holding the item (the key first)."""
        ...

    def oracle(self, context: str, instruction: str) -> str:
        """The answer read off the context alone; "" when the key is absent or ambiguous."""
        ...


def get_family(name: str) -> FamilySpec:
    """The module of family ``name`` ("document", "code" or "database")."""
    if name not in FAMILIES:
        raise ValueError(f"family: {name!r} is not one of {FAMILIES}")
    from val_probing.probes import code, database, document

    modules: dict[str, ModuleType] = {"document": document, "code": code, "database": database}
    return cast(FamilySpec, modules[name])
