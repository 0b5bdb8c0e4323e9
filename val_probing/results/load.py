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

import logging
import os
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from val_probing.buckets import ScoredSample, summarize_by
from val_probing.records import FAMILIES
from val_probing.results.readers import (
    BUCKET_KEY,
    bucket_count,
    read_json,
    read_samples,
    summary_from_aggregates,
    summary_from_dict,
)
from val_probing.results.task_result import ResultsError, TaskResult, display_name, run_stamp, task_family
from val_probing.typed import is_int

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


def _n_buckets(meta: Mapping[str, Any], task_results: Mapping[str, Any]) -> int | None:
    return bucket_count(
        meta.get("n_buckets"), (int(m.group(1)) for m in map(BUCKET_KEY.match, task_results) if m)
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
    return value if is_int(value) else 0


def _length(value: object) -> int | None:
    """A context length from a doc or metadata: an int, or a list holding exactly one int.

    The tasks record the requested lengths as a list; several lengths in one run cannot be told
    apart from the aggregates alone (None), only from the samples' ``doc["context_length"]``.
    """
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value if is_int(value) else None


def load_results_file(path: Path, *, n_boot: int | None = None, strict: bool = True) -> list[TaskResult]:
    """Every VAL task in one lm-eval results file or one ``score --json`` file.

    ``strict=False`` turns a task whose samples cannot be read into a warning (the other tasks of
    the file are still returned); with ``strict=True`` it is a :class:`ResultsError`.
    """
    path = Path(path)
    data = read_json(path)
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

# The files of a run that the loader reads from its folder (lm-eval's --output_path layout): an output
# never replaces one (outputs.check_paths, input_files).
RUN_FILES = ("results_*.json", "samples_*.jsonl")


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
    closed_book: bool = False,
) -> list[TaskResult]:
    """Load every VAL result under ``paths`` (see the module docstring).

    ``paths`` is one path (``str`` or ``Path``) or a list of them. ``n_boot``: bootstrap resamples
    for the CIs of results with samples (default ``None``: no CIs now; :func:`with_ci` or
    :func:`results_frame` compute them when needed).

    ``closed_book``: also return closed-book runs (task metadata ``closed_book: true``, the
    questions without their context: floors, ``TaskResult.closed_book``). By default they are left
    out (logged), so one saved beside a run never enters a curve, a table or the gate as a run.

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
    floors = [r for r in loaded if r.closed_book]
    if floors and not closed_book:
        log.info("%d closed-book result(s) left out (floors: closed_book=True)", len(floors))
        loaded = [r for r in loaded if not r.closed_book]
        if not loaded:
            raise ResultsError(
                "only closed-book runs in " + ", ".join(map(str, paths)) + ": they are floors of a run "
                "with the context, not runs (load them with closed_book=True)"
            )
    results = keep_latest(loaded) if latest_only else loaded
    order: dict[str, int] = {f: i for i, f in enumerate(FAMILIES)}
    results.sort(key=lambda r: (r.model, order[r.task], r.context_length is None, r.context_length or 0))
    _warn_incomplete(results)
    return results


def keep_latest(results: Sequence[TaskResult]) -> list[TaskResult]:
    """The newest run (file-name timestamp, then path) per (model, task, context length, closed
    book or not), in order: a closed-book run never replaces the run with the context."""
    newest: dict[tuple[str, str, int | None, bool], tuple[str, str]] = {}
    for r in results:
        key = (r.model, r.task, r.context_length, r.closed_book)
        rank = (run_stamp(r.source) or "", str(r.source))
        if key not in newest or rank > newest[key]:
            newest[key] = rank
    return [
        r for r in results if newest[(r.model, r.task, r.context_length, r.closed_book)][1] == str(r.source)
    ]


def _warn_incomplete(results: Sequence[TaskResult]) -> None:
    tasks_of: dict[str, set[str]] = defaultdict(set)
    for r in results:
        tasks_of[r.model].add(r.task)
    for model, tasks in sorted(tasks_of.items()):
        missing = [f for f in FAMILIES if f not in tasks]
        if missing:
            log.warning("%s: no results for %s", model, ", ".join(missing))
