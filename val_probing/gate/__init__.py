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

from val_probing.gate.baseline_file import (
    baseline_to_yaml,
    read_baseline,
    samples_path_for,
    samples_text,
    write_baseline,
)
from val_probing.gate.compare import (
    check,
    load_run,
    read_run,
)
from val_probing.gate.model import (
    FORMAT,
    SETTINGS,
    Baseline,
    BaselineTask,
    GateInputError,
    GateResult,
    MetricCheck,
    MetricKind,
    Statistics,
    Status,
    Tolerances,
    make_baseline,
    metric_name,
    run_settings,
)
from val_probing.gate.report import (
    format_markdown,
    format_table,
    junit_xml,
    verdict,
)
from val_probing.gate.stats import (
    EXACT_MAX,
    SEQUENTIAL_HITS,
    gap_permutation_p,
    holm,
    monte_carlo_p,
    resamples_for,
    sign_flip_p,
)

__all__ = [
    "EXACT_MAX",
    "FORMAT",
    "SEQUENTIAL_HITS",
    "SETTINGS",
    "Baseline",
    "BaselineTask",
    "GateInputError",
    "GateResult",
    "MetricCheck",
    "MetricKind",
    "Statistics",
    "Status",
    "Tolerances",
    "baseline_to_yaml",
    "check",
    "format_markdown",
    "format_table",
    "gap_permutation_p",
    "holm",
    "junit_xml",
    "load_run",
    "make_baseline",
    "metric_name",
    "monte_carlo_p",
    "read_baseline",
    "read_run",
    "resamples_for",
    "run_settings",
    "samples_path_for",
    "samples_text",
    "sign_flip_p",
    "verdict",
    "write_baseline",
]
