"""The CI regression gate: a baseline file, and a check of a new run against it.

A **baseline** (YAML, human-editable, strict schema in docs/ci-gate.md) records, per task, the
``avg``, ``gap`` and bucket means (x100, recorded from the samples and checked against them), the run
settings that produced them (context length, buckets, limit, seed, probe source/pool/version/hash),
the depth regions, the environment (backend, serving settings, versions: :mod:`.provenance`) and
tolerances; beside it a JSONL file keeps the per-sample reference scores, so a check can PAIR each
question of the new run with the same question of the baseline run, matched on
``(set_id, position_id, key)``. The two files are one unit: the samples file is content-addressed and
the YAML records its sha256 (see :func:`write_baseline`).

A **check** tests a small family per task, fixed in advance: ``avg``, the pooled depth regions
``start``, ``middle`` and ``end`` (:class:`Regions`: first quarter, middle half, last quarter of the
buckets by default) and the ``shape`` (the middle's dip below the edges, pooled):

* With samples on both sides (the normal case: ``lm_eval --log_samples``), each is a one-sided paired
  sign-flip test of "worse" on the pooled matched questions (:func:`sign_flip_p`; McNemar's exact test
  for 0/1 scores in equal cells): under "no change" the two outcomes of a question are exchangeable,
  so its size is at most alpha at every run size. With two or more paired tasks the middle pooled
  over them (``all``, the paper's "All": Stouffer-weighted per task) is tested too. A weighted Holm
  corrects the family of every task and the pooled middle (half of alpha to the pooled middle, half
  to the tasks' 15 tests, whatever the number of buckets: more data never dilutes alpha). A metric
  fails when its Holm-adjusted p-value is below alpha and it got worse by more than the margin
  ``min_drop``; the shape fails only when the task's middle's own test is also below the tasks' share
of alpha over the shapes. Improvements never
  fail. Per-bucket numbers and the max-min gap are reported with 95% paired intervals, informational
  unless ``gate_buckets``.
* Without samples on either side, the check falls back to the tolerances alone (a metric fails
  when it is worse by more than its tolerance) and says so in every output.

Unusable input (different settings or probe hash, a task missing, samples that do not match, a
baseline pair whose hash does not match) is a :class:`GateInputError`: the CLI exits 2. A check
never passes silently. bench/bench_gate.py measures the false-alarm rate and power by simulation.

This face holds what the commands, the HTML report and a user's script call: make, write and read a
baseline, read a run, check it, render the verdict, plan and calibrate, and their settings, result and
error types. The rest (the statistics of :mod:`.stats`, the file format's helpers in
:mod:`.baseline_file`, the provenance of :mod:`.provenance`, the simulation of :mod:`.simulate`) is
imported from its module by name.
"""

from __future__ import annotations

from val_probing.gate.baseline import (
    Baseline,
    BaselineTask,
    GateInputError,
    GateResult,
    MetricCheck,
    MetricKind,
    Regions,
    Statistics,
    Tolerances,
    make_baseline,
)
from val_probing.gate.baseline_file import read_baseline, samples_files_beside, write_baseline
from val_probing.gate.calibrate import Calibration, calibrate, format_calibration
from val_probing.gate.compare import check, load_run, read_run
from val_probing.gate.plan import plan
from val_probing.gate.render import format_markdown, format_table, junit_xml, verdict

__all__ = [
    "Baseline",
    "BaselineTask",
    "Calibration",
    "GateInputError",
    "GateResult",
    "MetricCheck",
    "MetricKind",
    "Regions",
    "Statistics",
    "Tolerances",
    "calibrate",
    "check",
    "format_calibration",
    "format_markdown",
    "format_table",
    "junit_xml",
    "load_run",
    "make_baseline",
    "plan",
    "read_baseline",
    "read_run",
    "samples_files_beside",
    "verdict",
    "write_baseline",
]
