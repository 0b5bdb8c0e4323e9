"""``val-probing unregister``: remove the task stubs that ``val-probing register`` wrote."""

from __future__ import annotations

import argparse

HELP = "remove the VAL task stubs from lm-eval's task folder (undoes val-probing register)"

EPILOG = """\
Removes only the files val-probing wrote (and the folder once it is empty); a file changed since is
left alone with an error. `pip uninstall val-probing` does the same.

examples:
  val-probing unregister
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    from val_probing.registration import installed_record, lm_eval_tasks_folder, unregister

    change = unregister(lm_eval_tasks_folder(), installed_record())
    for path in change.removed:
        print(f"removed {path}")
    print(f"VAL tasks unregistered: {change.folder} {'removed' if change.removed else 'was not there'}")
    return 0
