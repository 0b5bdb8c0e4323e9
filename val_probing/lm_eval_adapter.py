"""The lm-eval hooks of the VAL tasks, re-exported from :mod:`val_probing.adapter`.

The shared task YAML names ``class: !function val_probing.lm_eval_adapter.ValTask``; the code lives in
the modules of :mod:`val_probing.adapter` (options, order, docs, scoring, guard, task).
"""

from val_probing.adapter.docs import ProbeSet, load_probe_set, render_prompt, resolve_buckets
from val_probing.adapter.guard import (
    ModelLimit,
    PromptTooLong,
    approx_lengths,
    check_prompts_fit,
    longest_prompt,
    model_limit,
)
from val_probing.adapter.options import VAL_OPTIONS, TaskSetupError, ValOptions
from val_probing.adapter.order import order_examples, spread_order
from val_probing.adapter.scoring import (
    Item,
    aggregate_avg,
    aggregate_bucket,
    aggregate_gap,
    metric_list,
    process_results,
)
from val_probing.adapter.task import ValTask
from val_probing.buckets import fitting_buckets

__all__ = [
    "VAL_OPTIONS",
    "Item",
    "ModelLimit",
    "ProbeSet",
    "PromptTooLong",
    "TaskSetupError",
    "ValOptions",
    "ValTask",
    "aggregate_avg",
    "aggregate_bucket",
    "aggregate_gap",
    "approx_lengths",
    "check_prompts_fit",
    "fitting_buckets",
    "load_probe_set",
    "longest_prompt",
    "metric_list",
    "model_limit",
    "order_examples",
    "process_results",
    "render_prompt",
    "resolve_buckets",
    "spread_order",
]
