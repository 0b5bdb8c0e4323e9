"""Readers of saved runs: lm-eval samples files (one :class:`~val_probing.buckets.ScoredSample` per
question), lm-eval aggregate numbers and ``score --json`` summaries (a
:class:`~val_probing.buckets.Summary`). Errors are :class:`ResultsError` naming file, line and field."""

from __future__ import annotations

import json
import logging
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from val_probing.buckets import MODES, BucketStat, Mode, ScoredSample, Summary
from val_probing.metrics import reference_score
from val_probing.records import FAMILIES
from val_probing.results.sample_lines import jsonl_objects
from val_probing.results.task_result import NAN, ResultsError
from val_probing.typed import is_int, is_number

log = logging.getLogger(__name__)

BUCKET_KEY = re.compile(r"^bucket_(\d+),(.+)$")
PREFERRED_FILTER = "none"


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ResultsError(f"{path}: no such file") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ResultsError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _number(value: object) -> float | None:
    if not is_number(value) or math.isnan(value):
        return None
    return float(value)


def _int_field(obj: Mapping[str, Any], name: str, where: str) -> int:
    if name not in obj:
        raise ResultsError(f"{where}: missing field {name!r}")
    value = obj[name]
    if not is_int(value):
        raise ResultsError(f"{where}: field {name!r} must be an integer, got {value!r}")
    return value


# ---------------------------------------------------------------- samples files


def read_samples(path: Path) -> list[tuple[int | None, ScoredSample]]:
    """(context_length, sample) for every line of an lm-eval ``samples_<task>_*.jsonl`` file.

    The file is streamed (lm-eval lines carry the whole prompt: official runs are hundreds of MB).
    lm-eval writes one line per question and filter: with several filters, ``"none"`` (else the
    first by name) is read.
    A truncated last line (a run killed mid-write) is dropped with a warning; any other bad line
    is a :class:`ResultsError` naming the file, line and field.
    """
    out: list[tuple[str, int | None, ScoredSample]] = []
    from_responses = 0
    for lineno, obj in jsonl_objects(path):
        length, sample, rescored = _sample_from_line(obj, f"{path}:{lineno}")
        from_responses += rescored
        out.append((str(obj.get("filter", PREFERRED_FILTER)), length, sample))
    if from_responses:
        log.info(
            "%s: %d samples without scores (a --predict_only run) scored from their responses "
            "with the reference metric",
            path,
            from_responses,
        )
    filters = sorted({f for f, _l, _s in out})
    if len(filters) > 1:  # lm-eval writes one line per (question, filter)
        keep = PREFERRED_FILTER if PREFERRED_FILTER in filters else filters[0]
        log.info("%s: filters %s; reading filter %r", path, ", ".join(filters), keep)
        out = [row for row in out if row[0] == keep]
    return [(length, sample) for _f, length, sample in out]


def score_response(obj: Mapping[str, Any], doc: Mapping[str, Any], where: str) -> float:
    """The reference score of an unscored samples line (``--predict_only``): its filtered response."""
    family = doc.get("family")
    if family not in FAMILIES:
        raise ResultsError(
            f"{where}: no 'ref_score' and field 'doc.family' = {family!r} is not one of {FAMILIES}"
        )
    responses = obj.get("filtered_resps")
    if not isinstance(responses, list) or not responses:
        raise ResultsError(f"{where}: no 'ref_score' and no 'filtered_resps' to score")
    response = responses[0]
    while isinstance(response, list) and response:  # lm-eval nests per-repeat lists in some versions
        response = response[0]
    if not isinstance(response, str):
        raise ResultsError(f"{where}: field 'filtered_resps' holds {response!r}, not a text")
    answer = doc.get("answer")
    if not isinstance(answer, str):
        raise ResultsError(f"{where}: field 'doc.answer' must be a text, got {answer!r}")
    description = doc.get("description")
    return reference_score(family, response, answer, description if isinstance(description, str) else None)


def _sample_from_line(obj: object, where: str) -> tuple[int | None, ScoredSample, bool]:
    """(context length, sample, whether the score was computed here from the response)."""
    if not isinstance(obj, dict):
        raise ResultsError(f"{where}: expected a JSON object")
    doc = obj.get("doc")
    if not isinstance(doc, dict):
        raise ResultsError(f"{where}: missing field 'doc' (not an lm-eval samples line)")
    rescored = "ref_score" not in obj and "bypass" in obj
    score = score_response(obj, doc, where) if rescored else _number(obj.get("ref_score"))
    if score is None:
        raise ResultsError(
            f"{where}: field 'ref_score' must be a number in [0, 1], got {obj.get('ref_score')!r}"
        )
    length = doc.get("context_length")
    if length is not None and not is_int(length):
        raise ResultsError(f"{where}: field 'doc.context_length' must be an integer, got {length!r}")
    try:
        sample = ScoredSample(
            set_id=_int_field(doc, "set_id", where),
            position_id=_int_field(doc, "position_id", where),
            n_items=_int_field(doc, "n_items", where),
            key=str(doc.get("key", "")),
            score=score,
        )
    except ValueError as err:
        if isinstance(err, ResultsError):
            raise
        raise ResultsError(f"{where}: {err}") from err
    return length, sample, rescored


# ---------------------------------------------------------------- summaries without samples


def summary_from_aggregates(
    task_results: Mapping[str, Any], *, n_buckets: int | None, where: str, n_samples: int = 0
) -> Summary:
    """A Summary from lm-eval's ``bucket_NN`` / ``avg`` / ``gap`` numbers (x100); spread unknown (NaN)."""
    by_filter: dict[str, dict[int, float | None]] = defaultdict(dict)
    for name, value in task_results.items():
        match = BUCKET_KEY.match(name)
        if match:
            by_filter[match.group(2)][int(match.group(1))] = _number(value)
    if not by_filter:
        if any(name.startswith("bypass,") for name in task_results):
            raise ResultsError(
                f"{where}: a --predict_only run (metric 'bypass') has no scores; its samples file "
                "(samples_<task>_<timestamp>.jsonl beside it) is needed to score it"
            )
        raise ResultsError(f"{where}: no bucket_NN metrics (is this a VAL probing task?)")
    filt = PREFERRED_FILTER if PREFERRED_FILTER in by_filter else sorted(by_filter)[0]
    values = by_filter[filt]
    total = bucket_count(n_buckets, values) or 1  # values is not empty
    present = {b: v for b, v in values.items() if v is not None and b < total}
    if not present:
        raise ResultsError(f"{where}: every bucket_NN value is empty")
    buckets = tuple(
        BucketStat(index=b, mean=present[b], std=NAN, ci=(NAN, NAN), n=0, n_sets=0) for b in sorted(present)
    )
    means = [b.mean for b in buckets]
    avg = _number(task_results.get(f"avg,{filt}"))
    gap = _number(task_results.get(f"gap,{filt}"))
    return Summary(
        buckets=buckets,
        avg=avg if avg is not None else sum(means) / len(means),
        avg_ci=(NAN, NAN),
        gap=gap if gap is not None else max(means) - min(means),
        n_sets=0,
        n_samples=n_samples,
        mode="default",
        n_buckets=total,
        missing_buckets=tuple(b for b in range(total) if b not in present),
    )


def _mode(value: object, where: str) -> Mode:
    for mode in MODES:
        if value == mode:
            return mode
    raise ResultsError(f"{where}: field 'mode' = {value!r} is not one of {MODES}")


def _interval(value: Any) -> tuple[float, float]:
    """A saved ``[low, high]`` (JSON); a TypeError or ValueError when it is not two numbers."""
    low, high = (float(x) for x in value)
    return low, high


def summary_from_dict(data: Mapping[str, Any], where: str) -> Summary:
    """Inverse of ``Summary.to_dict()`` (a ``score --json`` file)."""
    try:
        buckets = tuple(
            BucketStat(
                index=int(b["index"]),
                mean=float(b["mean"]),
                std=float(b["std"]) if b.get("std") is not None else NAN,
                ci=_interval(b["ci"]) if b.get("ci") else (NAN, NAN),
                n=int(b.get("n", 0)),
                n_sets=int(b.get("n_sets", 0)),
            )
            for b in data["buckets"]
        )
        if not buckets:
            raise ResultsError(f"{where}: 'buckets' is empty")
        recorded = int(data["n_buckets"]) if "n_buckets" in data else None
        n_buckets = bucket_count(recorded, (b.index for b in buckets)) or 1  # buckets is not empty
        _check_summary(data, buckets, n_buckets, where)
        return Summary(
            buckets=buckets,
            avg=float(data["avg"]),
            avg_ci=_interval(data.get("avg_ci") or (NAN, NAN)),
            gap=float(data["gap"]),
            n_sets=int(data.get("n_sets", 0)),
            n_samples=int(data.get("n_samples", 0)),
            mode=_mode(data.get("mode", "default"), where),
            n_buckets=n_buckets,
            missing_buckets=tuple(int(b) for b in data.get("missing_buckets", ())),
        )
    except KeyError as err:
        raise ResultsError(f"{where}: missing field {err.args[0]!r}") from err
    except (TypeError, ValueError) as err:
        if isinstance(err, ResultsError):
            raise
        raise ResultsError(f"{where}: bad summary value ({err})") from err


_CONSISTENT = 1e-6  # x100 scores: the float noise of a recomputed mean, far below any edit


def _check_score(value: float, field: str, where: str) -> None:
    if not 0.0 <= value <= 100.0:  # NaN fails too
        raise ResultsError(f"{where}: field {field!r} = {value!r} is not a score in [0, 100]")


def _check_summary(
    data: Mapping[str, Any], buckets: tuple[BucketStat, ...], n_buckets: int, where: str
) -> None:
    """What a ``score --json`` summary claims, checked: scores in [0, 100], bucket indices distinct and
    below ``n_buckets``, spreads not negative, ``avg`` the mean and ``gap`` the range of the bucket
    means (as :func:`val_probing.buckets.summarize` computes them). ``ResultsError`` naming the field."""
    seen: set[int] = set()
    for i, b in enumerate(buckets):
        field = f"buckets[{i}]"
        if b.index in seen or not 0 <= b.index < n_buckets:
            raise ResultsError(
                f"{where}: field '{field}.index' = {b.index} is repeated or not below n_buckets={n_buckets}"
            )
        seen.add(b.index)
        _check_score(b.mean, f"{field}.mean", where)
        for j, bound in enumerate(b.ci):
            if not math.isnan(bound):
                _check_score(bound, f"{field}.ci[{j}]", where)
        if b.std < 0 or b.n < 0 or b.n_sets < 0:
            raise ResultsError(f"{where}: field '{field}' has a negative std, n or n_sets")
    means = [b.mean for b in buckets]
    avg, gap = float(data["avg"]), float(data["gap"])
    _check_score(avg, "avg", where)
    if not math.isclose(avg, sum(means) / len(means), abs_tol=_CONSISTENT):
        raise ResultsError(
            f"{where}: field 'avg' = {avg!r} is not the mean of its bucket means "
            f"({sum(means) / len(means):.4f})"
        )
    if not math.isclose(gap, max(means) - min(means), abs_tol=_CONSISTENT):
        raise ResultsError(
            f"{where}: field 'gap' = {gap!r} is not the range of its bucket means "
            f"({max(means) - min(means):.4f})"
        )
    for j, bound in enumerate(data.get("avg_ci") or ()):
        if bound is not None and not math.isnan(float(bound)):
            _check_score(float(bound), f"avg_ci[{j}]", where)


def bucket_count(recorded: object, indices: Iterable[int]) -> int | None:
    """A saved run's bucket count: the one it recorded (a positive int), else one more than the
    highest bucket index it has; None when it has neither."""
    if is_int(recorded) and recorded > 0:
        return recorded
    return max(indices, default=-1) + 1 or None
