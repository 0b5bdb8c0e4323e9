"""The lm-eval hooks of the VAL tasks, re-exported from :mod:`val_probing.adapter`.

The shared task YAML names ``class: !function val_probing.lm_eval_adapter.ValTask``; the code lives in
the modules of :mod:`val_probing.adapter`.
"""

from val_probing.adapter.task import (
    VAL_OPTIONS,
    ModelLimit,
    PromptTooLong,
    TaskSetupError,
    ValOptions,
    ValTask,
    aggregate_avg,
    aggregate_bucket,
    aggregate_gap,
    approx_lengths,
    check_prompts_fit,
    fitting_buckets,
    load_probe_set,
    longest_prompt,
    metric_list,
    model_limit,
    order_examples,
    process_results,
    render_prompt,
    spread_order,
)

__all__ = [
    "VAL_OPTIONS",
    "ModelLimit",
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
    "spread_order",
]
