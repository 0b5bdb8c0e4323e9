"""Entry points of the experiment: run (or continue) every stage in order; each stage's state."""

from __future__ import annotations

import json
from pathlib import Path

from val_probing.files import check_output_dir, write_text_atomic, writing
from val_probing.in2.experiment.design import STAGE_FILE, ExperimentConfig, ExperimentError
from val_probing.in2.experiment.prepare import prepare_stages
from val_probing.in2.experiment.runs import run_stages
from val_probing.in2.experiment.stages import Run, Stage, inputs_hash, read_stage, run_stage


def experiment_stages(config: ExperimentConfig) -> tuple[Stage, ...]:
    """Every stage of the experiment in order (they depend on its arms and seeds)."""
    return (*prepare_stages(config), *run_stages(config))


def check_out(out: Path) -> Path:
    out = check_output_dir(out, "experiment folder")
    with writing(out, "experiment folder"):  # a folder the checks cannot foresee (/proc, a full disk)
        out.mkdir(parents=True, exist_ok=True)
    return out


def run_experiment(
    config: ExperimentConfig, out: Path, *, config_file: Path | None = None, until: str | None = None
) -> Run:
    """Run (or continue) every stage in order; ``until`` stops after that stage."""
    planned = experiment_stages(config)
    names = [s.name for s in planned]
    if until is not None and until not in names:
        raise ExperimentError(f"--until: {until!r} is not a stage ({', '.join(names)})")
    run = Run(config, check_out(out))
    if config_file is not None:
        write_text_atomic(run.out / "config.yaml", Path(config_file).read_text(encoding="utf-8"))
    for stage in planned:
        run_stage(run, stage)
        if stage.name == until:
            break
    return run


def stage_status(config: ExperimentConfig, out: Path) -> list[tuple[str, str]]:
    """(stage, state) in order: ``done (time, seconds)``, ``stale`` (its folder is not for these inputs,
    or does not verify), ``running or killed`` (a temporary folder only) or ``pending``."""
    run = Run(config, Path(out))
    rows = []
    for stage in experiment_stages(config):
        final = run.stage_dir(stage.name)
        ready = all(n in run.done for n in stage.needs)
        found = read_stage(final, inputs_hash(run, stage)) if ready else None
        if found is not None:
            run.done[stage.name] = found
            finished = json.loads((final / STAGE_FILE).read_text())["finished"]
            rows.append((stage.name, f"done ({finished}, {found.seconds:.0f} s)"))
        elif final.exists():
            rows.append((stage.name, "stale (re-runs)" if ready else "waits on an earlier stage"))
        elif (run.stages_dir / f".{stage.name}.tmp").exists():
            rows.append((stage.name, "running, or killed (re-runs)"))
        else:
            rows.append((stage.name, "pending"))
    return rows


def stage_names(config: ExperimentConfig) -> list[str]:
    return [s.name for s in experiment_stages(config)]
