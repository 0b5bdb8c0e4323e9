"""The lm-evaluation-harness side of the VAL tasks: options, doc order, probes, scoring, length guard, task.

``val_probing.lm_eval_adapter`` re-exports the public names (the task YAML names
``val_probing.lm_eval_adapter.ValTask``).
"""
