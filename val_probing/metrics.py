"""Per-sample scoring: the paper's reference metric, plus tolerant diagnostics under other names.

Written in the style of inspect_ai scorers: each check is a tiny pure function of (prediction, gold),
and ONE helper, :func:`reference_score`, picks the family's check. The reference checks reproduce the
authors' ``VaLProbing/plot.py`` exactly (MIT, microsoft/FILM):

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

import re
from collections.abc import Callable, Mapping

from rapidfuzz import fuzz
from rapidfuzz.utils import default_process

from val_probing.errors import ValProbingError
from val_probing.records import FAMILIES, Family


class MetricError(ValProbingError, ValueError):
    """A gold answer that cannot be scored (e.g. no words in it)."""


# --------------------------------------------------------------------------------------------------
# Reference checks (the authors' formulas)


def document_recall(pred: str | None, gold: str) -> float:
    """Fraction of the gold sentence's distinct lower-cased words that appear in the prediction."""
    gold_words = set(gold.strip().lower().split())
    if not gold_words:
        raise MetricError(f"document gold {gold!r} has no words: recall is undefined")
    if not pred:
        return 0.0
    pred_words = set(pred.strip().lower().split())
    return len(gold_words & pred_words) / len(gold_words)


def code_match(pred: str | None, gold: str) -> float:
    """1.0 when the function name (trailing/leading dots stripped) is a substring of the prediction."""
    name = gold.strip(".")
    if not name:
        raise MetricError(f"code gold {gold!r} is empty after strip('.')")
    if not pred:
        return 0.0
    return 1.0 if name in pred else 0.0


def database_match(pred: str | None, label: str, description: str | None) -> float:
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


def reference_score(
    family: Family, prediction: str | None, answer: str, description: str | None = None
) -> float:
    """The paper's per-sample score in [0, 1] for one model output."""
    if family == "document":
        return document_recall(prediction, answer)
    if family == "code":
        return code_match(prediction, answer)
    if family == "database":
        if description is None:
            raise MetricError("database scoring needs the gold description")
        return database_match(prediction, answer, description)
    raise MetricError(f"family: {family!r} is not one of {FAMILIES}")


# --------------------------------------------------------------------------------------------------
# Diagnostic checks (tolerant; reported under their own names, never as the reference score)

FUZZY_THRESHOLD = 90.0
"""rapidfuzz partial_ratio (0-100) at or above which a database label/description counts as found."""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _words(text: str) -> set[str]:
    """Lower-cased words with punctuation removed (rapidfuzz's default_process), as a set."""
    return set(default_process(text).split())


def recall_nopunct(pred: str | None, gold: str) -> float:
    """Word-set recall that ignores punctuation and case: ``"model."`` counts as ``"model"``."""
    gold_words = _words(gold)
    if not gold_words:
        raise MetricError(f"document gold {gold!r} has no words once punctuation is removed")
    if not pred:
        return 0.0
    return len(gold_words & _words(pred)) / len(gold_words)


def sentence_fuzzy(pred: str | None, gold: str) -> float:
    """rapidfuzz partial_ratio of the gold sentence against the prediction, scaled to [0, 1]."""
    if not pred:
        return 0.0
    return fuzz.partial_ratio(gold, pred, processor=default_process) / 100.0


def _normalise_identifier(name: str) -> str:
    return name.replace("_", "").lower()


def name_token(pred: str | None, gold: str) -> float:
    """1.0 when the gold name is a whole identifier of the prediction (``get_num`` != ``get_number``)."""
    if not pred:
        return 0.0
    return 1.0 if gold.strip(".") in _IDENTIFIER.findall(pred) else 0.0


def name_normalised(pred: str | None, gold: str) -> float:
    """1.0 when an identifier of the prediction equals the gold name ignoring case and underscores."""
    if not pred:
        return 0.0
    target = _normalise_identifier(gold.strip("."))
    return 1.0 if any(_normalise_identifier(tok) == target for tok in _IDENTIFIER.findall(pred)) else 0.0


def name_fuzzy(pred: str | None, gold: str) -> float:
    """Best rapidfuzz ratio between the gold name and any identifier of the prediction, in [0, 1]."""
    if not pred:
        return 0.0
    tokens = _IDENTIFIER.findall(pred)
    if not tokens:
        return 0.0
    return max(fuzz.ratio(gold.strip("."), tok) for tok in tokens) / 100.0


def fuzzy_found(pred: str | None, gold: str, threshold: float = FUZZY_THRESHOLD) -> float:
    """1.0 when rapidfuzz partial_ratio(gold, pred) on processed text reaches ``threshold``."""
    if not pred:
        return 0.0
    return 1.0 if fuzz.partial_ratio(gold, pred, processor=default_process) >= threshold else 0.0


Diagnostic = Callable[[str | None, str, str | None], float]

DIAGNOSTICS: Mapping[Family, Mapping[str, Diagnostic]] = {
    "document": {
        "recall_nopunct": lambda p, a, _d: recall_nopunct(p, a),
        "sentence_fuzzy": lambda p, a, _d: sentence_fuzzy(p, a),
    },
    "code": {
        "name_token": lambda p, a, _d: name_token(p, a),
        "name_normalised": lambda p, a, _d: name_normalised(p, a),
        "name_fuzzy": lambda p, a, _d: name_fuzzy(p, a),
    },
    "database": {
        "label_fuzzy": lambda p, a, _d: fuzzy_found(p, a),
        "description_fuzzy": lambda p, _a, d: fuzzy_found(p, d or ""),
        "label_or_description_fuzzy": lambda p, a, d: max(fuzzy_found(p, a), fuzzy_found(p, d or "")),
    },
}
"""Family -> diagnostic name -> check(prediction, answer, description). Names are stable API."""


def diagnostic_scores(
    family: Family, prediction: str | None, answer: str, description: str | None = None
) -> dict[str, float]:
    """Tolerant per-sample scores in [0, 1], keyed by name (see :data:`DIAGNOSTICS`)."""
    if family not in DIAGNOSTICS:
        raise MetricError(f"family: {family!r} is not one of {FAMILIES}")
    if family == "database" and description is None:
        raise MetricError("database scoring needs the gold description")
    return {name: check(prediction, answer, description) for name, check in DIAGNOSTICS[family].items()}
