"""What a probe set must be to measure reading, checked when it is built and on every read.

* every gold is scorable: not empty after the family metric's normalisation (a label of ``...``
  would match every answer);
* every built row's key occurs exactly once in its own context and the gold read off the context at
  that key (the family's ``read_gold``) is the row's answer, so the question has one right answer and
  the row claims it; no two rows of a set share a position or a key, and a set's rows share one
  context;
* the **constant-answer floor** (:func:`probe_floor`): the best single answer of the family's kind
  given to every question, and its reference score over the set (x100). When that answer scores
  above the family's ``FLOOR_WARN`` on the questions it is not the answer of, the set is warned
  about (``build --strict`` refuses it): a score near the floor says nothing about reading.

Errors are :class:`~val_probing.records.RecordError` naming where the rows came from and the row.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from val_probing.files import RecordError
from val_probing.probes import get_family
from val_probing.probes.base import Floor, MetricError, Target
from val_probing.records import ProbeExample, read_probes


def check_gold(family: str, answer: str, description: str | None) -> None:
    """A ``MetricError`` when the family's reference metric cannot score this gold (empty once
    normalised); the metric itself is asked, so the rule is the one scoring applies."""
    get_family(family).check(None, Target(answer, description))


def verify_probe_set(examples: Sequence[ProbeExample], where: str) -> None:
    """Check every row of a probe set (see the module docstring); ``RecordError`` naming the row."""
    contexts: dict[int, tuple[str, int, int]] = {}
    seen: set[tuple[int, int]] = set()
    keys: set[tuple[int, str]] = set()
    for ex in examples:
        at = f"{where} row {ex.row}"
        fam = get_family(ex.family)
        try:
            check_gold(ex.family, ex.answer, ex.description)
        except MetricError as err:
            raise RecordError(f"{at}: {err}") from err
        if ex.source != "built":
            continue  # the authors' rows: their ambiguities are what the skip lists are for
        shape = (ex.context, ex.n_items, ex.context_tokens)
        if contexts.setdefault(ex.set_id, shape) != shape:
            raise RecordError(f"{at}: set {ex.set_id} has another context than its first row")
        if (ex.set_id, ex.position_id) in seen:
            raise RecordError(f"{at}: set {ex.set_id} asks about position {ex.position_id} twice")
        if (ex.set_id, ex.key) in keys:
            raise RecordError(f"{at}: set {ex.set_id} asks about key {ex.key!r} twice")
        seen.add((ex.set_id, ex.position_id))
        keys.add((ex.set_id, ex.key))
        if ex.instruction != fam.instruction(ex.key):
            raise RecordError(f"{at}: the instruction does not ask about the row's key {ex.key!r}")
        found = fam.read_gold(ex.context, ex.key)
        if found is None:
            raise RecordError(f"{at}: key {ex.key!r} does not occur exactly once in its context")
        if found != (ex.answer, ex.description):
            raise RecordError(
                f"{at}: the context answers key {ex.key!r} with {found[0]!r}, not the row's "
                f"answer {ex.answer!r}"
                + ("" if found[1] == ex.description else f" (description {found[1]!r})")
            )


def probe_floor(examples: Sequence[ProbeExample]) -> Floor:
    """The set's constant-answer floor (the family's ``constant_floor`` of its golds)."""
    families = {ex.family for ex in examples}
    if len(families) != 1:
        raise ValueError(f"examples: expected the rows of one family, got {sorted(families) or 'none'}")
    fam = get_family(families.pop())
    return fam.constant_floor([Target(ex.answer, ex.description) for ex in examples])


def floor_warning(family: str, floor: Floor) -> str | None:
    """The warning when the floor's answer scores above the family's threshold on the questions it is
    not the answer of (its own question it answers fully, which gives small sets a floor of 100/n
    without any guessing), else None."""
    limit = get_family(family).FLOOR_WARN
    if floor.elsewhere <= limit:
        return None
    return (
        f"{family}: the constant answer {floor.answer[:80]!r} scores {floor.score:.1f} of 100 on these "
        f"{floor.questions} probes ({floor.elsewhere:.1f} on the questions it is not the answer of, above "
        f"{limit:g}, the threshold for {family}); a score near it does not show reading. Use a pool "
        "whose answers are distinctive (see docs/probes.md, 'The constant-answer floor')"
    )


def read_probe_file(path: Path) -> list[ProbeExample]:
    """A probes JSONL (``build --out``), every row and the set checked (``RecordError`` naming it)."""
    examples = read_probes(path)
    verify_probe_set(examples, str(path))
    return examples
