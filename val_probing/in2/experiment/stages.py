"""Stage bookkeeping: atomic stage folders with a manifest, and resumption.

Each stage is written into a temporary folder with a ``stage.json`` and a folder manifest keyed on its
inputs hash, then renamed into place; it is reused only when it verifies against this run's inputs.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import logging
import platform
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from val_probing.files import FOLDER_MANIFEST, CacheInvalid, check_folder_manifest, write_folder_manifest
from val_probing.in2.experiment.design import (
    FORMAT,
    STAGE_FILE,
    VERSIONED,
    ExperimentConfig,
    ExperimentError,
    plain,
)

log = logging.getLogger(__name__)


def digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


@dataclass(frozen=True)
class StageRecord:
    """A finished stage, read back and verified."""

    name: str
    path: Path
    inputs_hash: str
    outputs_hash: str  # sha256 over its files' sha256 (stage.json aside): what downstream stages key on
    summary: Mapping[str, Any]
    seconds: float


@dataclass(frozen=True)
class Stage:
    """One step: ``body(run, folder, **params)`` writes into the folder and returns its summary;
    ``inputs(run, **params)`` names the settings it depends on (its needs' outputs are added)."""

    name: str
    needs: tuple[str, ...]
    inputs: Callable[..., dict[str, Any]]
    body: Callable[..., dict[str, Any]]
    params: Mapping[str, Any] = field(default_factory=dict)  # e.g. {"arm": "middle", "seed": 1}
    version: int = 1  # bump when the stage's code changes what it makes: finished folders then re-run


@dataclass
class Run:
    """One experiment folder: the config, and the stages finished so far (in this process)."""

    config: ExperimentConfig
    out: Path
    done: dict[str, StageRecord] = field(default_factory=dict)

    @property
    def stages_dir(self) -> Path:
        return self.out / "stages"

    def stage_dir(self, name: str) -> Path:
        return self.stages_dir / name

    def summary(self, name: str) -> Mapping[str, Any]:
        return self.done[name].summary


def _keyed(run: Run, stage: Stage) -> dict[str, Any]:
    """What a stage's folder is keyed on: its settings and its upstream stages' outputs."""
    upstream = {n: run.done[n].outputs_hash for n in stage.needs}
    return {
        "format": FORMAT,
        "stage": stage.name,
        "version": stage.version,
        "inputs": stage.inputs(run, **stage.params),
        "upstream": upstream,
    }


def inputs_hash(run: Run, stage: Stage) -> str:
    return digest(_keyed(run, stage))


def read_stage(folder: Path, key: str) -> StageRecord | None:
    """The finished stage in ``folder`` when it verifies against ``key`` (every file as its manifest
    records, made for these inputs); None otherwise, with a log line saying why."""
    if not folder.exists():
        return None
    try:
        check_folder_manifest(folder, key)
        record = json.loads((folder / STAGE_FILE).read_text(encoding="utf-8"))
        if not isinstance(record, dict) or record.get("inputs_hash") != key:
            raise CacheInvalid(f"{folder / STAGE_FILE}: not the record of these inputs")
        files = json.loads((folder / FOLDER_MANIFEST).read_text(encoding="utf-8"))["files"]
        # what the stage made, not its record (times): the same files again re-run nothing after it
        outputs_hash = digest({n: f["sha256"] for n, f in files.items() if n != STAGE_FILE})
    except (CacheInvalid, OSError, ValueError, KeyError, TypeError) as err:
        log.warning("stage %s is not reusable (%s): running it again", folder.name, err)
        return None
    return StageRecord(
        folder.name, folder, key, outputs_hash, record.get("summary") or {}, float(record.get("seconds") or 0)
    )


def run_stage(run: Run, stage: Stage) -> StageRecord:
    """Reuse the stage when its folder verifies for this run's inputs; else build it in a temporary
    folder and rename it into place (a killed stage leaves only the temporary folder, removed next time)."""
    keyed = _keyed(run, stage)
    key = digest(keyed)
    final = run.stage_dir(stage.name)
    found = read_stage(final, key)
    if found is not None:
        log.info("stage %s: done (%s), skipped", stage.name, final)
        run.done[stage.name] = found
        return found
    tmp = run.stages_dir / f".{stage.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    print(f"[{started:%H:%M:%S}] stage {stage.name} ...", flush=True)
    summary = stage.body(run, tmp, **stage.params)
    seconds = time.perf_counter() - t0
    record = {
        "format": FORMAT,
        "stage": stage.name,
        "inputs_hash": key,
        "inputs": keyed["inputs"],
        "upstream": keyed["upstream"],
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "versions": versions(),
        "summary": summary,
    }
    (tmp / STAGE_FILE).write_text(json.dumps(plain(record), indent=2, default=str) + "\n")
    write_folder_manifest(tmp, key)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    print(f"           stage {stage.name} done in {seconds:.0f} s", flush=True)
    found = read_stage(final, key)
    if found is None:
        raise ExperimentError(f"{final}: the stage just written does not verify")
    run.done[stage.name] = found
    return found
