"""The questions of a saved run, as a person reads them: where the needle was, what was asked, the
gold answer, what the model answered and its score (the HTML report's drill-down).

:func:`read_questions` streams an lm-eval ``samples_<task>_*.jsonl`` file, like
:func:`val_probing.results.read_samples`, but keeps the texts that the summaries do not need. Every
line is checked: a bad line is a :class:`ResultsError` naming the file, line and field; a truncated
last line (a run killed while writing) is dropped with a warning.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from val_probing.results.readers import PREFERRED_FILTER, score_response
from val_probing.results.sample_lines import jsonl_objects
from val_probing.results.task_result import ResultsError
from val_probing.typed import is_int, is_number

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Question:
    """One asked question of a run: its place in the context, its texts and its reference score."""

    set_id: int
    position_id: int
    n_items: int
    context_length: int | None
    depth: float  # relative needle position, 0 = start of the context, 1 = its end
    key: str  # what the question names (the sentence, snippet or entity)
    gold: str  # the gold answer
    answer: str  # the model's (filtered) response
    score: float  # reference score in [0, 1]
    context_id: str = ""  # which context (questions with the same one share its prompt prefix)
    context_tokens: int | None = None  # the context's length in ``tokenizer`` tokens
    instruction: str = ""  # the question as asked
    tokenizer: str | None = None  # what measured ``context_tokens``
    cached_tokens: int | None = None  # prompt tokens the backend served from its prefix cache, if it says


def _text(value: object) -> str:
    while isinstance(value, list) and value:  # lm-eval nests per-repeat lists in some versions
        value = value[0]
    return value if isinstance(value, str) else ""


def _int(doc: Mapping[str, Any], name: str, where: str) -> int:
    value = doc.get(name)
    if not is_int(value) or value < 0:
        raise ResultsError(f"{where}: field 'doc.{name}' must be a non-negative integer, got {value!r}")
    return value


def _optional_int(value: object) -> int | None:
    return value if is_int(value) and value >= 0 else None


def _question(obj: object, where: str) -> Question:
    if not isinstance(obj, dict) or not isinstance(obj.get("doc"), dict):
        raise ResultsError(f"{where}: missing field 'doc' (not an lm-eval samples line)")
    doc: dict[str, Any] = obj["doc"]
    score = obj.get("ref_score")
    if score is None and "bypass" in obj:  # --predict_only: scored here, as the results loader does
        score = score_response(obj, doc, where)
    if not is_number(score) or not 0.0 <= score <= 1.0:
        raise ResultsError(f"{where}: field 'ref_score' must be a number in [0, 1], got {score!r}")
    set_id, position_id, n_items = (_int(doc, f, where) for f in ("set_id", "position_id", "n_items"))
    if n_items < 1 or position_id >= n_items:
        raise ResultsError(f"{where}: doc.position_id {position_id} is not below doc.n_items {n_items}")
    length = doc.get("context_length")
    if length is not None and not is_int(length):
        raise ResultsError(f"{where}: field 'doc.context_length' must be an integer, got {length!r}")
    depth = doc.get("depth")
    if not is_number(depth) or math.isnan(depth):
        depth = (position_id + 0.5) / n_items
    return Question(
        set_id=set_id,
        position_id=position_id,
        n_items=n_items,
        context_length=length,
        depth=float(depth),
        key=str(doc.get("key") or ""),
        gold=str(doc.get("answer") or ""),
        answer=_text(obj.get("filtered_resps")) or _text(obj.get("resps")),
        score=float(score),
        context_id=str(doc.get("context_id") or f"{length}/{set_id}"),
        context_tokens=_optional_int(doc.get("context_tokens")),
        instruction=str(doc.get("instruction") or ""),
        tokenizer=doc["tokenizer"] if isinstance(doc.get("tokenizer"), str) else None,
        cached_tokens=_optional_int(obj.get("cached_tokens")),
    )


def read_questions(path: Path) -> list[Question]:
    """Every question of one samples file, in file order (one filter: ``"none"``, else the first)."""
    rows: list[tuple[str, Question]] = []
    for lineno, obj in jsonl_objects(path):
        question = _question(obj, f"{path}:{lineno}")  # checks that the line is an object first
        rows.append((str(obj.get("filter", PREFERRED_FILTER)), question))
    filters = sorted({f for f, _q in rows})
    keep = PREFERRED_FILTER if PREFERRED_FILTER in filters or not filters else filters[0]
    return [q for f, q in rows if f == keep]
