"""Where the VAL task YAML files are, for ``lm_eval --include_path`` and task-plugin entry points."""

from __future__ import annotations

from pathlib import Path

TASKS_DIR: str = str(Path(__file__).resolve().parent / "tasks_yaml")
"""Folder holding ``val_document``, ``val_code``, ``val_database`` and the ``valprobing`` group."""
