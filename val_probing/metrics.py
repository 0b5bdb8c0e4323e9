"""Per-sample scoring: the paper's reference metric, plus tolerant diagnostics under other names.

Written in the style of inspect_ai scorers: each check is a tiny pure function of (prediction,
:class:`~val_probing.probes.base.Target`), owned by its family module (``check`` and ``DIAGNOSTICS``
in ``val_probing/probes/<family>.py``); :func:`reference_score` and :func:`diagnostic_scores` ask the
family for them (the checks are imported from their family module by name, never from here). The
reference checks reproduce the authors' ``VaLProbing/plot.py`` exactly (MIT,
microsoft/FILM):

    document   len(set(g.strip().lower().split()) & set(p.strip().lower().split()))
               / len(set(g.strip().lower().split()))                 word-set recall of the gold sentence
    code       1 if gold.strip('.') in pred else 0                   case-sensitive substring
    database   label.strip('.').lower() in pred.lower()
               or description.strip('.').lower() in pred.lower()     either one, case-insensitive

Two guards differ from a blind transcription, both only where the authors' code would crash or
give credit for nothing:

* A ``None`` or empty prediction scores 0.0 (``"" in pred`` tricks cannot fire).
* A gold that is empty after the reference normalisation (no words; a code name or database label
  that is only dots) raises :class:`MetricError`: the authors' formula would divide by zero or match
  every prediction, so it is a data error, never a score.

The reference metric is deliberately literal: ``"model."`` is not the word ``"model"``, and the
code check gives credit for ``get_number`` when the gold is ``get_num``. :func:`diagnostic_scores`
reports tolerant variants (built on rapidfuzz) under other names so that such effects can be
measured; they are never mixed into the reference score.
"""

from __future__ import annotations

from val_probing.probes import FamilySpec, get_family
from val_probing.probes.base import MetricError, Target
from val_probing.records import FAMILIES, Family

__all__ = ["diagnostic_scores", "reference_score"]


def _family(family: Family) -> FamilySpec:
    if family not in FAMILIES:
        raise MetricError(f"family: {family!r} is not one of {FAMILIES}")
    return get_family(family)


def reference_score(
    family: Family, prediction: str | None, answer: str, description: str | None = None
) -> float:
    """The paper's per-sample score in [0, 1] for one model output."""
    return _family(family).check(prediction, Target(answer, description))


def diagnostic_scores(
    family: Family, prediction: str | None, answer: str, description: str | None = None
) -> dict[str, float]:
    """Tolerant per-sample scores in [0, 1], keyed by name (the family's ``DIAGNOSTICS``)."""
    target = Target(answer, description)
    return {name: check(prediction, target) for name, check in _family(family).DIAGNOSTICS.items()}
