"""The lm-evaluation-harness side of the VAL tasks: options, doc order, probes, scoring, length guard, task.

Each module is imported by name. ``val_probing.lm_eval_adapter`` is the address the task YAML names
(``val_probing.lm_eval_adapter.ValTask``), with the two errors a script around a run may catch.
"""
