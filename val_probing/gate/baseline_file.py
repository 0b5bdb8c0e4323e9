"""Baseline files: the YAML and its content-addressed samples file, written as one unit, read strictly.

The samples are written first, under a name that carries their content hash
(``baseline.samples.<sha256[:12]>.jsonl``), then the YAML, atomically, naming that file and its full
sha256. A reader therefore sees the old pair or the new pair, never a mix: until the YAML is replaced
it still names the old samples file, which is only removed after. ``read_baseline`` verifies the hash
(a mismatch is exit 2).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from val_probing.buckets import ScoredSample, summarize
from val_probing.files import check_output_file, parse_jsonl_lines, write_text_atomic, writing
from val_probing.gate.baseline import (
    FORMAT,
    SETTINGS,
    TOLERANCE_KEYS,
    Baseline,
    BaselineTask,
    GateInputError,
    Regions,
    Statistics,
    Tolerances,
    task_order,
)
from val_probing.records import FAMILIES
from val_probing.typed import check_keys, is_int, read_settings_into

T = TypeVar("T")

SAMPLE_FIELDS = ("task", "set_id", "position_id", "n_items", "key", "score")

RECREATE = "val-probing baseline RUN_DIR --out {path}"


def samples_path_for(path: Path, sha256: str) -> Path:
    """``ci/baseline.yaml`` + hash -> ``ci/baseline.samples.<sha256[:12]>.jsonl`` (beside it)."""
    return path.with_name(f"{path.stem}.samples.{sha256[:12]}.jsonl")


def _is_samples_file_of(path: Path, candidate: Path) -> bool:
    """Whether ``candidate`` is a samples file that ``write_baseline`` may have written for ``path``."""
    stem = f"{path.stem}.samples."
    return (
        candidate.parent == path.parent and candidate.name.startswith(stem) and candidate.suffix == ".jsonl"
    )


def samples_files_beside(path: Path) -> list[Path]:
    """Every file beside the baseline ``path`` that is, or could be, its samples file
    (``<stem>.samples.*.jsonl``): inputs of a check, never to be written over."""
    try:
        return sorted(c for c in path.parent.iterdir() if _is_samples_file_of(path, c))
    except OSError:
        return []  # the folder cannot be listed: reading the baseline says why


def _round(x: float) -> float:
    return round(float(x), 4)


def baseline_to_yaml(baseline: Baseline, samples_file: str | None, samples_sha256: str | None) -> str:
    data: dict[str, Any] = {
        "format": FORMAT,
        "model": baseline.model,
        "created_from": baseline.created_from,
        "samples": samples_file,
        "samples_sha256": samples_sha256,
        "environment": dict(baseline.environment),
        "statistics": baseline.statistics.to_dict(),
        "regions": baseline.regions.to_dict(),
        "tolerances": baseline.tolerances.to_dict(),
        "tasks": {},
    }
    for name in sorted(baseline.tasks, key=task_order):
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
        "# val-probing CI baseline: one run's scores (x100) and settings. Schema: docs/ci-gate.md.\n"
        "# Written by `val-probing baseline`; commit it with its samples file. statistics, regions and\n"
        "# tolerances are settings (edit freely); a task's avg, gap and buckets are recorded from the\n"
        "# samples and checked against them (edit them and the check refuses the baseline).\n"
    )
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def samples_text(baseline: Baseline) -> str:
    """The samples file's exact content (one JSON object per question, tasks in family order)."""
    lines = [
        json.dumps({"task": name, "set_id": s.set_id, "position_id": s.position_id, "n_items": s.n_items,
                    "key": s.key, "score": s.score}, ensure_ascii=False, sort_keys=True)
        for name in sorted(baseline.tasks, key=task_order)
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


@dataclass(frozen=True)
class _File:
    """The YAML's top level as read (its format is checked first, its samples file by
    :func:`_read_baseline_samples`)."""

    format: int
    model: str
    tasks: Mapping[str, Any]
    created_from: str | None = None
    samples: str | None = None
    samples_sha256: str | None = None
    environment: Mapping[str, str | None] | None = None
    statistics: Statistics | None = None
    regions: Regions | None = None
    tolerances: Mapping[str, Any] | None = None  # TOLERANCE_KEYS only: read by _tolerances


@dataclass(frozen=True)
class _Task:
    """One entry of ``tasks``: the settings and the numbers recorded from its samples."""

    settings: Mapping[str, Any]
    avg: float
    gap: float
    n_samples: int
    buckets: Mapping[int, float]
    tolerances: Mapping[str, Any] | None = None  # overrides of the top level's


def _read(cls: type[T], data: object, where: str, at: str = "") -> T:
    return read_settings_into(cls, data, where=where, error=GateInputError, what="key", at=at)


def _tolerances(data: Mapping[str, Any] | None, base: Tolerances, where: str, at: str) -> Tolerances:
    """``Tolerances`` from a YAML mapping (the keys a baseline may set), the rest from ``base``."""
    data = data or {}
    check_keys(data, TOLERANCE_KEYS, where=where, error=GateInputError, what="key", at=at)
    return _read(Tolerances, {**base.to_dict(), **data}, where, at)


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
            f"file's hash); re-create it: {RECREATE.format(path=path)}"
        )
    if data.get("format") == 2:
        raise GateInputError(
            f"{where}: a format-2 baseline (written by an older val-probing: per-bucket gate, no depth "
            f"regions, no environment); re-create it from the same run: {RECREATE.format(path=path)}"
        )
    if data.get("format") != FORMAT:
        raise GateInputError(f"{where}: format: expected {FORMAT}, got {data.get('format')!r}")
    top = _read(_File, data, where)
    tolerances = _tolerances(top.tolerances, Tolerances(), where, "tolerances")
    if not top.tasks:
        raise GateInputError(f"{where}: 'tasks' is empty")
    check_keys(top.tasks, FAMILIES, where=where, error=GateInputError, what="key", at="tasks")
    samples = _read_baseline_samples(path, top)
    if samples is not None and set(samples) != set(top.tasks):
        raise GateInputError(
            f"{where}: task mismatch: the YAML has tasks {', '.join(sorted(top.tasks, key=task_order))} "
            f"but the samples file has {', '.join(sorted(samples, key=task_order)) or 'none'} "
            "(was a task renamed or removed? re-create the baseline)"
        )
    tasks = {}
    for name, obj in top.tasks.items():
        at = f"tasks.{name}"
        entry = _read(_Task, obj, where, at)
        check_keys(entry.settings, SETTINGS, where=where, error=GateInputError, what="key",
                   at=f"{at}.settings")  # fmt: skip
        task_samples = None
        if samples is not None:
            task_samples = tuple(samples[name])
            if len(task_samples) != entry.n_samples:
                raise GateInputError(
                    f"{where}: {at}: n_samples is {entry.n_samples} but the samples file has "
                    f"{len(task_samples)} for this task"
                )
            _check_recorded(f"{where}: {at}", entry, task_samples)
        tasks[name] = BaselineTask(
            task=name,
            settings={k: entry.settings.get(k) for k in SETTINGS},
            avg=entry.avg,
            gap=entry.gap,
            buckets=dict(entry.buckets),
            n_samples=entry.n_samples,
            tolerances=_tolerances(entry.tolerances, tolerances, where, f"{at}.tolerances"),
            samples=task_samples,
        )
    return Baseline(
        model=top.model,
        tasks=tasks,
        statistics=top.statistics or Statistics(),
        tolerances=tolerances,
        created_from=top.created_from or "",
        regions=top.regions or Regions(),
        environment=dict(top.environment or {}),
    )


def _check_recorded(where: str, entry: _Task, samples: Sequence[ScoredSample]) -> None:
    """The YAML's avg, gap and bucket means are recorded from the samples, not settings: an edited one
    (say avg: 99) would otherwise be silently ignored, so a disagreement is unusable input."""
    n_buckets = entry.settings.get("n_buckets")
    if not is_int(n_buckets) or n_buckets < 1:
        raise GateInputError(f"{where}.settings.n_buckets: expected an integer >= 1, got {n_buckets!r}")
    try:
        summary = summarize(samples, n_buckets=n_buckets, n_boot=None)
    except ValueError as err:
        raise GateInputError(f"{where}: the samples cannot be summarised ({err})") from err
    actual = {"avg": summary.avg, "gap": summary.gap}
    actual.update({f"buckets.{b.index}": b.mean for b in summary.buckets})
    recorded = {"avg": entry.avg, "gap": entry.gap, **{f"buckets.{k}": v for k, v in entry.buckets.items()}}
    for key in sorted({*actual, *recorded}, key=lambda k: (k.startswith("buckets."), k)):
        if key not in recorded or key not in actual or abs(recorded[key] - actual[key]) > 1e-3:
            have = f"{recorded[key]:g}" if key in recorded else "missing"
            want = f"{actual[key]:.4f}" if key in actual else "no such bucket"
            raise GateInputError(
                f"{where}.{key}: {have}, but its samples give {want}: the scores are recorded from the "
                "samples file, not settings (to gate on another run, re-create the baseline from it)"
            )


def _read_baseline_samples(path: Path, top: _File) -> dict[str, list[ScoredSample]] | None:
    name, sha = top.samples, top.samples_sha256
    if name is None:
        if sha is not None:
            raise GateInputError(f"{path}: 'samples_sha256' is set but 'samples' is null")
        return None
    if Path(name).name != name:
        raise GateInputError(f"{path}: samples: expected a file name beside the YAML or null, got {name!r}")
    if sha is None:
        raise GateInputError(f"{path}: samples_sha256: expected the samples file's sha256, got None")
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
    out: dict[str, list[ScoredSample]] = defaultdict(list)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise GateInputError(f"{spath}: not UTF-8 text ({err.reason})") from err
    for lineno, obj in parse_jsonl_lines(text.splitlines(), str(spath)):
        at = f"{spath}:{lineno}"
        check_keys(obj, SAMPLE_FIELDS, where=at, error=GateInputError, what="key")
        missing = [f for f in SAMPLE_FIELDS if f not in obj]
        if missing:
            raise GateInputError(f"{at}: missing field {missing[0]!r}")
        try:
            out[str(obj["task"])].append(
                ScoredSample(obj["set_id"], obj["position_id"], obj["n_items"], str(obj["key"]), obj["score"])
            )
        except (TypeError, ValueError) as err:
            raise GateInputError(f"{at}: bad sample ({err})") from err
    return dict(out)
