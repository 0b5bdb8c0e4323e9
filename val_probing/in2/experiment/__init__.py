"""IN2's effect, measured: does where the supervision sits shape the position curve? (issues 13, 24)

One command (``val-probing train experiment --config CONFIG --out DIR``) runs a placement experiment
with the project's own tools end to end. Two regimes share the stages:

* the SmolLM2 fine-tune (``in2_placement_cpu``): the installed distributions' prose, arms ``uniform``
  (IN2) and ``edges`` (by filler rank), one seed;
* the powered from-scratch regime (``in2_powered_cpu``): a synthetic pseudo-word language
  (``in2.synthetic``), a random Llama with a word-level tokenizer per seed (``in2.scratch``), disjoint arms
  by needle token depth (``middle`` [0.25, 0.75) vs ``ends``, and ``uniform``), several seeds per arm, and
  a pre-registered primary endpoint (``EndpointSettings``: the middle-minus-edges contrast per trained
  model, an exact permutation test across models).

Stages, in order (``experiment_stages(config)``):

* **corpus / model / probes**: the raw texts; the base model (scratch: one initialisation per seed); the
  VAL probes at the training length (``build.cached_probes``) every model is evaluated on, with the
  simulated power of the per-question tests recorded before any model runs.
* **data_sSEED**: ONE synthesis plan per seed (segments, QA pairs, fillers, per-example seeds) saved once
  per arm; only the needed segments' places differ (``check_arms``), and each arm's manifest holds its
  needle-depth histogram and region counts, the proof that the arms are disjoint.
* **train_ARM_sSEED**: the shipped recipe (``training/recipes/in2_sft.py``) unchanged, one config for all
  arms; the seed reaches the trainer; keyed on the recipe's and its config's content.
* **eval_base / eval_ARM_sSEED**: ``val-probing eval`` (lm-eval, ``--log_samples``) on the same probes.
* **compare**: the primary endpoint (``endpoint.endpoint_test``), per-question paired differences with
  bootstrap intervals and the gate's one-sided tests (``analysis.compare_runs``), the figure (each arm's
  curve with its seeds' spread), ``summary.md`` and ``results.json``.

Every stage writes into ``DIR/stages/.NAME.tmp`` and is renamed to ``DIR/stages/NAME`` when done, with a
``stage.json`` (inputs and their hash, outputs, times, versions) and a folder manifest; it is reused only
when it verifies against this run's inputs (its settings and its upstream stages' outputs), so a changed
setting re-runs it and everything downstream, and a killed run continues. ``--status`` prints the state.

Modules: ``design`` (settings and the YAML loader), ``stages`` (folders, manifests, resumption),
``prepare`` (corpus, model, probes, data), ``package_prose`` (the installed distributions' prose),
``power`` (simulated power, before any run), ``endpoint`` (the primary endpoint), ``lookup`` (whether a
scratch model finds a sentence by its content: the regime's precondition), ``runs`` (train,
evaluate, compare), ``analysis`` (the statistics and the report), ``runner`` (the entry points). This
package's face is the short list below; tests of internals import the module by name.
"""

from val_probing.in2.experiment.design import ExperimentConfig, ExperimentError, load_experiment
from val_probing.in2.experiment.runner import experiment_stages, run_experiment, stage_names, stage_status

__all__ = [
    "ExperimentConfig",
    "ExperimentError",
    "experiment_stages",
    "load_experiment",
    "run_experiment",
    "stage_names",
    "stage_status",
]
