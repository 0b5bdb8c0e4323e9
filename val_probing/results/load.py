"""Load saved VAL results (lm-eval runs or ``val-probing score --json`` files) into typed records.

Accepted inputs (any mix, several models and runs at once):

* an lm-eval output folder: ``lm_eval --output_path OUT --log_samples`` writes
  ``OUT/<model_name_sanitized>/results_<timestamp>.json`` and, beside it,
  ``samples_<task>_<timestamp>.jsonl``; a folder is searched recursively for ``results_*.json``;
* one such results file (also lm-eval's ``--output_path FILE.json`` form, ``FILE_<timestamp>.json``);
* a ``val-probing score --json`` file (``Summary.to_dict()`` plus ``"task"``, optionally ``"model"``;
  without it the model is the file name minus a trailing ``_<task>``: ``Mistral_code.json`` -> Mistral).

What comes back is one :class:`TaskResult` per (model, task, context length):

* With a samples file, the summary is RECOMPUTED from the per-sample reference scores with
  :func:`val_probing.buckets.summarize` (per-set bucket means, population std across sets), exactly
  as ``val-probing score`` does. Bootstrap CIs are computed only when asked (``n_boot=N``; default
  none, so loading a large run stays fast): :func:`with_ci` and :func:`results_frame` compute them
  later from the kept samples. A ``--predict_only`` run (lm-eval's ``bypass`` metric, no scores) is
  scored here from its samples' responses with the reference metric
  (:func:`val_probing.metrics.reference_score`), so ``report``, ``plot`` and ``check`` read it as any
  other run. When the samples cover several context lengths
  (``doc["context_length"]``), there is one result per length (the depth x length heatmap).
* Without samples (``--log_samples`` not given), the summary is rebuilt from the aggregate numbers
  in the results file (``bucket_NN``, ``avg``, ``gap``). Nothing about the spread across sets is
  known then, and it is represented honestly: every ``BucketStat.std`` and ``ci`` and ``avg_ci`` is
  NaN, ``BucketStat.n`` / ``n_sets`` and ``Summary.n_sets`` are 0 ("not known"),
  ``Summary.n_samples`` is lm-eval's ``n-samples[task]["effective"]`` (0 when absent);
  ``TaskResult.has_samples`` is False. Plots draw no error bars for such results.
* A ``score --json`` file carries its std and CIs, so they are kept as they are.

``latest_only=True`` keeps, for every (model, task, context length), the newest results file that
has it (lm-eval's timestamp in the file name; ties: the path sorting last), so re-running one task
or one context length does not hide the others.

Bad input: a file named explicitly that is unreadable, foreign or has unreadable samples is a
:class:`ResultsError` naming the file (and line and field). Inside a folder, such files (or
tasks) are skipped with that message as a warning. A folder without results, a results file
without VAL tasks and a truncated LAST line of a samples file (a run killed while writing) are
warnings, and whatever is valid is still returned. When nothing at all can be loaded,
:func:`load_results` raises.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from val_probing.buckets import MODES, BucketStat, Mode, ScoredSample, Summary, summarize, summarize_by
from val_probing.errors import ValProbingError
from val_probing.metrics import reference_score
from val_probing.records import FAMILIES

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

TASK_PREFIX = "val_"
NAN = float("nan")
_BUCKET_KEY = re.compile(r"^bucket_(\d+),(.+)$")
_STAMP = re.compile(r"_(\d{4}-\d{2}-\d{2}T[\d\-.]+)\.json$")
_PREFERRED_FILTER = "none"
DEFAULT_N_BOOT = 1000
PathLike = str | os.PathLike[str]


class ResultsError(ValProbingError, ValueError):
    """A results or samples file that cannot be read, naming the file, line and field."""


SampleScore = ScoredSample
"""The one scored-sample type, under the name this module used to give it."""


@dataclass(frozen=True, slots=True)
class TaskResult:
    """One model's result on one task (at one context length)."""

    model: str
    task: str
    source: Path
    context_length: int | None
    metadata: Mapping[str, Any]
    summary: Summary
    samples: tuple[ScoredSample, ...]

    def __post_init__(self) -> None:
        if self.task not in FAMILIES:
            raise ValueError(f"task: {self.task!r} is not one of {FAMILIES}")
        if not self.model:
            raise ValueError("model: empty name")

    @property
    def has_samples(self) -> bool:
        """True when the summary was recomputed from samples (std and CIs known)."""
        return bool(self.samples)

    @property
    def has_spread(self) -> bool:
        """True when the across-set std of the buckets is known (not NaN)."""
        return all(not math.isnan(b.std) for b in self.summary.buckets)


# ---------------------------------------------------------------- small helpers


def task_family(task_name: str) -> str | None:
    """``"val_document"`` -> ``"document"``; None for tasks that are not VAL probing tasks."""
    if task_name.startswith(TASK_PREFIX) and task_name[len(TASK_PREFIX) :] in FAMILIES:
        return task_name[len(TASK_PREFIX) :]
    return None


def display_name(model_name: str) -> str:
    """The last path component of a model name or folder (``org/Model`` -> ``Model``)."""
    stripped = model_name.rstrip("/\\")
    return re.split(r"[/\\]", stripped)[-1] or model_name


def run_stamp(path: Path) -> str | None:
    """lm-eval's timestamp in a results file name (ISO with ``-`` for ``:``), sortable as text."""
    match = _STAMP.search(path.name)
    return match.group(1) if match else None


def _read_json(path: Path) -> dict[str, Any]:
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
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


def _int_field(obj: Mapping[str, Any], name: str, where: str) -> int:
    if name not in obj:
        raise ResultsError(f"{where}: missing field {name!r}")
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, int):
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
    broken: tuple[int, json.JSONDecodeError] | None = None
    from_responses = 0
    with Path(path).open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            if broken is not None:  # the bad line was not the last one
                raise ResultsError(f"{path}:{broken[0]}: malformed JSON ({broken[1].msg})") from broken[1]
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                broken = (lineno, err)
                continue
            length, sample, rescored = _sample_from_line(obj, f"{path}:{lineno}")
            from_responses += rescored
            out.append((str(obj.get("filter", _PREFERRED_FILTER)), length, sample))
    if from_responses:
        log.info(
            "%s: %d samples without scores (a --predict_only run) scored from their responses "
            "with the reference metric",
            path,
            from_responses,
        )
    if broken is not None:
        log.warning("%s:%d: last line is truncated (a run stopped while writing?); ignored", path, broken[0])
    filters = sorted({f for f, _l, _s in out})
    if len(filters) > 1:  # lm-eval writes one line per (question, filter)
        keep = _PREFERRED_FILTER if _PREFERRED_FILTER in filters else filters[0]
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
    if length is not None and (isinstance(length, bool) or not isinstance(length, int)):
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
        match = _BUCKET_KEY.match(name)
        if match:
            by_filter[match.group(2)][int(match.group(1))] = _number(value)
    if not by_filter:
        if any(name.startswith("bypass,") for name in task_results):
            raise ResultsError(
                f"{where}: a --predict_only run (metric 'bypass') has no scores; its samples file "
                "(samples_<task>_<timestamp>.jsonl beside it) is needed to score it"
            )
        raise ResultsError(f"{where}: no bucket_NN metrics (is this a VAL probing task?)")
    filt = _PREFERRED_FILTER if _PREFERRED_FILTER in by_filter else sorted(by_filter)[0]
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


def summary_from_dict(data: Mapping[str, Any], where: str) -> Summary:
    """Inverse of ``Summary.to_dict()`` (a ``score --json`` file)."""
    try:
        buckets = tuple(
            BucketStat(
                index=int(b["index"]),
                mean=float(b["mean"]),
                std=float(b["std"]) if b.get("std") is not None else NAN,
                ci=tuple(float(x) for x in b["ci"]) if b.get("ci") else (NAN, NAN),  # type: ignore[arg-type]
                n=int(b.get("n", 0)),
                n_sets=int(b.get("n_sets", 0)),
            )
            for b in data["buckets"]
        )
        if not buckets:
            raise ResultsError(f"{where}: 'buckets' is empty")
        recorded = int(data["n_buckets"]) if "n_buckets" in data else None
        n_buckets = bucket_count(recorded, (b.index for b in buckets)) or 1  # buckets is not empty
        return Summary(
            buckets=buckets,
            avg=float(data["avg"]),
            avg_ci=tuple(float(x) for x in data.get("avg_ci") or (NAN, NAN)),  # type: ignore[arg-type]
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


# ---------------------------------------------------------------- one file


def bucket_count(recorded: object, indices: Iterable[int]) -> int | None:
    """A saved run's bucket count: the one it recorded (a positive int), else one more than the
    highest bucket index it has; None when it has neither."""
    if isinstance(recorded, int) and not isinstance(recorded, bool) and recorded > 0:
        return recorded
    return max(indices, default=-1) + 1 or None


def _n_buckets(meta: Mapping[str, Any], task_results: Mapping[str, Any]) -> int | None:
    return bucket_count(
        meta.get("n_buckets"), (int(m.group(1)) for m in map(_BUCKET_KEY.match, task_results) if m)
    )


def _model_of_results(data: Mapping[str, Any], path: Path) -> str:
    for candidate in (data.get("model_name"), (data.get("config") or {}).get("model")):
        if isinstance(candidate, str) and candidate:
            return display_name(candidate)
    return path.parent.name or path.stem


def _samples_file(results_path: Path, task_name: str) -> Path | None:
    stamp = run_stamp(results_path)
    if stamp is None:
        return None
    candidate = results_path.parent / f"samples_{task_name}_{stamp}.jsonl"
    return candidate if candidate.is_file() else None


def _task_metadata(data: Mapping[str, Any], task_name: str) -> dict[str, Any]:
    config = data.get("config") or {}
    task_config = (data.get("configs") or {}).get(task_name) or {}
    meta = dict(task_config.get("metadata") or {})
    meta.update(
        model_args=config.get("model_args"),
        limit=config.get("limit"),
        lm_eval_version=data.get("lm_eval_version"),
        n_samples=(data.get("n-samples") or {}).get(task_name),
    )
    return meta


def _effective(meta: Mapping[str, Any]) -> int:
    """lm-eval's ``n-samples[task]["effective"]`` (questions asked), 0 when absent."""
    counts = meta.get("n_samples")
    value = counts.get("effective") if isinstance(counts, Mapping) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _length(value: object) -> int | None:
    """A context length from a doc or metadata: an int, or a list holding exactly one int.

    The tasks record the requested lengths as a list; several lengths in one run cannot be told
    apart from the aggregates alone (None), only from the samples' ``doc["context_length"]``.
    """
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def load_results_file(path: Path, *, n_boot: int | None = None, strict: bool = True) -> list[TaskResult]:
    """Every VAL task in one lm-eval results file or one ``score --json`` file.

    ``strict=False`` turns a task whose samples cannot be read into a warning (the other tasks of
    the file are still returned); with ``strict=True`` it is a :class:`ResultsError`.
    """
    path = Path(path)
    data = _read_json(path)
    if "results" in data and isinstance(data["results"], dict):
        return _from_lm_eval(path, data, n_boot=n_boot, strict=strict)
    if "task" in data and "buckets" in data:
        return [_from_score_json(path, data)]
    raise ResultsError(
        f"{path}: neither an lm-eval results file (no 'results') nor a 'val-probing score --json' "
        "file (no 'task' and 'buckets')"
    )


def _stem_model(path: Path, family: str) -> str:
    """``Mistral-7B_document.json`` -> ``Mistral-7B`` (the task suffix is dropped when present)."""
    for sep in ("_", "-", "."):
        if path.stem.endswith(sep + family) and len(path.stem) > len(family) + 1:
            return path.stem[: -len(family) - 1]
    return path.stem


def _from_score_json(path: Path, data: Mapping[str, Any]) -> TaskResult:
    task = data["task"]
    family = task if task in FAMILIES else task_family(str(task))
    if family is None:
        raise ResultsError(f"{path}: field 'task' = {task!r} is not one of {FAMILIES}")
    model = data.get("model")
    meta = {k: v for k, v in data.items() if k not in {"buckets", "avg", "gap", "avg_ci"}}
    return TaskResult(
        model=display_name(model) if isinstance(model, str) and model else _stem_model(path, family),
        task=family,
        source=path,
        context_length=_length(data.get("context_length")),
        metadata=MappingProxyType(meta),
        summary=summary_from_dict(data, str(path)),
        samples=(),
    )


def _from_lm_eval(
    path: Path, data: Mapping[str, Any], *, n_boot: int | None, strict: bool
) -> list[TaskResult]:
    model = _model_of_results(data, path)
    out: list[TaskResult] = []
    foreign: list[str] = []
    for task_name, task_results in data["results"].items():
        family = task_family(task_name)
        if family is None:
            foreign.append(task_name)
            continue
        meta = _task_metadata(data, task_name)
        n_buckets = _n_buckets(meta, task_results)
        samples_path = _samples_file(path, task_name)
        where = f"{path}: results[{task_name!r}]"
        if samples_path is None:
            log.info("%s: no samples file for %s; std and CIs are unknown", path, task_name)
            out.append(
                TaskResult(
                    model=model,
                    task=family,
                    source=path,
                    context_length=_length(meta.get("context_length")),
                    metadata=MappingProxyType(meta),
                    summary=summary_from_aggregates(
                        task_results, n_buckets=n_buckets, where=where, n_samples=_effective(meta)
                    ),
                    samples=(),
                )
            )
            continue
        if n_buckets is None:
            raise ResultsError(f"{where}: number of buckets unknown (no metadata.n_buckets, no bucket_NN)")
        try:
            out.extend(_from_samples(model, family, path, samples_path, meta, n_buckets, n_boot))
        except ResultsError as err:
            if strict:
                raise
            log.warning("%s skipped: %s", task_name, err)
    if foreign and not out:
        log.warning("%s: no VAL probing task in this file (found %s); skipped", path, ", ".join(foreign))
    elif foreign:
        log.debug("%s: ignoring non-VAL entries %s", path, ", ".join(foreign))
    return out


def _from_samples(
    model: str,
    family: str,
    path: Path,
    samples_path: Path,
    meta: Mapping[str, Any],
    n_buckets: int,
    n_boot: int | None,
) -> Iterator[TaskResult]:
    by_length: dict[int | None, list[ScoredSample]] = defaultdict(list)
    for length, sample in read_samples(samples_path):
        by_length[length if length is not None else _length(meta.get("context_length"))].append(sample)
    if not by_length:
        raise ResultsError(f"{samples_path}: no samples")
    summaries = summarize_by(
        ((length, s) for length, samples in by_length.items() for s in samples),
        n_buckets=n_buckets,
        n_boot=n_boot,
    )
    for length in sorted(by_length, key=lambda x: (x is None, x or 0)):
        samples = tuple(by_length[length])
        summary = summaries[length]
        yield TaskResult(
            model=model,
            task=family,
            source=path,
            context_length=length,
            metadata=MappingProxyType({**meta, "samples_file": str(samples_path)}),
            summary=summary,
            samples=samples,
        )


# ---------------------------------------------------------------- many paths


def find_results_files(path: Path) -> list[Path]:
    """Results files under a folder (recursive ``results_*.json``), or the file itself."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("results_*.json") if p.is_file())
    raise ResultsError(f"{path}: no such file or folder")


def _as_paths(paths: PathLike | Sequence[PathLike]) -> list[Path]:
    if isinstance(paths, str | os.PathLike):
        return [Path(paths)]
    if isinstance(paths, bytes) or not isinstance(paths, Sequence | set | frozenset):
        raise ResultsError(f"paths: expected a path or a list of paths, got {type(paths).__name__}")
    out = []
    for p in paths:
        if not isinstance(p, str | os.PathLike):
            raise ResultsError(f"paths: {p!r} is not a path")
        out.append(Path(p))
    return out


def load_results(
    paths: PathLike | Sequence[PathLike],
    *,
    latest_only: bool = True,
    n_boot: int | None = None,
) -> list[TaskResult]:
    """Load every VAL result under ``paths`` (see the module docstring).

    ``paths`` is one path (``str`` or ``Path``) or a list of them. ``n_boot``: bootstrap resamples
    for the CIs of results with samples (default ``None``: no CIs now; :func:`with_ci` or
    :func:`results_frame` compute them when needed).

    ``latest_only`` keeps the newest results file per (model, task, context length). Results are
    ordered by model, task (document, code, database) and context length. Raises
    :class:`ResultsError` when nothing can be loaded. A file named in ``paths`` must be readable
    (else :class:`ResultsError`); in a folder, unreadable results files and tasks whose samples
    cannot be read are skipped with a warning naming file, line and field.
    """
    paths = _as_paths(paths)
    loaded: list[TaskResult] = []
    for given in paths:
        files = find_results_files(Path(given))
        if not files:
            log.warning("%s: no lm-eval results_*.json found", given)
            continue
        found_here = 0
        scanned = Path(given).is_dir()
        for file in files:
            try:
                file_results = load_results_file(file, n_boot=n_boot, strict=not scanned)
            except ResultsError as err:
                if not scanned:
                    raise
                log.warning("skipped: %s", err)
                continue
            loaded.extend(file_results)
            found_here += len(file_results)
        if not found_here:
            log.warning("%s: no VAL probing results (tasks val_document, val_code, val_database)", given)
    if not loaded:
        raise ResultsError(
            "no VAL probing results in " + ", ".join(map(str, paths)) + " (expected lm-eval output "
            "folders with results_*.json for tasks val_document/val_code/val_database, or "
            "'val-probing score --json' files)"
        )
    results = keep_latest(loaded) if latest_only else loaded
    order: dict[str, int] = {f: i for i, f in enumerate(FAMILIES)}
    results.sort(key=lambda r: (r.model, order[r.task], r.context_length is None, r.context_length or 0))
    _warn_incomplete(results)
    return results


def keep_latest(results: Sequence[TaskResult]) -> list[TaskResult]:
    """The newest run (file-name timestamp, then path) per (model, task, context length), in order."""
    newest: dict[tuple[str, str, int | None], tuple[str, str]] = {}
    for r in results:
        key = (r.model, r.task, r.context_length)
        rank = (run_stamp(r.source) or "", str(r.source))
        if key not in newest or rank > newest[key]:
            newest[key] = rank
    return [r for r in results if newest[(r.model, r.task, r.context_length)][1] == str(r.source)]


def _warn_incomplete(results: Sequence[TaskResult]) -> None:
    tasks_of: dict[str, set[str]] = defaultdict(set)
    for r in results:
        tasks_of[r.model].add(r.task)
    for model, tasks in sorted(tasks_of.items()):
        missing = [f for f in FAMILIES if f not in tasks]
        if missing:
            log.warning("%s: no results for %s", model, ", ".join(missing))


# ---------------------------------------------------------------- CIs on request, DataFrames


def has_ci(result: TaskResult) -> bool:
    """True when the result's bucket CIs are known (computed from samples, or read from a file)."""
    return all(not math.isnan(b.ci[0]) for b in result.summary.buckets)


def with_ci(result: TaskResult, *, n_boot: int = DEFAULT_N_BOOT, seed: int = 0) -> TaskResult:
    """The result with bootstrap CIs: recomputed from its samples when they are not known yet.

    Results without samples (aggregates only) come back unchanged: their CIs cannot be known.
    """
    if has_ci(result) or not result.has_samples:
        return result
    summary = summarize(
        result.samples,
        n_buckets=result.summary.n_buckets,
        mode=result.summary.mode,
        n_boot=n_boot,
        seed=seed,
    )
    return replace(result, summary=summary)


def ensure_ci(
    results: Sequence[TaskResult], *, n_boot: int = DEFAULT_N_BOOT, seed: int = 0
) -> list[TaskResult]:
    """:func:`with_ci` for every result, order kept."""
    return [with_ci(r, n_boot=n_boot, seed=seed) for r in results]


FRAME_COLUMNS: tuple[str, ...] = (
    "model",
    "task",
    "context_length",
    "bucket",
    "position",
    "mean",
    "ci_low",
    "ci_high",
    "std",
    "n",
    "n_sets",
    "avg",
    "avg_ci_low",
    "avg_ci_high",
    "gap",
    "n_buckets",
    "has_samples",
    "source",
)


def frame_records(
    results: Sequence[TaskResult], *, n_boot: int = DEFAULT_N_BOOT, seed: int = 0
) -> list[dict[str, Any]]:
    """The rows of :func:`results_frame` as plain dicts (one per result x bucket, in order)."""
    rows: list[dict[str, Any]] = []
    for r in ensure_ci(results, n_boot=n_boot, seed=seed):
        s = r.summary
        for b in s.buckets:
            rows.append(
                {
                    "model": r.model,
                    "task": r.task,
                    "context_length": r.context_length,
                    "bucket": b.index,
                    "position": (b.index + 0.5) / s.n_buckets * 100,
                    "mean": b.mean,
                    "ci_low": b.ci[0],
                    "ci_high": b.ci[1],
                    "std": b.std,
                    "n": b.n,
                    "n_sets": b.n_sets,
                    "avg": s.avg,
                    "avg_ci_low": s.avg_ci[0],
                    "avg_ci_high": s.avg_ci[1],
                    "gap": s.gap,
                    "n_buckets": s.n_buckets,
                    "has_samples": r.has_samples,
                    "source": str(r.source),
                }
            )
    return rows


def results_frame(
    results: Sequence[TaskResult], *, n_boot: int = DEFAULT_N_BOOT, seed: int = 0
) -> pd.DataFrame:
    """A pandas DataFrame: one row per model x task x context length x bucket (:data:`FRAME_COLUMNS`).

    ``mean``, ``ci_low``/``ci_high`` (95% bootstrap CI, computed here from the samples with
    ``n_boot`` resamples when loading did not), ``std`` (across sets), ``n`` (questions) and
    ``n_sets`` describe the bucket; ``avg``, ``avg_ci_low``/``avg_ci_high`` and ``gap`` are the
    run's (repeated on its rows), all x100. ``position`` is the bucket's centre in % of the context.
    Results without samples have NaN CIs and std. Needs pandas (``pip install 'val-probing[plot]'``).
    """
    try:
        import pandas as pd
    except ModuleNotFoundError as err:
        raise ValProbingError(
            "results_frame needs pandas: pip install 'val-probing[plot]' (lm-eval installs it too)"
        ) from err
    frame = pd.DataFrame(frame_records(results, n_boot=n_boot, seed=seed), columns=list(FRAME_COLUMNS))
    return frame.astype({"context_length": "Int64"})
