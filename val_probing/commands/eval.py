"""``val-probing eval ...``: ``lm_eval`` with the VAL tasks visible.

Every argument is handed to lm-eval untouched (``cli.py`` routes ``val-probing eval`` here before its
own parser runs); ``--include_path`` is added only when the tasks are not registered in lm-eval's own
folder (``val-probing register``). lm-eval runs in this process, so errors of the
VAL tasks (bad metadata, prompts longer than the model) are printed without a traceback (exit 2).
"""

from __future__ import annotations

import argparse
import sys

from val_probing.errors import ValProbingError
from val_probing.evaluate import (
    EvalFailed,
    find_tasks,
    forwarded_argv,
    run_lm_eval,
)

HELP = "run lm_eval with the VAL tasks visible (all arguments go to lm_eval)"

EPILOG = """\
Everything after 'eval' is passed to lm_eval ('lm_eval run --help' lists it). --include_path is added
when the VAL tasks are not registered (`val-probing register`); once they are, `lm_eval` itself works.

examples:
  # the three tasks and the group's mean ("All"), 4K-token contexts sized with the model's tokenizer
  val-probing eval --model hf --model_args pretrained=HuggingFaceTB/SmolLM2-135M-Instruct \\
      --apply_chat_template --tasks valprobing --metadata '{"context_length": 4096}' \\
      --log_samples --output_path runs/

  # vLLM, two context lengths, the official template for Mistral-family models
  val-probing eval --model vllm \\
      --model_args pretrained=mistralai/Mistral-7B-Instruct-v0.2,max_model_len=9000 \\
      --tasks 'val_*' --metadata '{"context_length": [4096, 8192], "template": "film"}' \\
      --log_samples --output_path runs/

  # the authors' VaLProbing-32K data from a local folder
  val-probing eval --model vllm --model_args pretrained=In2Training/FILM-7B,max_model_len=33000 \\
      --tasks valprobing --metadata '{"source": "official", "data": "ValProbing-32K/", "template": "film"}' \\
      --log_samples --output_path runs/

  val-probing eval ls tasks       # lm_eval's task list, VAL tasks included
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("lm_eval_args", nargs=argparse.REMAINDER, help="arguments for lm_eval")


def forward(argv: list[str]) -> int:
    """Run lm_eval with ``argv`` (plus the VAL include path unless the tasks are registered)."""
    try:
        tasks = find_tasks()  # lm-eval not installed: said here, in one line
        full = forwarded_argv(argv, include_path=tasks.include_path)
    except ValProbingError as err:
        print(f"val-probing eval: error: {err}", file=sys.stderr)
        return 2
    if tasks.note is not None and argv[:1] not in (["--help"], ["-h"]):
        print(f"val-probing eval: note: {tasks.note}. This run adds --include_path itself.", file=sys.stderr)
    if full[-1:] == ["--help"] and len(argv) <= 1:
        print(EPILOG)
    try:
        run_lm_eval(full, in_process=True)
    except EvalFailed as err:
        if err.reason is not None:  # a VAL error: one line; lm-eval prints its own errors
            print(f"val-probing eval: error: {err.reason}", file=sys.stderr)
        return err.code
    return 0


def run(args: argparse.Namespace) -> int:
    return forward(list(args.lm_eval_args))
