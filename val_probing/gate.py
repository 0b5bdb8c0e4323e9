"""The CI regression gate: a baseline file, and a check of a new run against it.

A **baseline** (YAML, human-editable, strict schema in docs/ci-gate.md) records, per task, the
expected ``avg``, ``gap`` and bucket means (x100), the run settings that produced them (context
length, buckets, limit, seed, probe source/pool/version/hash) and tolerances; beside it a JSONL file
keeps the per-sample reference scores, so a check can PAIR each question of the new run with the
same question of the baseline run, matched on ``(set_id, position_id, key)``. The two files are one
unit: the samples file is content-addressed and the YAML records its sha256 (see
:func:`write_baseline`).

A **check** compares every task's ``avg``, ``gap`` and every bucket:

* With samples on both sides (the normal case: ``lm_eval --log_samples``), each metric is a
  one-sided paired permutation test of "the new run is worse" (lower avg / bucket mean, larger
  gap): under "no change" the two outcomes of a question are exchangeable, so swapping them for any
  subset of questions is equally likely. Its size is at most alpha at every run size.

  - avg and bucket means are linear in the scores (the weights of
    :func:`val_probing.buckets.summarize`): a sign-flip test of the weighted paired differences,
    exactly McNemar's test for 0/1 scores in equal cells (:func:`sign_flip_p`).
  - gap (max - min of the bucket means) is recomputed for swapped subsets
    (:func:`gap_permutation_p`); it fails only if the run's lowest bucket is also below the
    baseline's (a curve that rose everywhere, unevenly, is not a regression).

  A metric is tested only when every bucket it depends on holds ``statistics.min_questions``
  paired questions; below that it is reported as ``low power`` and does not fail (unless
  ``fail_low_power``). The p-values of the tested metrics of a check (every task) are corrected
  together with Holm's method. A metric FAILS only when its Holm-adjusted p-value is below
  ``alpha`` AND its change is at least its tolerance (the minimum effect worth failing a build).

* Without samples on either side, the check falls back to the tolerances alone (a metric fails
  when it is worse by more than its tolerance) and says so in every output.

Unusable input (different settings or probe hash, a task missing, samples that do not match, a
baseline pair whose hash does not match) is a :class:`GateInputError`: the CLI exits 2. A check
never passes silently. bench/bench_gate.py measures the false-alarm rate and power by simulation.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from pathlib import Path
from typing import Any, Literal
from xml.etree import ElementTree

import numpy as np
import yaml

from val_probing.buckets import bucket_of
from val_probing.errors import ValProbingError
from val_probing.outputs import check_output_file, writing
from val_probing.records import FAMILIES, write_text_atomic
from val_probing.results import (
    ResultsError,
    SampleScore,
    TaskResult,
    display_name,
    find_results_files,
    load_results,
    load_results_file,
)

FORMAT = 2  # 2: the samples file is content-addressed and its sha256 recorded (format 1 is refused)
# Run settings that must agree between a baseline and a check (read from the results file).
SETTINGS = (
    "context_length",
    "n_buckets",
    "limit",
    "seed",
    "source",
    "pool",
    "probe_version",
    "probe_hash",
)
Status = Literal["pass", "fail", "low power"]


class MetricKind(Enum):
    """What a compared number is; its value names the tolerance that applies."""

    AVG = "avg"
    GAP = "gap"
    BUCKET = "bucket"


class GateInputError(ValProbingError):
    """A baseline or run that cannot be compared (the check exits 2)."""


# --------------------------------------------------------------------------------------------------
# Configuration


def _number(name: str, value: object, rule: str, ok: Callable[[float], bool]) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not ok(float(value)):
        raise ValueError(f"{name}: expected {rule}, got {value!r}")


def _integer(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True, slots=True)
class Tolerances:
    """Smallest change (x100 points) that fails a build: a drop of avg or a bucket, a rise of gap."""

    avg: float = 2.0
    gap: float = 10.0
    bucket: float = 10.0

    def __post_init__(self) -> None:
        for f in fields(self):
            _number(f.name, getattr(self, f.name), "a number >= 0", lambda x: x >= 0)

    def for_metric(self, kind: MetricKind) -> float:
        return float(getattr(self, kind.value))

    def to_dict(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class Statistics:
    """Paired tests: one-sided level ``alpha`` after Holm's correction; resamples for p-values.

    ``min_questions``: a metric is tested (can fail the build) only when every bucket it depends on
    holds at least this many paired questions (avg: the whole task; a bucket: itself; gap: every
    bucket). Below that it is reported as ``low power`` and left out of the Holm family, unless
    ``fail_low_power`` is true.
    """

    alpha: float = 0.05
    resamples: int = 4000
    seed: int = 0
    min_questions: int = 16
    fail_low_power: bool = False

    def __post_init__(self) -> None:
        _number("alpha", self.alpha, "a number with 0 < alpha < 1", lambda x: 0 < x < 1)
        _integer("resamples", self.resamples, 100)
        _integer("seed", self.seed, 0)
        _integer("min_questions", self.min_questions, 1)
        if not isinstance(self.fail_low_power, bool):
            raise ValueError(f"fail_low_power: expected true or false, got {self.fail_low_power!r}")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class BaselineTask:
    """Expected numbers (x100) and settings of one task."""

    task: str
    settings: Mapping[str, Any]
    avg: float
    gap: float
    buckets: Mapping[int, float]
    n_samples: int
    tolerances: Tolerances
    samples: tuple[SampleScore, ...] | None = None


@dataclass(frozen=True, slots=True)
class Baseline:
    model: str
    tasks: Mapping[str, BaselineTask]
    statistics: Statistics = field(default_factory=Statistics)
    tolerances: Tolerances = field(default_factory=Tolerances)
    created_from: str = ""

    @property
    def has_samples(self) -> bool:
        return all(t.samples is not None for t in self.tasks.values())


def run_settings(result: TaskResult) -> dict[str, Any]:
    """The :data:`SETTINGS` of a loaded result (None where the results file does not record one)."""
    settings = {name: result.metadata.get(name) for name in SETTINGS}
    if settings["context_length"] is None:
        settings["context_length"] = result.context_length
    if settings["n_buckets"] is None:
        settings["n_buckets"] = result.summary.n_buckets
    return settings


def _one_model(results: Sequence[TaskResult], what: str) -> str:
    names = sorted({r.model for r in results})
    if len(names) != 1:
        raise GateInputError(
            f"{what} holds {len(names)} models ({', '.join(names)}); give the folder of one model "
            "(lm_eval's <output_path>/<model_name_sanitized>) or pass --model"
        )
    return names[0]


def _by_task(results: Sequence[TaskResult], what: str) -> dict[str, TaskResult]:
    out: dict[str, TaskResult] = {}
    for r in results:
        if r.task in out:
            raise GateInputError(
                f"{what}: {r.task} appears twice (context lengths {out[r.task].context_length} and "
                f"{r.context_length}); a baseline covers one run at one context length"
            )
        out[r.task] = r
    return out


def make_baseline(
    results: Sequence[TaskResult],
    *,
    tolerances: Tolerances | None = None,
    statistics: Statistics | None = None,
    created_from: str = "",
) -> Baseline:
    """A baseline from the results of one model's run (samples kept when the run logged them)."""
    if not results:
        raise GateInputError("no results to make a baseline from")
    model = _one_model(results, "the run")
    tol = tolerances or Tolerances()
    tasks = {}
    for task, r in _by_task(results, "the run").items():
        tasks[task] = BaselineTask(
            task=task,
            settings=run_settings(r),
            avg=r.summary.avg,
            gap=r.summary.gap,
            buckets={b.index: b.mean for b in r.summary.buckets},
            n_samples=len(r.samples) if r.has_samples else r.summary.n_samples,
            tolerances=tol,
            samples=r.samples if r.has_samples else None,
        )
    return Baseline(model, tasks, statistics or Statistics(), tol, created_from)


# --------------------------------------------------------------------------------------------------
# Baseline files
#
# The YAML and its samples file are one unit. The samples are written first, under a name that
# carries their content hash (``baseline.samples.<sha256[:12]>.jsonl``), then the YAML, atomically,
# naming that file and its full sha256. A reader therefore sees the old pair or the new pair, never a
# mix: until the YAML is replaced it still names the old samples file, which is only removed after.
# ``read_baseline`` verifies the hash (a mismatch is exit 2).

SAMPLE_FIELDS = ("task", "set_id", "position_id", "n_items", "key", "score")
_TOP_KEYS = ("format", "model", "created_from", "samples", "samples_sha256", "statistics", "tolerances",
             "tasks")  # fmt: skip
_TASK_KEYS = ("settings", "avg", "gap", "n_samples", "buckets", "tolerances")


def samples_path_for(path: Path, sha256: str) -> Path:
    """``ci/baseline.yaml`` + hash -> ``ci/baseline.samples.<sha256[:12]>.jsonl`` (beside it)."""
    return path.with_name(f"{path.stem}.samples.{sha256[:12]}.jsonl")


def _is_samples_file_of(path: Path, candidate: Path) -> bool:
    """Whether ``candidate`` is a samples file that ``write_baseline`` may have written for ``path``."""
    stem = f"{path.stem}.samples."
    return (
        candidate.parent == path.parent and candidate.name.startswith(stem) and candidate.suffix == ".jsonl"
    )


def _round(x: float) -> float:
    return round(float(x), 4)


def baseline_to_yaml(baseline: Baseline, samples_file: str | None, samples_sha256: str | None) -> str:
    data: dict[str, Any] = {
        "format": FORMAT,
        "model": baseline.model,
        "created_from": baseline.created_from,
        "samples": samples_file,
        "samples_sha256": samples_sha256,
        "statistics": baseline.statistics.to_dict(),
        "tolerances": baseline.tolerances.to_dict(),
        "tasks": {},
    }
    for name in sorted(baseline.tasks, key=_task_order):
        t = baseline.tasks[name]
        entry: dict[str, Any] = {
            "settings": dict(t.settings),
            "avg": _round(t.avg),
            "gap": _round(t.gap),
            "n_samples": t.n_samples,
            "buckets": {i: _round(v) for i, v in sorted(t.buckets.items())},
        }
        if t.tolerances != baseline.tolerances:
            entry["tolerances"] = t.tolerances.to_dict()
        data["tasks"][name] = entry
    header = (
        "# val-probing CI baseline: expected scores (x100) of one run; edit tolerances freely.\n"
        "# Schema: docs/ci-gate.md. Written by `val-probing baseline`. Commit it with the samples file.\n"
    )
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def _task_order(task: str) -> tuple[int, str]:
    return (FAMILIES.index(task) if task in FAMILIES else len(FAMILIES), task)  # type: ignore[arg-type]


def samples_text(baseline: Baseline) -> str:
    """The samples file's exact content (one JSON object per question, tasks in family order)."""
    lines = [
        json.dumps({"task": name, "set_id": s.set_id, "position_id": s.position_id, "n_items": s.n_items,
                    "key": s.key, "score": s.score}, ensure_ascii=False, sort_keys=True)
        for name in sorted(baseline.tasks, key=_task_order)
        for s in baseline.tasks[name].samples or ()
    ]  # fmt: skip
    return "".join(line + "\n" for line in lines)


def _previous_samples_file(path: Path) -> Path | None:
    """The samples file the baseline now at ``path`` names (to remove once it is replaced)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None  # not a baseline we wrote: nothing of ours to clean up
    name = data.get("samples") if isinstance(data, dict) else None
    if not isinstance(name, str) or Path(name).name != name:
        return None
    candidate = path.parent / name
    return candidate if _is_samples_file_of(path, candidate) else None


def write_baseline(baseline: Baseline, path: Path) -> list[Path]:
    """Write the baseline as one unit (see above). Returns the files written, the YAML first.

    A failure leaves the previous pair as it was and no new file behind (an ``OutputError`` names
    the path).
    """
    path = check_output_file(path, "baseline YAML")
    previous = _previous_samples_file(path) if path.is_file() else None
    if not baseline.has_samples:
        write_text_atomic(path, baseline_to_yaml(baseline, None, None))
        written = [path]
    else:
        text = samples_text(baseline)
        sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
        spath = samples_path_for(path, sha)
        existed = spath.exists()
        write_text_atomic(spath, text)
        try:
            write_text_atomic(path, baseline_to_yaml(baseline, spath.name, sha))
        except BaseException:
            if not existed:
                spath.unlink(missing_ok=True)
            raise
        written = [path, spath]
    if previous is not None and previous not in written:
        with writing(previous, "old samples file (remove it by hand)"):
            previous.unlink(missing_ok=True)
    return written


class _StrictLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice (YAML would silently keep the last one)."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _value in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def _check_keys(obj: Mapping[Any, Any], allowed: Sequence[str], where: str) -> None:
    """Unknown keys are errors naming the key and the closest valid one."""
    for key in obj:
        if key in allowed:
            continue
        close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}?" if close else f"expected one of {', '.join(allowed)}"
        raise GateInputError(f"{where}: unknown key {key!r} ({hint})")


def _mapping(obj: Mapping[str, Any], name: str, where: str, *, required: bool = True) -> dict[Any, Any]:
    if name not in obj or obj[name] is None:
        if required:
            raise GateInputError(f"{where}: missing field {name!r} (a mapping)")
        return {}
    value = obj[name]
    if not isinstance(value, dict):
        raise GateInputError(f"{where}.{name}: expected a mapping, got {value!r}")
    return value


def _field(
    obj: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: str, expected: str
) -> Any:
    if name not in obj:
        raise GateInputError(f"{where}: missing field {name!r} ({expected})")
    value = obj[name]
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise GateInputError(f"{where}.{name}: expected {expected}, got {value!r}")
    return value


def _build(cls: type[Any], obj: Mapping[str, Any], base: Any, where: str) -> Any:
    """``Tolerances`` / ``Statistics`` from a YAML mapping: known keys only, values checked."""
    _check_keys(obj, [f.name for f in fields(cls)], where)
    try:
        return replace(base, **obj)
    except ValueError as err:
        raise GateInputError(f"{where}.{err}") from err


def read_baseline(path: Path) -> Baseline:
    """Parse and validate a baseline file and its samples file; errors name the file and field."""
    path = Path(path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)
    except FileNotFoundError as err:
        raise GateInputError(f"{path}: no such baseline file") from err
    except IsADirectoryError as err:
        raise GateInputError(f"{path}: is a folder, not a baseline file") from err
    except (OSError, UnicodeDecodeError) as err:
        raise GateInputError(f"{path}: cannot read the baseline ({err})") from err
    except yaml.YAMLError as err:
        raise GateInputError(f"{path}: not valid YAML ({err})") from err
    where = str(path)
    if not isinstance(data, dict):
        raise GateInputError(f"{where}: expected a mapping at the top level")
    if data.get("format") == 1:
        raise GateInputError(
            f"{where}: a format-1 baseline (written by an older val-probing, without the samples "
            f"file's hash); re-create it: val-probing baseline RUN_DIR --out {path}"
        )
    if data.get("format") != FORMAT:
        raise GateInputError(f"{where}.format: expected {FORMAT}, got {data.get('format')!r}")
    _check_keys(data, _TOP_KEYS, where)
    statistics = _build(Statistics, _mapping(data, "statistics", where, required=False), Statistics(),
                        f"{where}: statistics")  # fmt: skip
    tolerances = _build(Tolerances, _mapping(data, "tolerances", where, required=False), Tolerances(),
                        f"{where}: tolerances")  # fmt: skip
    tasks_obj = _mapping(data, "tasks", where)
    if not tasks_obj:
        raise GateInputError(f"{where}: 'tasks' is empty")
    _check_keys(tasks_obj, FAMILIES, f"{where}: tasks")
    samples = _read_baseline_samples(path, data)
    if samples is not None and set(samples) != set(tasks_obj):
        raise GateInputError(
            f"{where}: task mismatch: the YAML has tasks {', '.join(sorted(tasks_obj, key=_task_order))} "
            f"but the samples file has {', '.join(sorted(samples, key=_task_order)) or 'none'} "
            "(was a task renamed or removed? re-create the baseline)"
        )
    tasks = {}
    for name, obj in tasks_obj.items():
        tw = f"{where}: tasks.{name}"
        if not isinstance(obj, dict):
            raise GateInputError(f"{tw}: expected a mapping, got {obj!r}")
        _check_keys(obj, _TASK_KEYS, tw)
        settings = _mapping(obj, "settings", tw)
        _check_keys(settings, SETTINGS, f"{tw}.settings")
        buckets_obj = _mapping(obj, "buckets", tw)
        buckets = {}
        for k, v in buckets_obj.items():
            if (
                isinstance(k, bool)
                or not isinstance(k, int)
                or isinstance(v, bool)
                or not isinstance(v, int | float)
            ):
                raise GateInputError(f"{tw}.buckets: expected bucket index: score, got {k!r}: {v!r}")
            buckets[k] = float(v)
        n_samples = _field(obj, "n_samples", int, tw, "an integer")
        task_samples = None
        if samples is not None:
            task_samples = tuple(samples[name])
            if len(task_samples) != n_samples:
                raise GateInputError(
                    f"{tw}: n_samples is {n_samples} but the samples file has {len(task_samples)} "
                    "for this task"
                )
        tasks[name] = BaselineTask(
            task=name,
            settings={k: settings.get(k) for k in SETTINGS},
            avg=float(_field(obj, "avg", (int, float), tw, "a number")),
            gap=float(_field(obj, "gap", (int, float), tw, "a number")),
            buckets=buckets,
            n_samples=n_samples,
            tolerances=_build(Tolerances, _mapping(obj, "tolerances", tw, required=False), tolerances,
                              f"{tw}.tolerances"),
            samples=task_samples,
        )  # fmt: skip
    created_from = data.get("created_from")
    if created_from is not None and not isinstance(created_from, str):
        raise GateInputError(f"{where}.created_from: expected text, got {created_from!r}")
    return Baseline(
        model=str(_field(data, "model", str, where, "the model name")),
        tasks=tasks,
        statistics=statistics,
        tolerances=tolerances,
        created_from=created_from or "",
    )


def _read_baseline_samples(path: Path, data: Mapping[str, Any]) -> dict[str, list[SampleScore]] | None:
    name, sha = data.get("samples"), data.get("samples_sha256")
    if name is None:
        if sha is not None:
            raise GateInputError(f"{path}: 'samples_sha256' is set but 'samples' is null")
        return None
    if not isinstance(name, str) or Path(name).name != name:
        raise GateInputError(f"{path}.samples: expected a file name beside the YAML or null, got {name!r}")
    if not isinstance(sha, str):
        raise GateInputError(f"{path}.samples_sha256: expected the samples file's sha256, got {sha!r}")
    spath = path.parent / name
    try:
        raw = spath.read_bytes()
    except FileNotFoundError as err:
        raise GateInputError(
            f"{path}: samples file {spath} is missing (commit it with the YAML, or set "
            "'samples: null' and 'samples_sha256: null' to go without)"
        ) from err
    except OSError as err:
        raise GateInputError(f"{spath}: cannot read the baseline samples ({err.strerror or err})") from err
    actual = hashlib.sha256(raw).hexdigest()
    if actual != sha:
        raise GateInputError(
            f"{spath}: does not match its baseline {path} (sha256 {actual[:12]}..., the YAML records "
            f"{sha[:12]}...): the pair is mixed or edited; re-create the baseline"
        )
    out: dict[str, list[SampleScore]] = defaultdict(list)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise GateInputError(f"{spath}: not UTF-8 text ({err.reason})") from err
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        at = f"{spath}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise GateInputError(f"{at}: malformed JSON ({err.msg})") from err
        if not isinstance(obj, dict):
            raise GateInputError(f"{at}: expected a JSON object")
        _check_keys(obj, SAMPLE_FIELDS, at)
        missing = [f for f in SAMPLE_FIELDS if f not in obj]
        if missing:
            raise GateInputError(f"{at}: missing field {missing[0]!r}")
        try:
            out[str(obj["task"])].append(
                SampleScore(obj["set_id"], obj["position_id"], obj["n_items"], str(obj["key"]), obj["score"])
            )
        except (TypeError, ValueError) as err:
            raise GateInputError(f"{at}: bad sample ({err})") from err
    return dict(out)


# --------------------------------------------------------------------------------------------------
# Comparison


@dataclass(frozen=True, slots=True)
class MetricCheck:
    """One compared number. ``change`` is signed so that positive = worse (drop, or gap rise)."""

    task: str
    metric: str  # its name: "avg", "gap" or "bucket_NN" (see metric_name)
    kind: MetricKind
    baseline: float
    current: float
    change: float
    tolerance: float
    method: str  # "McNemar exact", "sign-flip", "permutation", ... or "tolerance"
    p_value: float | None = None
    p_adjusted: float | None = None  # None: not in the Holm family (low power, or tolerance only)
    status: Status = "pass"
    questions: int | None = None  # fewest paired questions in a bucket it depends on (avg: all)
    floor_dropped: bool = True  # gap: whether the run's lowest bucket is below the baseline's


@dataclass(frozen=True, slots=True)
class GateResult:
    model: str
    checks: tuple[MetricCheck, ...]
    paired: bool
    alpha: float
    notes: tuple[str, ...] = ()

    @property
    def failures(self) -> tuple[MetricCheck, ...]:
        return tuple(c for c in self.checks if c.status == "fail")

    @property
    def passed(self) -> bool:
        return not self.failures


def _settings_problems(
    baseline: Baseline, current: Mapping[str, TaskResult], ignore: frozenset[str]
) -> list[str]:
    problems = []
    missing = [t for t in baseline.tasks if t not in current]
    if missing:
        problems.append(f"tasks missing from the run: {', '.join(missing)}")
    for name, t in baseline.tasks.items():
        if name not in current:
            continue
        now = run_settings(current[name])
        for key in SETTINGS:
            if key not in ignore and t.settings.get(key) != now[key]:
                problems.append(f"{name}.{key}: baseline {t.settings.get(key)!r}, run {now[key]!r}")
    return problems


@dataclass(frozen=True, slots=True)
class _Paired:
    """Matched samples of one task: scores (n,) of both runs and each sample's set-bucket cell."""

    old: np.ndarray
    new: np.ndarray
    cell: np.ndarray  # cell id per sample
    cell_bucket: np.ndarray  # bucket of each cell
    cell_size: np.ndarray
    bucket_sets: dict[int, int]  # bucket -> number of sets that have it
    matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (n, buckets): see _bucket_matrix
    column: Mapping[int, int] = field(default_factory=dict)  # bucket -> its column of matrix
    binary: bool = False  # every score on both sides is 0 or 1


def _pair(name: str, old: Sequence[SampleScore], new: Sequence[SampleScore], n_buckets: int) -> _Paired:
    def index(samples: Sequence[SampleScore], which: str) -> dict[tuple[int, int, str], SampleScore]:
        out: dict[tuple[int, int, str], SampleScore] = {}
        for s in samples:
            k = (s.set_id, s.position_id, s.key)
            if k in out:
                raise GateInputError(f"{name}: the {which} has two samples for (set, position, key) {k}")
            out[k] = s
        return out

    a, b = index(old, "baseline"), index(new, "run")
    only_a, only_b = a.keys() - b.keys(), b.keys() - a.keys()
    if only_a or only_b:
        example = sorted(only_a or only_b)[0]
        raise GateInputError(
            f"{name}: the samples do not match: {len(only_a)} baseline questions are not in the run "
            f"and {len(only_b)} run questions are not in the baseline (e.g. (set, position, key) "
            f"{example}); same probes and --limit are needed"
        )
    keys = sorted(a)
    cells: dict[tuple[int, int], int] = {}
    cell_of = np.empty(len(keys), dtype=np.int64)
    for i, k in enumerate(keys):
        s = a[k]
        bucket = bucket_of(s.position_id, s.n_items, n_buckets)
        cell_of[i] = cells.setdefault((s.set_id, bucket), len(cells))
    cell_bucket = np.empty(len(cells), dtype=np.int64)
    for (_set_id, bucket), c in cells.items():
        cell_bucket[c] = bucket
    sets_per_bucket: dict[int, int] = defaultdict(int)
    for _set_id, bucket in cells:
        sets_per_bucket[bucket] += 1
    p = _Paired(
        old=np.array([a[k].score for k in keys]),
        new=np.array([b[k].score for k in keys]),
        cell=cell_of,
        cell_bucket=cell_bucket,
        cell_size=np.bincount(cell_of, minlength=len(cells)),
        bucket_sets=dict(sets_per_bucket),
    )
    scores = np.concatenate([p.old, p.new])
    return replace(
        p,
        matrix=_bucket_matrix(p),
        column={b: j for j, b in enumerate(sorted(p.bucket_sets))},
        binary=bool(((scores == 0) | (scores == 1)).all()),
    )


def _bucket_matrix(p: _Paired) -> np.ndarray:
    """(n, n_present_buckets) weights: ``scores @ M`` gives every bucket mean at once, as summarize does
    (the mean over sets of per-set cell means); the avg is the mean of its columns."""
    sample_bucket = p.cell_bucket[p.cell]
    sets = np.zeros(int(p.cell_bucket.max()) + 1)
    for b, n in p.bucket_sets.items():
        sets[b] = n
    w = 1.0 / (p.cell_size[p.cell] * sets[sample_bucket])
    return np.stack([np.where(sample_bucket == b, w, 0.0) for b in sorted(p.bucket_sets)], axis=1)


EXACT_MAX = 12  # up to this many changed questions, p-values enumerate all 2**n swaps exactly


def _swap_masks(n: int) -> np.ndarray:
    """Every subset of ``n`` questions as 0/1 rows, shape (2**n, n): the exact permutation set."""
    return ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(np.float64)


SEQUENTIAL_HITS = 20  # Monte Carlo stops after this many resamples at least as extreme as observed


def monte_carlo_p(
    extreme: Callable[[np.ndarray], np.ndarray], n: int, rng: np.random.Generator, resamples: int
) -> float:
    """A Monte Carlo permutation p-value from random 0/1 swap rows of length ``n``.

    ``extreme(masks)`` says, per row, whether that swap's statistic is at least as extreme as the
    observed one. Besag & Clifford's sequential p-value (1991): draw until :data:`SEQUENTIAL_HITS`
    extreme rows (then p = hits / rows drawn) or ``resamples`` rows (then p = (k + 1) /
    (resamples + 1)). Both are exact p-values (size at most the level); a clear "no change" stops
    after a few dozen rows, a real drop uses every resample.
    """
    done = hits = 0
    rows = 64
    cap = max(1, 2_000_000 // max(1, n))  # bounded memory per chunk
    while done < resamples:
        rows = min(rows, cap, resamples - done)
        bits = np.unpackbits(rng.integers(0, 256, size=(rows, (n + 7) // 8), dtype=np.uint8), axis=1)
        found = np.flatnonzero(extreme(bits[:, :n].astype(np.float64)))  # fair coin flips, 8 per byte
        if hits + found.size >= SEQUENTIAL_HITS:
            return SEQUENTIAL_HITS / (done + int(found[SEQUENTIAL_HITS - hits - 1]) + 1)
        hits += found.size
        done += rows
        rows *= 2
    return (1 + hits) / (1 + resamples)


def sign_flip_p(
    terms: np.ndarray, rng: np.random.Generator, resamples: int, *, binary: bool = True
) -> tuple[float, str]:
    """One-sided p-value of ``sum(terms)`` being this low if each term's sign were a coin flip.

    A term is one question's weighted paired difference; swapping the two runs' outcomes of a
    question flips its sign, so this is the paired permutation test of a linear metric. When every
    non-zero term has the same size the exact binomial tail is returned (for 0/1 scores that is
    McNemar's exact test); with at most :data:`EXACT_MAX` changed questions all sign patterns are
    enumerated; otherwise ``resamples`` random sign flips, with the (k + 1) / (n + 1) correction.
    """
    nz = terms[terms != 0]
    if nz.size == 0:
        return 1.0, "no change"
    size = np.abs(nz)
    observed = nz.sum() + 1e-12 * size.sum()
    if np.allclose(size, size[0], rtol=1e-9, atol=0):
        m, k = nz.size, int((nz < 0).sum())  # p = P(Binom(m, 1/2) >= k)
        tail = sum(math.comb(m, j) for j in range(k, m + 1))
        return min(1.0, tail / 2**m), "McNemar exact" if binary else "sign test (exact)"
    if nz.size <= EXACT_MAX:
        sums = size.sum() - 2 * (_swap_masks(nz.size) @ size)
        return float((sums <= observed).mean()), "sign-flip (exact)"
    total = size.sum()  # a flipped row's sum is total - 2 * (the flipped sizes)
    return monte_carlo_p(lambda m: total - 2 * (m @ size) <= observed, nz.size, rng, resamples), "sign-flip"


def _spread(means: np.ndarray) -> np.ndarray:
    return means.max(axis=-1) - means.min(axis=-1)


def gap_permutation_p(p: _Paired, rng: np.random.Generator, resamples: int) -> tuple[float, str]:
    """One-sided p-value of "the gap grew": the paired permutation test of the gap difference.

    Under "no change" the two outcomes of each question are exchangeable, so swapping them for any
    subset of questions gives an equally likely pair of runs. The statistic is
    ``gap(run) - gap(baseline)``, computed as summarize does (cell means, the mean over sets per
    bucket, max - min). Only questions whose outcomes differ move it: with at most
    :data:`EXACT_MAX` of them every subset is enumerated (exact p-value), otherwise ``resamples``
    random subsets with the (k + 1) / (n + 1) correction. Either way the test's size is at most its
    level at any run size, unlike a bootstrap.
    """
    matrix = p.matrix
    old_means, new_means = p.old @ matrix, p.new @ matrix
    changed = np.flatnonzero(p.old != p.new)
    if changed.size == 0:
        return 1.0, "no change"
    # swapping question i moves the run's bucket means by shift_i and the baseline's by -shift_i
    shift = matrix[changed] * (p.old - p.new)[changed, None]
    observed = float(_spread(new_means) - _spread(old_means)) - 1e-12

    def stats(masks: np.ndarray) -> np.ndarray:
        moved = masks @ shift
        return _spread(new_means + moved) - _spread(old_means - moved)

    if changed.size <= EXACT_MAX:
        return float((stats(_swap_masks(changed.size)) >= observed).mean()), "permutation (exact)"
    return monte_carlo_p(lambda m: stats(m) >= observed, changed.size, rng, resamples), "permutation"


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def resamples_for(stats: Statistics, n_tests: int) -> int:
    """Resamples for Monte Carlo p-values: at least ``10 * n_tests / alpha``.

    A Monte Carlo p-value is never below ``1 / (resamples + 1)``; after Holm the smallest one is
    multiplied by the number of tests, so too few resamples could make a clear drop unfailable.
    """
    return max(stats.resamples, math.ceil(10 * max(1, n_tests) / stats.alpha))


@dataclass(frozen=True, slots=True)
class _Planned:
    """One metric of one paired task, before its p-value: what it needs and whether it is tested."""

    task: str
    kind: MetricKind
    bucket: int | None
    questions: int  # the fewest paired questions in a bucket it depends on (avg: the whole task)
    tested: bool  # in the Holm family (can fail the build)


def _plan(name: str, p: _Paired, stats: Statistics) -> list[_Planned]:
    per_bucket = {b: int(n) for b, n in enumerate(np.bincount(p.cell_bucket[p.cell])) if n}
    rows = [(MetricKind.AVG, None, int(p.old.size))]
    rows += [(MetricKind.BUCKET, b, per_bucket[b]) for b in sorted(p.bucket_sets)]
    rows.append((MetricKind.GAP, None, min(per_bucket.values())))
    return [
        _Planned(name, kind, b, n, stats.fail_low_power or n >= stats.min_questions) for kind, b, n in rows
    ]


def metric_name(kind: MetricKind, bucket: int | None = None) -> str:
    """The metric's name in every output: ``avg``, ``gap`` or ``bucket_NN``."""
    return f"bucket_{bucket:02d}" if kind is MetricKind.BUCKET else kind.value


def _paired_check(
    plan: _Planned, t: BaselineTask, p: _Paired, rng: np.random.Generator, resamples: int
) -> MetricCheck:
    tolerance = t.tolerances.for_metric(plan.kind)
    name = metric_name(plan.kind, plan.bucket)
    if plan.kind is MetricKind.GAP:
        matrix = p.matrix
        old_means, new_means = p.old @ matrix, p.new @ matrix
        old, new = float(_spread(old_means)) * 100, float(_spread(new_means)) * 100
        pv, method = gap_permutation_p(p, rng, resamples)
        floor_dropped = bool(new_means.min() < old_means.min() - 1e-12)
        return MetricCheck(plan.task, name, plan.kind, old, new, new - old, tolerance, method, pv,
                           questions=plan.questions, floor_dropped=floor_dropped)  # fmt: skip
    w = p.matrix.mean(axis=1) if plan.bucket is None else p.matrix[:, p.column[plan.bucket]]
    pv, method = sign_flip_p(w * (p.new - p.old), rng, resamples, binary=p.binary)
    old, new = float(w @ p.old) * 100, float(w @ p.new) * 100
    return MetricCheck(plan.task, name, plan.kind, old, new, old - new, tolerance, method, pv,
                       questions=plan.questions)  # fmt: skip


def _tolerance_checks(name: str, t: BaselineTask, r: TaskResult) -> list[MetricCheck]:
    s = r.summary
    now = {b.index: b.mean for b in s.buckets}
    if set(now) != set(t.buckets):
        raise GateInputError(
            f"{name}: buckets differ (baseline {sorted(t.buckets)}, run {sorted(now)}); "
            "are the runs of the same probes?"
        )
    rows = [
        (MetricKind.AVG, None, t.avg, s.avg, t.avg - s.avg),
        (MetricKind.GAP, None, t.gap, s.gap, s.gap - t.gap),
    ]
    rows += [(MetricKind.BUCKET, i, t.buckets[i], now[i], t.buckets[i] - now[i]) for i in sorted(now)]
    return [
        MetricCheck(name, metric_name(kind, b), kind, old, new, change, t.tolerances.for_metric(kind),
                    "tolerance", status="fail" if change > t.tolerances.for_metric(kind) + 1e-9 else "pass")
        for kind, b, old, new, change in rows
    ]  # fmt: skip


def _low_power_notes(checks: Sequence[MetricCheck], stats: Statistics) -> list[str]:
    notes = []
    by_task: dict[str, list[MetricCheck]] = defaultdict(list)
    for c in checks:
        if c.status == "low power":
            by_task[c.task].append(c)
    buckets_of = Counter(c.task for c in checks if c.kind is MetricKind.BUCKET)
    for task, low in by_task.items():
        fewest = min(c.questions or 0 for c in low)
        low_buckets = [c.metric for c in low if c.kind is MetricKind.BUCKET]
        names = [c.metric for c in low if c.kind is not MetricKind.BUCKET]
        if len(low_buckets) == buckets_of[task] > 1:
            names.insert(int("avg" in names), f"all {len(low_buckets)} buckets")
        else:
            names[int("avg" in names) : int("avg" in names)] = low_buckets
        notes.append(
            f"LOW POWER: {task} {', '.join(names)}: as few as {fewest} paired questions "
            f"per bucket (< min_questions {stats.min_questions}), too few to test at alpha "
            f"{stats.alpha} with useful power: reported, not failing (statistics.fail_low_power: true "
            "in the baseline or check --fail-low-power to fail on them; more sets or positions to test them)"
        )
    return notes


def _compare(
    baseline: Baseline, current: Mapping[str, TaskResult], stats: Statistics
) -> tuple[list[MetricCheck], list[str]]:
    """Paired tests for tasks with samples on both sides (Holm over all of them), tolerances otherwise."""
    order = sorted(baseline.tasks, key=_task_order)
    with_samples = [n for n in order if baseline.tasks[n].samples is not None and current[n].has_samples]
    notes = []
    checks: list[MetricCheck] = []
    if with_samples:
        paired = {}
        for name in with_samples:
            t = baseline.tasks[name]
            n_buckets = int(t.settings.get("n_buckets") or current[name].summary.n_buckets)
            paired[name] = _pair(name, t.samples or (), current[name].samples, n_buckets)
        plans = [plan for name in with_samples for plan in _plan(name, paired[name], stats)]
        family = [plan.tested for plan in plans]
        resamples = resamples_for(stats, sum(family))
        rng = np.random.default_rng(stats.seed)
        checks = [_paired_check(plan, baseline.tasks[plan.task], paired[plan.task], rng, resamples)
                  for plan in plans]  # fmt: skip
        adjusted = iter(holm([c.p_value or 1.0 for c, tested in zip(checks, family, strict=True) if tested]))
        alpha = stats.alpha
        for i, (c, tested) in enumerate(zip(checks, family, strict=True)):
            if not tested:
                checks[i] = replace(c, status="low power")
                continue
            q = next(adjusted)
            failed = q < alpha and c.change >= c.tolerance and c.floor_dropped
            checks[i] = replace(c, p_adjusted=q, status="fail" if failed else "pass")
        notes.append(
            f"paired tests on matched samples of {', '.join(with_samples)}: one-sided, Holm-corrected "
            f"over {sum(family)} tests at alpha {alpha}; a metric fails when significant AND worse by at "
            "least its tolerance (gap: and the run's lowest bucket is below the baseline's)"
        )
        notes += _low_power_notes(checks, stats)
    for name in order:
        if name in with_samples:
            continue
        whose = "the baseline" if baseline.tasks[name].samples is None else "the run"
        notes.append(
            f"NO PER-SAMPLE SCORES in {whose} for {name}: tolerance comparison only, no statistics "
            "(run lm_eval with --log_samples and re-create the baseline for paired tests)"
        )
        checks += _tolerance_checks(name, baseline.tasks[name], current[name])
    rank = {n: i for i, n in enumerate(order)}
    checks.sort(key=lambda c: rank[c.task])  # stable: each task's rows keep their order
    return checks, notes


def check(
    baseline: Baseline,
    results: Sequence[TaskResult],
    *,
    ignore: frozenset[str] = frozenset(),
    fail_low_power: bool = False,
) -> GateResult:
    """Compare a run with a baseline (see the module docstring). Raises GateInputError when unusable.

    ``fail_low_power`` tests (and may fail on) low-power metrics too, as ``statistics.fail_low_power``.
    """
    if not results:
        raise GateInputError("the run has no VAL results")
    model = _one_model(results, "the run")
    current = _by_task(results, "the run")
    unknown = ignore - set(SETTINGS) - {"model"}
    if unknown:
        raise GateInputError(
            f"cannot ignore {sorted(unknown)}: known settings are model, {', '.join(SETTINGS)}"
        )
    problems = _settings_problems(baseline, current, ignore)
    if problems:
        raise GateInputError(
            "the run cannot be compared with the baseline:\n  " + "\n  ".join(problems)
            + "\n(re-create the baseline for new settings, or --ignore SETTING when a difference is harmless)"
        )  # fmt: skip
    notes = []
    if "model" not in ignore and display_name(model) != display_name(baseline.model):
        # a new checkpoint is the point of the gate: a different model is reported, never blocking
        notes.append(f"model differs: baseline {baseline.model!r}, run {model!r} (compared all the same)")
    extra = sorted(set(current) - set(baseline.tasks))
    if extra:
        notes.append(f"not in the baseline, not checked: {', '.join(extra)}")
    stats = baseline.statistics
    if fail_low_power:
        stats = replace(stats, fail_low_power=True)
    checks, more_notes = _compare(baseline, current, stats)
    notes += more_notes
    paired = all(c.method != "tolerance" for c in checks)
    return GateResult(model, tuple(checks), paired, stats.alpha, tuple(notes))


def load_run(run_dir: Path, model: str | None, baseline: Baseline) -> list[TaskResult]:
    """The run to check: one model's latest results under ``run_dir``.

    A task of the baseline that a folder scan skipped (say, its samples file is empty) is reported
    with its real cause, not as "missing": its results file is read again strictly.
    """
    results = _read_run(run_dir)
    if model is not None:
        results = [r for r in results if r.model == model]
        if not results:
            raise GateInputError(f"{run_dir}: no results for model {model!r}")
    if set(baseline.tasks) - {r.task for r in results}:
        for source in sorted({r.source for r in results}):
            load_results_file(source, n_boot=10, strict=True)  # raises the cause, naming file and line
    return results


def _read_run(run_dir: Path) -> list[TaskResult]:
    try:
        return load_results([run_dir], n_boot=200)
    except ResultsError:
        if Path(run_dir).is_dir():  # a scan skipped every file: say why, from the newest one
            for file in reversed(find_results_files(Path(run_dir))):
                load_results_file(file, n_boot=10, strict=True)
        raise


# --------------------------------------------------------------------------------------------------
# Output


def _p(x: float | None) -> str:
    return "-" if x is None else (f"{x:.2g}" if x < 0.01 else f"{x:.3f}")


def _delta(c: MetricCheck) -> str:
    return f"{round(c.current - c.baseline, 1) + 0.0:+.1f}"  # + 0.0: no "-0.0"


def _rows(result: GateResult, only_interesting: bool) -> list[list[str]]:
    rows = []
    for c in result.checks:
        if only_interesting and c.kind is MetricKind.BUCKET and c.status != "fail" and c.change <= 0:
            continue
        rows.append([
            c.task, c.metric, f"{c.baseline:.1f}", f"{c.current:.1f}", _delta(c),
            f"{c.tolerance:.1f}", _p(c.p_adjusted), c.method,
            _STATUS_TEXT[c.status],
        ])  # fmt: skip
    return rows


_STATUS_TEXT: dict[Status, str] = {"pass": "ok", "fail": "FAIL", "low power": "low power"}
_HEAD = ["task", "metric", "baseline", "run", "delta", "tol", "p (Holm)", "method", "status"]


def verdict(result: GateResult) -> str:
    if result.passed:
        return f"PASS: {result.model}, {len(result.checks)} checks"
    names = ", ".join(f"{c.task}/{c.metric}" for c in result.failures)
    return (
        f"REGRESSION: {result.model}, {len(result.failures)} of {len(result.checks)} checks failed ({names})"
    )


def format_table(result: GateResult) -> str:
    rows = [_HEAD, *_rows(result, only_interesting=False)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_HEAD))]
    lines = ["  ".join(cell.rjust(w) if i in (2, 3, 4, 5, 6) else cell.ljust(w)
                       for i, (cell, w) in enumerate(zip(r, widths, strict=True))).rstrip()
             for r in rows]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join([*lines, "", *result.notes, verdict(result)])


def format_markdown(result: GateResult) -> str:
    """A CI job summary: verdict, notes, and the table (buckets that did not get worse left out)."""
    icon = "✅" if result.passed else "❌"
    out = [f"### {icon} VAL probing gate — {verdict(result)}", ""]
    out += [f"> {note}" for note in result.notes]
    out += ["", "| " + " | ".join(_HEAD) + " |", "|" + "---|" * len(_HEAD)]
    out += ["| " + " | ".join(r) + " |" for r in _rows(result, only_interesting=True)]
    out += ["", "Scores x100; delta = run - baseline; buckets that did not get worse are not listed."]
    return "\n".join(out) + "\n"


def junit_xml(result: GateResult) -> str:
    """JUnit XML: one testsuite per task, one testcase per metric (avg, gap, every bucket)."""
    root = ElementTree.Element(
        "testsuites", name="val-probing gate", tests=str(len(result.checks)),
        failures=str(len(result.failures)),
    )  # fmt: skip
    by_task: dict[str, list[MetricCheck]] = defaultdict(list)
    for c in result.checks:
        by_task[c.task].append(c)
    for task, checks in by_task.items():
        suite = ElementTree.SubElement(
            root, "testsuite", name=f"val_{task}", tests=str(len(checks)),
            failures=str(sum(c.status == "fail" for c in checks)),
        )  # fmt: skip
        for c in checks:
            low = c.status == "low power"
            case = ElementTree.SubElement(suite, "testcase", classname=f"val_probing.{task}", name=c.metric)
            detail = (
                f"baseline {c.baseline:.2f}, run {c.current:.2f}, worse by {c.change:.2f} (tolerance "
                f"{c.tolerance:.2f}); {c.method}"
                + (f", p={c.p_value:.3g}" if c.p_value is not None else "")
                + (f", Holm p={c.p_adjusted:.3g}" if c.p_adjusted is not None else "")
                + (f"; LOW POWER ({c.questions} questions per bucket): not tested" if low else "")
            )
            if c.status == "fail":
                ElementTree.SubElement(case, "failure", message=f"{task}/{c.metric} regressed").text = detail
            else:
                ElementTree.SubElement(case, "system-out").text = detail
    ElementTree.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(root, encoding="unicode") + "\n"
