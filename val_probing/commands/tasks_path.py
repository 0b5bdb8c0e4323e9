"""``val-probing tasks-path``: print the folder of the VAL task YAML files for ``lm_eval --include_path``."""

from __future__ import annotations

import argparse

HELP = "print the folder holding the VAL lm-eval tasks (for lm_eval --include_path)"

EPILOG = """\
examples:
  lm_eval --include_path "$(val-probing tasks-path)" --tasks valprobing \\
      --model hf --model_args pretrained=HuggingFaceTB/SmolLM2-135M-Instruct --apply_chat_template \\
      --metadata '{"context_length": 4096}' --log_samples --output_path runs/

  lm_eval ls tasks --include_path "$(val-probing tasks-path)" | grep val_
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    from val_probing.lm_eval_tasks import TASKS_DIR

    print(TASKS_DIR)
    return 0
