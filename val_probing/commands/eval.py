"""``val-probing eval ...``: ``lm_eval`` with the VAL tasks visible.

Every argument is handed to lm-eval untouched (``cli.py`` routes ``val-probing eval`` here before its
own parser runs); ``--include_path`` is added only when the tasks are not registered in lm-eval's own
folder (``val-probing register``). lm-eval runs in this process, so errors of the
VAL tasks (bad metadata, prompts longer than the model) are printed without a traceback (exit 2).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from val_probing.errors import ValProbingError

log = logging.getLogger(__name__)

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

_SUBCOMMANDS = ("run", "ls", "validate")


class EvalArgumentError(ValProbingError):
    """Arguments val-probing eval cannot forward."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("lm_eval_args", nargs=argparse.REMAINDER, help="arguments for lm_eval")


def lm_eval_argv(argv: Sequence[str], tasks_dir: str | None) -> list[str]:
    """lm_eval's argv: the subcommand (``run`` unless given), ``--include_path tasks_dir``, then ``argv``.

    ``tasks_dir`` None adds no include path (the tasks are registered in lm-eval's own folder), and a
    ``--include_path`` of the user's goes through untouched.
    """
    args = list(argv)
    if tasks_dir is not None and any(a == "--include_path" or a.startswith("--include_path=") for a in args):
        raise EvalArgumentError(
            "val-probing eval adds --include_path itself (lm-eval 0.4 takes one folder); run "
            "`val-probing register` once, then your own --include_path works beside the VAL tasks"
        )
    command = args.pop(0) if args and args[0] in _SUBCOMMANDS else "run"
    if command == "run" and not args:
        args = ["--help"]
    include = ["--include_path", tasks_dir] if tasks_dir is not None else []
    return [command, *include, *args]


def forward(argv: list[str]) -> int:
    """Run lm_eval with ``argv`` (plus the VAL include path unless the tasks are registered)."""
    from lm_eval.__main__ import cli_evaluate

    from val_probing.lm_eval_tasks import TASKS_DIR
    from val_probing.registration import lm_eval_tasks_folder, registration_problem

    problem = registration_problem(lm_eval_tasks_folder())  # lm-eval imported above: its folder exists
    if problem is not None and argv[:1] not in (["--help"], ["-h"]):
        print(f"val-probing eval: note: {problem}. This run adds --include_path itself.", file=sys.stderr)
    try:
        full = lm_eval_argv(argv, None if problem is None else TASKS_DIR)
    except ValProbingError as err:
        print(f"val-probing eval: error: {err}", file=sys.stderr)
        return 2
    if full[-1:] == ["--help"] and len(argv) <= 1:
        print(EPILOG)
    log.info("lm_eval %s", " ".join(full))
    saved = sys.argv
    sys.argv = ["lm_eval", *full]
    try:
        cli_evaluate()
    except SystemExit as done:
        code = done.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except ValProbingError as err:
        print(f"val-probing eval: error: {err}", file=sys.stderr)
        return 2
    finally:
        sys.argv = saved
    return 0


def run(args: argparse.Namespace) -> int:
    return forward(list(args.lm_eval_args))
