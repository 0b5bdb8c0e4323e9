"""The stages that run models: train each arm of each seed, evaluate every model, compare them.

Training runs the shipped recipe, evaluation ``val-probing eval`` (each in a child process or in this
one); the compare stage's statistics and report are in ``report``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from val_probing.files import file_sha256
from val_probing.in2.assemble import Placement
from val_probing.in2.experiment.design import BASE, SCRATCH, ExperimentConfig, ExperimentError, model_name
from val_probing.in2.experiment.lookup import model_lookup
from val_probing.in2.experiment.prepare import base_model, language_of, probe_pool
from val_probing.in2.experiment.stages import Run, Stage

log = logging.getLogger(__name__)


def _train_inputs(run: Run, *, arm: str, seed: int) -> dict[str, Any]:
    from val_probing.training import config_path, recipe_path

    t = run.config.training
    return {
        "training": run.config.section("training"),
        "arm": arm,
        "seed": seed,
        # what the recipe and its config say, not only their names: an edited file trains again
        "config_sha256": file_sha256(config_path(t.config)),
        "recipe_sha256": file_sha256(recipe_path(t.recipe)),
    }


def arm_base(run: Run, seed: int) -> str:
    """The model an arm of ``seed`` starts from: the seed's copy warm-up when configured, else the base."""
    if run.config.warmup is not None:
        return str(run.stage_dir(f"warmup_s{seed}") / "final")
    return base_model(run, seed)


def _recipe_overrides(
    run: Run, seed: int, *, model: str, dataset: Path, folder: Path, extra: Sequence[str] = ()
) -> list[str]:
    """The recipe config's overrides: the experiment's training overrides and ``extra``, then what the
    experiment decides (the seed, the starting model, the data, the output folder), which win."""
    return [
        *run.config.training.overrides,
        *extra,
        f"seed={seed}",
        f"model={model}",
        f"dataset={dataset}",
        f"output_dir={folder}",
    ]


def train_overrides(run: Run, arm: Placement, seed: int, folder: Path) -> list[str]:
    """The recipe config's overrides for one arm and seed (its starting model, that seed's arm data)."""
    data = run.stage_dir(f"data_s{seed}") / arm
    return _recipe_overrides(run, seed, model=arm_base(run, seed), dataset=data, folder=folder)


def _warmup_inputs(run: Run, *, seed: int) -> dict[str, Any]:
    return {**_train_inputs(run, arm="warmup", seed=seed), "warmup": run.config.section("warmup")}


def warmup(run: Run, folder: Path, *, seed: int) -> dict[str, Any]:
    """The copy warm-up of one seed's initialisation: copy rows (``synthetic.copy_rows``) trained with the
    recipe, its config and the warm-up's overrides."""
    from datasets import Dataset

    from val_probing.in2.synthetic import copy_rows

    w = run.config.warmup
    if w is None:
        raise ExperimentError("warmup: not configured")
    rows = copy_rows(language_of(run), w.examples, w.words, seed)
    Dataset.from_list(rows).save_to_disk(str(folder / "data"))
    overrides = _recipe_overrides(
        run, seed, model=base_model(run, seed), dataset=folder / "data", folder=folder, extra=w.overrides
    )
    summary = _with_lookup(run, folder, _run_recipe(run, folder, overrides))
    far = summary["lookup"]["far"]
    if w.min_lookup is not None and far < w.min_lookup:
        raise ExperimentError(
            f"warmup_s{seed}: the warmed-up model's far lookup accuracy is {far:.2f}, below "
            f"warmup.min_lookup {w.min_lookup} (near: {summary['lookup']['near']:.2f}): it does not find "
            "sentences by their content, so no arm can learn the questions (in2/experiment/lookup.py; "
            "docs/in2-experiment.md)"
        )
    return summary


def train(run: Run, folder: Path, *, arm: Placement, seed: int) -> dict[str, Any]:
    """The shipped recipe on one arm's data of one seed (in this process or a child process)."""
    return _with_lookup(run, folder, _run_recipe(run, folder, train_overrides(run, arm, seed, folder)))


def _with_lookup(run: Run, folder: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """A scratch model's summary with its lookup accuracy by distance (``lookup.model_lookup``): whether
    it finds a sentence by content at all, the precondition of its arm's questions."""
    if run.config.model != SCRATCH:
        return summary
    return {**summary, "lookup": model_lookup(folder / summary["model"], language_of(run))}


def _run_recipe(run: Run, folder: Path, overrides: list[str]) -> dict[str, Any]:
    from val_probing.in2.recipe_settings import load_config
    from val_probing.training import config_path, recipe_path
    from val_probing.training.launch import launch_command, load_recipe, recipe_argv

    t = run.config.training
    config = config_path(t.config)
    load_config(config, overrides)  # settings checked before the process starts
    recipe = recipe_path(t.recipe)
    cmd = launch_command(config, overrides, recipe)
    if t.in_process:
        with _captured(folder / "train.log"):
            load_recipe(recipe).main(recipe_argv(config, overrides))
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


@contextlib.contextmanager
def _captured(log_file: Path) -> Iterator[None]:
    """stdout and stderr of an in-process step into its log file (as a child process's would go)."""
    with log_file.open("w") as handle, contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
        yield


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


def eval_metadata(run: Run) -> dict[str, object]:
    """The tasks' ``--metadata``, written by ``ValOptions.to_metadata`` (the one writer; the tasks read it
    back with ``from_metadata``): built probes at the probes stage's layout, FILM template, the base
    model's tokenizer (every model is evaluated on the same probes)."""
    from val_probing.adapter.options import ValOptions

    p = run.config.probes
    options = ValOptions(
        p.families[0],  # not a metadata key: one mapping serves every task
        source="built",
        context_lengths=(p.context_length,),
        tokenizer=base_model(run),
        pool=probe_pool(run),
        sets=p.sets,
        positions=p.positions,
        seed=p.seed,
        n_buckets=p.n_buckets,
        n_buckets_explicit=True,
        template="film",
    )
    return options.to_metadata()


def _eval_inputs(run: Run, *, model: str) -> dict[str, Any]:
    return {
        "evaluation": run.config.section("evaluation"),
        "probes": run.config.section("probes"),
        "model": model,
    }


def evaluate(run: Run, folder: Path, *, model: str) -> dict[str, Any]:
    """lm-eval (``val_probing.evaluate``) of one model (``base`` or ``ARM_sSEED``) on the probes stage's
    probes, in this process or a child process."""
    from val_probing.evaluate import EvalError, EvalRequest
    from val_probing.evaluate import evaluate as run_eval

    e = run.config.evaluation
    path = base_model(run) if model == BASE else str(run.stage_dir(f"train_{model}") / "final")
    request = EvalRequest(
        model=e.backend,
        model_args=f"pretrained={path}" + (f",{e.model_args}" if e.model_args else ""),
        tasks=tuple(f"val_{f}" for f in run.config.probes.families),
        metadata=eval_metadata(run),
        output_path=folder / "lm_eval",
        batch_size=e.batch_size,
        log_samples=True,
        gen_kwargs={"max_gen_toks": e.max_gen_toks} if e.max_gen_toks is not None else "",
        device="cpu" if e.backend == "hf" else None,
    )
    try:
        done = run_eval(
            request,
            log_path=folder / "eval.log",
            in_process=e.in_process,
            timeout_s=None if e.in_process else e.timeout_s,
            env={"HF_HUB_OFFLINE": "1", **e.env},
        )
    except EvalError as err:
        raise ExperimentError(f"evaluation of {model}: {err}") from err
    results = load_evaluated(folder, run.summary("probes")["families"])
    return {
        "model": path,
        "command": list(done.command),
        "tasks": {
            r.task: {"avg": r.summary.avg, "gap": r.summary.gap, "samples": len(r.samples)} for r in results
        },
    }


def load_evaluated(folder: Path, probes: Mapping[str, Any]) -> list[Any]:
    """The tasks' results with samples, evaluated on the probes of the probes stage (same hash)."""
    from val_probing.results import load_results

    results = load_results([folder / "lm_eval"])
    missing = sorted(set(probes) - {r.task for r in results})
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
    return {"comparison": run.config.section("comparison"), "endpoint": run.config.section("endpoint")}


def compare(run: Run, folder: Path) -> dict[str, Any]:
    """The pre-registered endpoint (when the config has one), the per-question comparisons, the report."""
    from val_probing.in2.experiment.analysis import compare_runs, write_report
    from val_probing.in2.experiment.endpoint import endpoint_test

    probes = run.summary("probes")["families"]
    runs = {m: load_evaluated(run.stage_dir(f"eval_{m}"), probes) for m in run.config.models}
    found = compare_runs(runs, run.config, run.config.seed)
    if run.config.endpoint is not None:
        found["endpoint"] = endpoint_test(runs, run.config)
    found["power"] = run.summary("probes")["power"]
    found["probes"] = probes
    write_report(folder, runs, found, run)
    summary: dict[str, Any] = {"verdicts": found["verdicts"]}
    if "endpoint" in found:
        summary["endpoint"] = {k: found["endpoint"][k] for k in ("difference", "p_value", "ci95", "verdict")}
    return summary


def run_stages(config: ExperimentConfig) -> tuple[Stage, ...]:
    """The base model's evaluation (when asked), then per seed its copy warm-up (when configured) and per
    arm ``train_ARM_sSEED`` and ``eval_ARM_sSEED``, then ``compare``.

    The base model is evaluated before the trainings: it needs neither, and a broken evaluation (or its
    real cost, which sizes the rest) shows in minutes instead of after hours of training."""
    stages: list[Stage] = []
    if config.evaluate_base:
        stages.append(Stage(f"eval_{BASE}", ("model", "probes"), _eval_inputs, evaluate, {"model": BASE}))
    for seed in config.seeds:  # a seed's models are trained and evaluated before the next seed's
        needs: tuple[str, ...] = ("model", f"data_s{seed}")
        if config.warmup is not None:
            stages.append(Stage(f"warmup_s{seed}", ("model",), _warmup_inputs, warmup, {"seed": seed}))
            needs = (*needs, f"warmup_s{seed}")
        for arm in config.arms:
            name = model_name(arm, seed)
            stages.append(Stage(f"train_{name}", needs, _train_inputs, train, {"arm": arm, "seed": seed}))
            stages.append(
                Stage(
                    f"eval_{name}",
                    ("model", "probes", f"train_{name}"),
                    _eval_inputs,
                    evaluate,
                    {"model": name},
                )
            )
    evals = tuple(f"eval_{m}" for m in config.models)
    stages.append(Stage("compare", ("probes", *evals), _compare_inputs, compare))
    return tuple(stages)
