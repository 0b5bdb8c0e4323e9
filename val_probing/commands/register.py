"""``val-probing register``: make the VAL tasks visible to ``lm_eval`` with no ``--include_path``."""

from __future__ import annotations

import argparse

HELP = "make lm_eval see the VAL tasks with no --include_path (writes stubs into lm-eval's task folder)"

EPILOG = """\
lm-eval 0.4.13 has no task-plugin hook, so this writes one small stub per VAL task into
lm_eval/tasks/val_probing/ (each an `include:` of the installed task YAML). Idempotent; it never
overwrites a file it did not write; `val-probing unregister` or `pip uninstall val-probing` removes it.
scripts/install.sh runs it; a wheel and an editable install (pip install -e .) carry the stubs already,
so it only writes them where an install left none (lm_eval then says "Tasks not found").
An lm-eval that loads task plugins through entry points (lm_eval.tasks) needs no stubs: register then
writes none and removes old ones, so no task is defined twice.

examples:
  val-probing register
  val-probing register --check    # exit 1, with the fix, when lm_eval cannot find the VAL tasks
  lm_eval ls tasks | grep val_
  lm_eval --model hf --model_args pretrained=HuggingFaceTB/SmolLM2-135M-Instruct --apply_chat_template \\
      --tasks 'val_*' --metadata '{"context_length": 4096}' --log_samples --output_path runs/
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing: say whether lm_eval finds the VAL tasks (exit 0) or what to do (exit 1)",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from val_probing.lm_eval_tasks import TASKS_DIR
    from val_probing.registration import (
        installed_record,
        lm_eval_tasks_folder,
        loads_task_plugins,
        register,
        registration_problem,
        unregister,
    )

    folder = lm_eval_tasks_folder()
    if args.check:
        problem = registration_problem(folder)
        print(problem or f"VAL tasks registered: lm_eval finds them ({folder})")
        return 1 if problem else 0
    if loads_task_plugins(folder):
        removed = unregister(folder, installed_record()).removed
        for path in removed:
            print(f"removed {path}")
        print(f"lm-eval loads task plugins (entry points lm_eval.tasks): no stubs needed in {folder}")
        return 0
    change = register(Path(TASKS_DIR), folder, installed_record())
    for path in change.written:
        print(f"wrote {path}")
    state = "registered" if change.written else "already registered, nothing written"
    print(f"VAL tasks {state}: {change.folder} -> {TASKS_DIR}")
    return 0
