"""The ``val-probing`` command: one subcommand per module in ``val_probing.commands``.

Each command module is thin (argument parsing and I/O only) and exposes:

    HELP: str                                   one line for ``val-probing --help``
    EPILOG: str                                 examples shown by ``val-probing CMD --help``
    def add_arguments(parser) -> None
    def run(args) -> int                        the exit code

Heavy imports (torch, vllm, lm_eval, matplotlib) happen inside ``run``, so ``--help`` stays fast.
Logging is configured here, at the entry point, and nowhere else.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

from val_probing import __version__
from val_probing.errors import ValProbingError

# name -> module under val_probing.commands
COMMANDS: dict[str, str] = {
    "build": "build",
    "score": "score",
    "tasks-path": "tasks_path",
    "register": "register",
    "unregister": "unregister",
    "eval": "eval",
    "demo": "demo",
    "plot": "plot",
    "report": "report",
    "html": "webpage",
    "baseline": "baseline",
    "check": "check",
    "calibrate": "calibrate",
    "plan": "plan",
    "train": "train",
}


def _available_commands() -> dict[str, ModuleType]:
    found: dict[str, ModuleType] = {}
    for name, module in COMMANDS.items():
        try:
            found[name] = importlib.import_module(f"val_probing.commands.{module}")
        except ModuleNotFoundError as err:
            if err.name != f"val_probing.commands.{module}":
                raise
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="val-probing",
        description="VAL probing: where in the context does your LLM stop reading? (arXiv 2404.16811)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'val-probing COMMAND --help' for examples.",
    )
    parser.add_argument("--version", action="version", version=f"val-probing {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module in _available_commands().items():
        cmd = sub.add_parser(
            name,
            help=module.HELP,
            description=module.HELP,
            epilog=getattr(module, "EPILOG", None),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `eval` forwards everything after it to lm_eval untouched (argparse would eat lm_eval's flags).
    if argv[:1] == ["eval"] and "eval" in _available_commands():
        from val_probing.commands import eval as eval_cmd

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        return eval_cmd.forward(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args._run(args))
    except ValProbingError as err:
        print(f"val-probing {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
