"""Where the VAL task YAML files are, for ``lm_eval --include_path`` and task-plugin entry points."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

TASKS_PACKAGE = "val_probing.tasks_yaml"
"""The package whose folder holds the task YAMLs (the ``lm_eval.tasks`` entry point names it)."""

TASKS_DIR: str = str(Path(str(files(TASKS_PACKAGE))))
"""Folder holding ``val_document``, ``val_code``, ``val_database`` and the ``valprobing`` group."""
