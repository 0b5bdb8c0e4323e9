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
  :func:`val_probing.buckets.summarize` (per-set bucket means, population std across sets, bootstrap
  CIs), exactly as ``val-probing score`` does. When the samples cover several context lengths
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
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from val_probing.buckets import MODES, BucketStat, Mode, ScoredSample, Summary, summarize
from val_probing.errors import ValProbingError
from val_probing.records import FAMILIES

log = logging.getLogger(__name__)

TASK_PREFIX = "val_"
NAN = float("nan")
_BUCKET_KEY = re.compile(r"^bucket_(\d+),(.+)$")
_STAMP = re.compile(r"_(\d{4}-\d{2}-\d{2}T[\d\-.]+)\.json$")
_PREFERRED_FILTER = "none"


class ResultsError(ValProbingError, ValueError):
    """A results or samples file that cannot be read, naming the file, line and field."""


@dataclass(frozen=True, slots=True)
class SampleScore:
    """One scored question (reference metric, in [0, 1])."""

    set_id: int
    position_id: int
    n_items: int
    key: str
    score: float

    def __post_init__(self) -> None:
        # ScoredSample validates ids, ranges and the score; reuse it rather than repeat the rules.
        self.scored()

    def scored(self) -> ScoredSample:
        return ScoredSample(self.set_id, self.position_id, self.n_items, self.score)


@dataclass(frozen=True, slots=True)
class TaskResult:
    """One model's result on one task (at one context length)."""

    model: str
    task: str
    source: Path
    context_length: int | None
    metadata: Mapping[str, Any]
    summary: Summary
    samples: tuple[SampleScore, ...]

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


def read_samples(path: Path) -> list[tuple[int | None, SampleScore]]:
    """(context_length, sample) for every line of an lm-eval ``samples_<task>_*.jsonl`` file.

    The file is streamed (lm-eval lines carry the whole prompt: official runs are hundreds of MB).
    lm-eval writes one line per question and filter: with several filters, ``"none"`` (else the
    first by name) is read.
    A truncated last line (a run killed mid-write) is dropped with a warning; any other bad line
    is a :class:`ResultsError` naming the file, line and field.
    """
    out: list[tuple[str, int | None, SampleScore]] = []
    broken: tuple[int, json.JSONDecodeError] | None = None
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
            length, sample = _sample_from_line(obj, f"{path}:{lineno}")
            out.append((str(obj.get("filter", _PREFERRED_FILTER)), length, sample))
    if broken is not None:
        log.warning("%s:%d: last line is truncated (a run stopped while writing?); ignored", path, broken[0])
    filters = sorted({f for f, _l, _s in out})
    if len(filters) > 1:  # lm-eval writes one line per (question, filter)
        keep = _PREFERRED_FILTER if _PREFERRED_FILTER in filters else filters[0]
        log.info("%s: filters %s; reading filter %r", path, ", ".join(filters), keep)
        out = [row for row in out if row[0] == keep]
    return [(length, sample) for _f, length, sample in out]


def _sample_from_line(obj: object, where: str) -> tuple[int | None, SampleScore]:
    if not isinstance(obj, dict):
        raise ResultsError(f"{where}: expected a JSON object")
    doc = obj.get("doc")
    if not isinstance(doc, dict):
        raise ResultsError(f"{where}: missing field 'doc' (not an lm-eval samples line)")
    score = _number(obj.get("ref_score"))
    if score is None:
        raise ResultsError(
            f"{where}: field 'ref_score' must be a number in [0, 1], got {obj.get('ref_score')!r}"
        )
    length = doc.get("context_length")
    if length is not None and (isinstance(length, bool) or not isinstance(length, int)):
        raise ResultsError(f"{where}: field 'doc.context_length' must be an integer, got {length!r}")
    try:
        sample = SampleScore(
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
    return length, sample


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
        raise ResultsError(f"{where}: no bucket_NN metrics (is this a VAL probing task?)")
    filt = _PREFERRED_FILTER if _PREFERRED_FILTER in by_filter else sorted(by_filter)[0]
    values = by_filter[filt]
    total = n_buckets if n_buckets is not None else max(values) + 1
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
    if value not in MODES:
        raise ResultsError(f"{where}: field 'mode' = {value!r} is not one of {MODES}")
    return value  # type: ignore[return-value]


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
        n_buckets = int(data.get("n_buckets", max(b.index for b in buckets) + 1))
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


def _n_buckets(meta: Mapping[str, Any], task_results: Mapping[str, Any]) -> int | None:
    value = meta.get("n_buckets")
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    indices = [int(m.group(1)) for m in map(_BUCKET_KEY.match, task_results) if m]
    return max(indices) + 1 if indices else None


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


def load_results_file(path: Path, *, n_boot: int = 1000, strict: bool = True) -> list[TaskResult]:
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


def _from_lm_eval(path: Path, data: Mapping[str, Any], *, n_boot: int, strict: bool) -> list[TaskResult]:
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
    n_boot: int,
) -> Iterator[TaskResult]:
    by_length: dict[int | None, list[SampleScore]] = defaultdict(list)
    for length, sample in read_samples(samples_path):
        by_length[length if length is not None else _length(meta.get("context_length"))].append(sample)
    if not by_length:
        raise ResultsError(f"{samples_path}: no samples")
    for length in sorted(by_length, key=lambda x: (x is None, x or 0)):
        samples = tuple(by_length[length])
        summary = summarize((s.scored() for s in samples), n_buckets=n_buckets, n_boot=n_boot)
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


def load_results(paths: Sequence[Path], *, latest_only: bool = True, n_boot: int = 1000) -> list[TaskResult]:
    """Load every VAL result under ``paths`` (see the module docstring).

    ``latest_only`` keeps the newest results file per (model, task, context length). Results are
    ordered by model, task (document, code, database) and context length. Raises
    :class:`ResultsError` when nothing can be loaded. A file named in ``paths`` must be readable
    (else :class:`ResultsError`); in a folder, unreadable results files and tasks whose samples
    cannot be read are skipped with a warning naming file, line and field.
    """
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
    order = {f: i for i, f in enumerate(FAMILIES)}
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
