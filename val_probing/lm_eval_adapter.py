"""The lm-eval hook of the VAL tasks: the address the task YAML names.

The shared task YAML names ``class: !function val_probing.lm_eval_adapter.ValTask``; the code lives in
the modules of :mod:`val_probing.adapter` (options, order, docs, scoring, guard, task), imported from
there by name. Beside the task class, the two errors a script around an lm-eval run may catch: a task
that cannot be set up (:class:`TaskSetupError`) and a prompt that does not fit the model
(:class:`PromptTooLong`).
"""

from val_probing.adapter.guard import PromptTooLong
from val_probing.adapter.options import TaskSetupError
from val_probing.adapter.task import ValTask

__all__ = ["PromptTooLong", "TaskSetupError", "ValTask"]
