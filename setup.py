"""Build hook: a wheel also carries the lm-eval task stubs (see val_probing/registration.py).

Everything else about the package is in pyproject.toml. An editable install gets no stubs from here
(they would not land in lm-eval's folder); scripts/install.sh runs `val-probing register` instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

sys.path.insert(0, str(Path(__file__).resolve().parent))
from val_probing.registration import FOLDER, stub_files

# From site-packages/lm_eval/tasks/val_probing/ to site-packages/val_probing/tasks_yaml/.
RELATIVE_TASKS_DIR = Path("..", "..", "..", "val_probing", "tasks_yaml")


class BuildPyWithTaskStubs(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        folder = Path(self.build_lib, "lm_eval", "tasks", FOLDER)
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in stub_files(RELATIVE_TASKS_DIR).items():
            (folder / name).write_text(text, encoding="utf-8")


setup(cmdclass={"build_py": BuildPyWithTaskStubs})
