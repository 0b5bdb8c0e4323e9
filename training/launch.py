"""How a recipe is launched: the command line that runs it, or the recipe loaded into this process.

Installed as ``val_probing.training.launch``, beside the recipes it launches; ``val-probing train run``
and the IN2 experiment both start a recipe through here.
"""

from __future__ import annotations

import importlib.util
import shlex
import sys
from pathlib import Path
from types import ModuleType

from val_probing.errors import ValProbingError


def launch_command(
    config: Path,
    overrides: list[str],
    recipe: Path,
    accelerate_config: Path | None = None,
    accelerate_args: str = "",
) -> list[str]:
    """The command that runs the recipe: plain python, or `accelerate launch` with a config file; the
    recipe's own arguments (:func:`recipe_argv`) come last."""
    script = [str(recipe), *recipe_argv(config, overrides)]
    if accelerate_config is None:
        return [sys.executable, *script]
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config),
        *shlex.split(accelerate_args), *script,
    ]  # fmt: skip


def recipe_argv(config: Path, overrides: list[str]) -> list[str]:
    """The recipe's own arguments, also what its ``main(argv)`` takes in this process (:func:`load_recipe`):
    ``--config CONFIG KEY=VALUE ...``."""
    return ["--config", str(config), *overrides]


def load_recipe(path: Path) -> ModuleType:
    """A recipe script as a module, its ``main(argv)`` to run in this process."""
    spec = importlib.util.spec_from_file_location(f"_recipe_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ValProbingError(f"{path}: cannot load the recipe (not a Python file?)")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "main", None)):
        raise ValProbingError(f"{path}: the recipe has no main(argv) to run")
    return module
