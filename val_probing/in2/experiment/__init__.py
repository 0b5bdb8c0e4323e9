"""IN2's effect, measured: does where the supervision sits shape the position curve? (issue 13)

One command (``val-probing train experiment --config CONFIG --out DIR``) runs a two-arm causal test at
toy scale with the project's own tools end to end:

* **probes**: the VAL probes of all three families at the training length (``build.cached_probes``), the
  ones every model is evaluated on; the gate's ``min_questions`` rule and a simulated power (through
  ``gate.make_baseline`` / ``gate.check``, as bench/bench_gate.py does) are recorded before any model runs.
* **corpus**: an offline raw-text corpus that ships with every install: the long descriptions
  (README prose) in the ``METADATA`` of the installed Python distributions (:func:`package_texts`).
* **data**: ONE synthesis plan (seed, segments, QA pairs, fillers, per-example seeds) saved twice, arm A
  ``uniform`` (IN2: the needed segment anywhere) and arm B ``edges`` (only in the first or last 10% of
  the context, by filler rank: ``assemble.place_needed``); the contamination filter runs against the
  probes of the probes stage and its counts are in the manifests.
* **train_uniform / train_edges**: the shipped recipe (``training/recipes/in2_sft.py``) unchanged, one
  config for both arms (same steps, seed, learning-rate schedule); only ``dataset`` differs.
* **eval_base / eval_uniform / eval_edges**: ``val-probing eval`` (lm-eval, ``--log_samples``) of the
  three models on the same probes (tokenizer fixed to the base model's, so the probe hash is one).
* **compare**: avg, gap and per-bucket differences A vs base, B vs base and A vs B, each with a paired
  bootstrap 95% interval and the gate's one-sided paired tests in both directions (baseline from one
  model, check the other, tolerances 0, Holm within each check); a figure overlaying the three curves
  (``plots.plot_position_curves``), a Markdown table and ``results.json``.

Every stage writes into ``DIR/stages/.NAME.tmp`` and is renamed to ``DIR/stages/NAME`` when done, with a
``stage.json`` (inputs and their hash, outputs, times, versions) and a folder manifest of every file it
wrote (``paths.write_folder_manifest``, keyed on the inputs hash). A stage is skipped only when its
folder verifies against the inputs hash of this run; inputs include the outputs hash of the stages it
reads, so a changed setting re-runs that stage and everything downstream, and a killed run continues
from its last finished stage. ``--status`` prints which stages are done.

Modules: ``config`` (settings and the YAML loader), ``stages`` (the folders, their manifests and
resumption), ``prepare`` (model, probes, corpus, data), ``power`` (the simulated power), ``runs`` (train,
eval, compare), ``report`` (the compare stage's statistics and report) and ``runner`` (the entry points).
Everything public is re-exported here.
"""

from val_probing.in2.experiment.design import (
    ARM_LABEL,
    ARMS,
    BACKENDS,
    COMPARISONS,
    EMBEDDED,
    FORMAT,
    STAGE_FILE,
    TINY_LLAMA,
    VERSIONED,
    Backend,
    ComparisonSettings,
    CorpusSettings,
    EvaluationSettings,
    ExperimentConfig,
    ExperimentError,
    ProbeSettings,
    SynthesisSettings,
    TrainingSettings,
    load_experiment,
)
from val_probing.in2.experiment.power import simulated_power
from val_probing.in2.experiment.prepare import (
    PARAGRAPH_CHARS,
    PREPARE_STAGES,
    base_model,
    check_arms,
    installed_distributions,
    package_texts,
    probe_spec,
)
from val_probing.in2.experiment.runner import STAGES, check_out, run_experiment, stage_names, stage_status
from val_probing.in2.experiment.runs import RUN_STAGES, eval_metadata
from val_probing.in2.experiment.stages import (
    Run,
    Stage,
    StageRecord,
    digest,
    inputs_hash,
    read_stage,
    run_stage,
    versions,
)

__all__ = [
    "ARMS",
    "ARM_LABEL",
    "BACKENDS",
    "COMPARISONS",
    "EMBEDDED",
    "FORMAT",
    "PARAGRAPH_CHARS",
    "PREPARE_STAGES",
    "RUN_STAGES",
    "STAGES",
    "STAGE_FILE",
    "TINY_LLAMA",
    "VERSIONED",
    "Backend",
    "ComparisonSettings",
    "CorpusSettings",
    "EvaluationSettings",
    "ExperimentConfig",
    "ExperimentError",
    "ProbeSettings",
    "Run",
    "Stage",
    "StageRecord",
    "SynthesisSettings",
    "TrainingSettings",
    "base_model",
    "check_arms",
    "check_out",
    "digest",
    "eval_metadata",
    "inputs_hash",
    "installed_distributions",
    "load_experiment",
    "package_texts",
    "probe_spec",
    "read_stage",
    "run_experiment",
    "run_stage",
    "simulated_power",
    "stage_names",
    "stage_status",
    "versions",
]
