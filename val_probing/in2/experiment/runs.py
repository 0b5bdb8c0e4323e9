"""The stages that run models: train each arm, evaluate the three models, compare them.

Training runs the shipped recipe, evaluation ``val-probing eval`` (each in a child process or in this
one); the compare stage's statistics and report are in ``report``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from val_probing.files import file_sha256
from val_probing.in2.assemble import Placement
from val_probing.in2.experiment.design import ARMS, ExperimentError
from val_probing.in2.experiment.prepare import base_model
from val_probing.in2.experiment.stages import Run, Stage
from val_probing.records import FAMILIES

log = logging.getLogger(__name__)


def _train_inputs(run: Run) -> dict[str, Any]:
    from val_probing.training import config_path, recipe_path

    t = run.config.training
    return {
        "training": run.config.section("training"),
        "seed": run.config.seed,
        # what the recipe and its config say, not only their names: an edited file trains again
        "config_sha256": file_sha256(config_path(t.config)),
        "recipe_sha256": file_sha256(recipe_path(t.recipe)),
    }


def train_overrides(run: Run, arm: Placement, folder: Path) -> list[str]:
    """The recipe config's overrides for one arm: the experiment's training overrides, then what the
    experiment decides (its seed, the base model, the arm's data, the output folder), which win."""
    return [
        *run.config.training.overrides,
        f"seed={run.config.seed}",
        f"model={base_model(run)}",
        f"dataset={run.stage_dir('data') / arm}",
        f"output_dir={folder}",
    ]


def _train_body(arm: Placement) -> Callable[[Run, Path], dict[str, Any]]:
    def body(run: Run, folder: Path) -> dict[str, Any]:
        from val_probing.commands.train import launch_command
        from val_probing.in2.recipe_settings import load_config
        from val_probing.training import config_path, recipe_path

        t = run.config.training
        config = config_path(t.config)
        overrides = train_overrides(run, arm, folder)
        load_config(config, overrides)  # settings checked before the process starts
        recipe = recipe_path(t.recipe)
        cmd = launch_command(config, overrides, recipe)
        if t.in_process:
            with _captured(folder / "train.log"):
                _load_module(recipe).main(cmd[2:])
        else:
            _subprocess(cmd, folder / "train.log", timeout=None, env={})
        summary = json.loads((folder / "train_summary.json").read_text())
        losses = [e["loss"] for e in summary["log_history"] if "loss" in e]
        return {
            "model": "final",
            "steps": summary["global_step"],
            "n_examples": summary["n_examples"],
            "max_length": summary["max_length"],
            "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None,
            "command": cmd,
        }

    return body


@contextlib.contextmanager
def _captured(log_file: Path) -> Iterator[None]:
    """stdout and stderr of an in-process step into its log file (as a child process's would go)."""
    with log_file.open("w") as handle, contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
        yield


@contextlib.contextmanager
def _environ(env: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _load_module(path: Path) -> Any:
    """A recipe script as a module (its ``main`` runs in this process)."""
    spec = importlib.util.spec_from_file_location(f"_recipe_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ExperimentError(f"{path}: cannot load the recipe")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _subprocess(cmd: Sequence[str], log_file: Path, *, timeout: int | None, env: Mapping[str, str]) -> None:
    log.info("running %s (log: %s)", " ".join(cmd), log_file)
    with log_file.open("w") as handle:
        try:
            done = subprocess.run(
                list(cmd),
                stdout=handle,
                stderr=subprocess.STDOUT,
                check=False,
                timeout=timeout,
                env={**os.environ, **env},
            )
        except subprocess.TimeoutExpired as err:
            raise ExperimentError(f"{cmd[0]} ran past {timeout} s; see {log_file}") from err
    if done.returncode:
        tail = log_file.read_text(errors="replace")[-1500:]
        raise ExperimentError(f"exit {done.returncode} from {' '.join(cmd[:4])} ...; see {log_file}:\n{tail}")


def eval_metadata(run: Run) -> dict[str, Any]:
    p = run.config.probes
    return {
        "source": "built",
        "context_length": p.context_length,
        "sets": p.sets,
        "positions": p.positions,
        "n_buckets": p.n_buckets,
        "pool": p.pool,
        "seed": p.seed,
        "template": "film",
        "tokenizer": base_model(run),
    }


def _eval_inputs(run: Run) -> dict[str, Any]:
    return {"evaluation": run.config.section("evaluation"), "probes": run.config.section("probes")}


def _eval_body(which: str) -> Callable[[Run, Path], dict[str, Any]]:
    def body(run: Run, folder: Path) -> dict[str, Any]:
        e = run.config.evaluation
        model = base_model(run) if which == "base" else str(run.stage_dir(f"train_{which}") / "final")
        args = f"pretrained={model}" + (f",{e.model_args}" if e.model_args else "")
        cmd = [
            sys.executable,
            "-m",
            "val_probing.cli",
            "eval",
            "--model",
            e.backend,
            "--model_args",
            args,
            "--tasks",
            ",".join(f"val_{f}" for f in FAMILIES),
            "--metadata",
            json.dumps(eval_metadata(run)),
            "--batch_size",
            e.batch_size,
            "--log_samples",
            "--output_path",
            str(folder / "lm_eval"),
        ]
        if e.backend == "hf":
            cmd += ["--device", "cpu"]
        if e.max_gen_toks is not None:
            cmd += ["--gen_kwargs", f"max_gen_toks={e.max_gen_toks}"]
        env = {"HF_HUB_OFFLINE": "1", **e.env}
        if e.in_process:
            from val_probing.commands.eval import forward

            with _captured(folder / "eval.log"), _environ(env):
                code = forward(cmd[4:])  # the arguments after `python -m val_probing.cli eval`
            if code:
                raise ExperimentError(f"val-probing eval exited {code}; see {folder / 'eval.log'}")
        else:
            _subprocess(cmd, folder / "eval.log", timeout=e.timeout_s, env=env)
        results = _load(folder, run.summary("probes")["families"])
        return {
            "model": model,
            "command": cmd,
            "tasks": {
                r.task: {"avg": r.summary.avg, "gap": r.summary.gap, "samples": len(r.samples)}
                for r in results
            },
        }

    return body


def _load(folder: Path, probes: Mapping[str, Any]) -> list[Any]:
    """The three tasks' results with samples, evaluated on the probes of the probes stage (same hash)."""
    from val_probing.results import load_results

    results = load_results([folder / "lm_eval"])
    missing = sorted(set(FAMILIES) - {r.task for r in results})
    if missing or not all(r.has_samples for r in results):
        raise ExperimentError(f"{folder}: results without samples, or tasks missing ({missing})")
    for r in results:
        want = probes[r.task]["probe_hash"]
        if r.metadata.get("probe_hash") != want:
            raise ExperimentError(
                f"{r.source}: {r.task} was evaluated on probes {r.metadata.get('probe_hash')}, not the "
                f"probes stage's {want}: the probes differ (tokenizer or pool changed?)"
            )
    return results


def _compare_inputs(run: Run) -> dict[str, Any]:
    return {"comparison": run.config.section("comparison")}


def _compare_body(run: Run, folder: Path) -> dict[str, Any]:
    from val_probing.in2.experiment.analysis import compare_runs, write_report

    probes = run.summary("probes")["families"]
    runs = {w: _load(run.stage_dir(f"eval_{w}"), probes) for w in ("base", *ARMS)}
    found = compare_runs(runs, run.config.comparison, run.config.seed)
    found["power"] = run.summary("probes")["power"]
    found["probes"] = probes
    write_report(folder, runs, found, run)
    return {"verdicts": found["verdicts"]}


# The base model is evaluated before the trainings: it needs neither, and a broken evaluation (or its
# real cost, which sizes the rest) shows in minutes instead of after two hours of training.
RUN_STAGES: tuple[Stage, ...] = (
    Stage("eval_base", ("model", "probes"), _eval_inputs, _eval_body("base")),
    *(Stage(f"train_{a}", ("model", "data"), _train_inputs, _train_body(a)) for a in ARMS),
    *(Stage(f"eval_{a}", ("model", "probes", f"train_{a}"), _eval_inputs, _eval_body(a)) for a in ARMS),
    Stage("compare", ("probes", "eval_base", *(f"eval_{a}" for a in ARMS)), _compare_inputs, _compare_body),
)
