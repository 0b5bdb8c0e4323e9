"""Build hooks: a wheel, and an editable install, also carry the lm-eval task stubs (see
val_probing/registration.py). Everything else about the package is in pyproject.toml.

* a wheel: the stubs go into its ``lm_eval/tasks/val_probing/``, with a path relative to site-packages;
* an editable install (``pip install -e .``): the stubs name this checkout's ``tasks_yaml/`` and travel as
  the wheel's data files (placed under site-packages), because an editable wheel carries nothing else
  outside the package. pip records them like any installed file, so a second ``pip install -e .`` (after a
  pull, or to add an extra) writes them again instead of deleting them, and ``pip uninstall`` removes them.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

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


class EditableWheelWithTaskStubs(editable_wheel):
    def run(self) -> None:
        source = Path(__file__).resolve().parent
        staged = source / "build" / "editable-task-stubs"
        staged.mkdir(parents=True, exist_ok=True)
        names = []
        for name, text in stub_files(source / "tasks_yaml").items():
            (staged / name).write_text(text, encoding="utf-8")
            names.append(str((staged / name).relative_to(source)))
        # data files land relative to the environment's prefix: site-packages/lm_eval/tasks/val_probing
        site = os.path.relpath(sysconfig.get_path("purelib"), sysconfig.get_path("data"))
        self.distribution.data_files = [(os.path.join(site, "lm_eval", "tasks", FOLDER), names)]
        # setuptools' editable build installs data files only where the distribution answers
        # has_data(), a method it does not define (it has has_data_files): answer it for this build.
        self.distribution.has_data = self.distribution.has_data_files  # type: ignore[attr-defined]
        super().run()


setup(cmdclass={"build_py": BuildPyWithTaskStubs, "editable_wheel": EditableWheelWithTaskStubs})
