"""``val-probing register``: make the VAL tasks visible to ``lm_eval`` with no ``--include_path``."""

from __future__ import annotations

import argparse

HELP = "make lm_eval see the VAL tasks with no --include_path (writes stubs into lm-eval's task folder)"

EPILOG = """\
lm-eval 0.4.13 has no task-plugin hook, so this writes one small stub per VAL task into
lm_eval/tasks/val_probing/ (each an `include:` of the installed task YAML). Idempotent; it never
overwrites a file it did not write; `val-probing unregister` or `pip uninstall val-probing` removes it.
scripts/install.sh runs it; a wheel install carries the stubs already.

examples:
  val-probing register
  lm_eval ls tasks | grep val_
  lm_eval --model hf --model_args pretrained=HuggingFaceTB/SmolLM2-135M-Instruct --apply_chat_template \\
      --tasks 'val_*' --metadata '{"context_length": 4096}' --log_samples --output_path runs/
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from val_probing.lm_eval_tasks import TASKS_DIR
    from val_probing.registration import installed_record, lm_eval_tasks_folder, register

    change = register(Path(TASKS_DIR), lm_eval_tasks_folder(), installed_record())
    for path in change.written:
        print(f"wrote {path}")
    state = "registered" if change.written else "already registered, nothing written"
    print(f"VAL tasks {state}: {change.folder} -> {TASKS_DIR}")
    return 0
