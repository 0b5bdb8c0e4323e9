"""IN2 training recipes and their configs, installed as the package ``val_probing.training``.

Recipes (``recipes/NAME.py``) and configs (``configs/NAME.yaml``) ship in the wheel and are found by
name, so ``val-probing train run`` works from an install as well as from a clone. The data synthesis
that feeds them is ``val_probing.in2``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from val_probing.errors import ValProbingError

DEFAULT_RECIPE = "in2_sft"


def _shipped(kind: str, suffix: str) -> dict[str, Path]:
    folder = Path(str(files(__name__) / kind))
    return {p.stem: p for p in sorted(folder.glob(f"*{suffix}")) if not p.name.startswith("_")}


def recipes() -> dict[str, Path]:
    """The shipped recipes, by name."""
    return _shipped("recipes", ".py")


def configs() -> dict[str, Path]:
    """The shipped configs (training, accelerate and, under ``configs/experiments``, experiments), by name."""
    return {**_shipped("configs", ".yaml"), **_shipped("configs/experiments", ".yaml")}


def _resolve(value: str, shipped: dict[str, Path], what: str) -> Path:
    path = Path(value)
    if path.is_file():
        return path
    if value in shipped:
        return shipped[value]
    known = ", ".join(shipped) or "none"
    raise ValProbingError(
        f"{value}: no such {what} file, and no shipped {what} of that name (shipped: {known})"
    )


def recipe_path(value: str = DEFAULT_RECIPE) -> Path:
    """A recipe by shipped name (``in2_sft``) or by path."""
    return _resolve(value, recipes(), "recipe")


def config_path(value: str) -> Path:
    """A config by shipped name (``in2_tiny_cpu``) or by path."""
    return _resolve(value, configs(), "config")
