"""The reference metric against the authors' formulas, and the diagnostics around it."""

from __future__ import annotations

import pytest

from val_probing.errors import ValProbingError
from val_probing.metrics import diagnostic_scores, reference_score
from val_probing.probes import get_family
from val_probing.probes.base import MetricError
from val_probing.probes.code import match as code_match
from val_probing.probes.database import match as database_match
from val_probing.probes.document import recall as document_recall


def plot_py_document(gt: str, pred: str) -> float:
    """Transcribed from the authors' plot.py (document)."""
    gt_words = set(gt.strip().lower().split())
    pred_words = set(pred.strip().lower().split())
    return len(gt_words & pred_words) / len(gt_words)


def plot_py_code(gt: str, pred: str) -> int:
    return 1 if gt.strip(".") in pred else 0


def plot_py_database(label: str, description: str, pred: str) -> int:
    hit = label.strip(".").lower() in pred.lower() or description.strip(".").lower() in pred.lower()
    return 1 if hit else 0


DOCUMENT_CASES = [
    ("We train the model.", "We train the model.", 1.0),
    ("We train the model.", "we TRAIN the model.", 1.0),  # case-insensitive
    ("We train the model.", "We train the model", 0.75),  # "model." is not "model"
    ("We train the model.", " The sentence is: We train the model. ", 1.0),
    ("the the model", "model", 0.5),  # a set: "the" counts once
    ("A b c d", "x y", 0.0),
    ("  padded   gold  ", "gold", 0.5),
]


@pytest.mark.parametrize(("gold", "pred", "expected"), DOCUMENT_CASES)
def test_document_recall_matches_plot_py(gold: str, pred: str, expected: float) -> None:
    assert document_recall(pred, gold) == expected == plot_py_document(gold, pred)
    assert reference_score("document", pred, gold) == expected


CODE_CASES = [
    ("get_number", " get_number", 1.0),
    ("get_number", "Get_Number", 0.0),  # case-sensitive
    ("get_num", "The answer is get_number.", 1.0),  # a substring counts, as in the paper
    ("get_number.", "get_number", 1.0),  # trailing dot stripped from the gold only
    ("..run", "run()", 1.0),
    ("run", "ru n", 0.0),
]


@pytest.mark.parametrize(("gold", "pred", "expected"), CODE_CASES)
def test_code_match_matches_plot_py(gold: str, pred: str, expected: float) -> None:
    assert code_match(pred, gold) == expected == plot_py_code(gold, pred)
    assert reference_score("code", pred, gold) == expected


DATABASE_CASES = [
    ("Jalan Besar Stadium", "stadium in Singapore", 'The label is "jalan besar stadium".', 1.0),
    ("Jalan Besar Stadium", "stadium in Singapore", "It is a STADIUM IN SINGAPORE", 1.0),
    ("Mutagens from model systems.", "scientific article", "Mutagens from model systems", 1.0),
    ("Mutagens from model systems.", "scientific article", "Mutagens from models", 0.0),
    ("A", "b.", "nothing here", 0.0),
]


@pytest.mark.parametrize(("label", "description", "pred", "expected"), DATABASE_CASES)
def test_database_match_matches_plot_py(label: str, description: str, pred: str, expected: float) -> None:
    assert database_match(pred, label, description) == expected == plot_py_database(label, description, pred)
    assert reference_score("database", pred, label, description) == expected


@pytest.mark.parametrize("pred", [None, ""])
@pytest.mark.parametrize(
    ("family", "answer", "description"),
    [("document", "A sentence.", None), ("code", "f", None), ("database", "L", "d")],
)
def test_missing_prediction_scores_zero(
    family: str, answer: str, description: str | None, pred: str | None
) -> None:
    assert reference_score(family, pred, answer, description) == 0.0  # type: ignore[arg-type]
    assert set(diagnostic_scores(family, pred, answer, description).values()) == {0.0}  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("family", "answer", "description"),
    [
        ("document", "   ", None),  # no words: plot.py would divide by zero
        ("code", "...", None),  # empty after strip('.'): would match every prediction
        ("database", "..", "a description"),
        ("database", "label", "."),
    ],
)
def test_unscorable_gold_is_an_error(family: str, answer: str, description: str | None) -> None:
    with pytest.raises(MetricError) as err:
        reference_score(family, "some prediction", answer, description)  # type: ignore[arg-type]
    assert isinstance(err.value, ValProbingError)


def test_database_reference_needs_description() -> None:
    with pytest.raises(MetricError, match="description"):
        reference_score("database", "x", "label")
    assert database_match("the label", "label", None) == 1.0


def test_unknown_family_is_an_error() -> None:
    with pytest.raises(MetricError, match="family"):
        reference_score("poem", "x", "y")  # type: ignore[arg-type]


def test_document_diagnostics_forgive_punctuation_but_not_the_reference() -> None:
    gold = "We train the model."
    pred = "we train the model"
    scores = diagnostic_scores("document", pred, gold)
    assert set(scores) == set(get_family("document").DIAGNOSTICS)
    assert reference_score("document", pred, gold) == 0.75
    assert scores["recall_nopunct"] == 1.0
    assert scores["sentence_fuzzy"] == 1.0
    assert diagnostic_scores("document", "unrelated words", gold)["sentence_fuzzy"] < 0.6


def test_code_diagnostics_tell_substrings_from_names() -> None:
    scores = diagnostic_scores("code", "The function is `get_number`.", "get_num")
    assert reference_score("code", "The function is `get_number`.", "get_num") == 1.0
    assert scores["name_token"] == 0.0  # get_num is not a whole identifier there
    assert scores["name_normalised"] == 0.0
    assert 0.5 < scores["name_fuzzy"] < 1.0
    scores = diagnostic_scores("code", "It is GetNumber", "get_number")
    assert reference_score("code", "It is GetNumber", "get_number") == 0.0
    assert scores["name_normalised"] == 1.0
    assert scores["name_token"] == 0.0
    assert diagnostic_scores("code", "get_number", "get_number")["name_token"] == 1.0


def test_database_diagnostics_allow_small_differences() -> None:
    label, description = "Signori… Mina! vol. 2", "1993 live album by Mina"
    pred = 'The label is "Signori... Mina! vol 2", a 1993 live album by Mina.'
    scores = diagnostic_scores("database", pred, label, description)
    assert scores["label_fuzzy"] == 1.0
    assert scores["description_fuzzy"] == 1.0
    assert scores["label_or_description_fuzzy"] == 1.0
    miss = diagnostic_scores("database", "I do not know.", label, description)
    assert miss == {"label_fuzzy": 0.0, "description_fuzzy": 0.0, "label_or_description_fuzzy": 0.0}
