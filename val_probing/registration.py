"""Make the VAL tasks visible to ``lm_eval --tasks 'val_*'`` with no ``--include_path``.

lm-eval 0.4.13 has no task-plugin hook: its ``TaskManager`` scans its own ``lm_eval/tasks`` folder plus
``--include_path``. So the package puts one small stub per task into ``lm_eval/tasks/val_probing/``,
each an lm-eval ``include:`` of the real YAML in ``val_probing.tasks_yaml``; the stubs hold no settings
of their own, so they never go stale when the package is updated.

Two ways the stubs get there, with the same content and the same manifest:

* a wheel (``pip install val-probing-*.whl``) carries them, with a path relative to site-packages
  (``setup.py`` writes them at build time through :func:`stub_files`); pip removes them on uninstall;
* an editable install (``pip install -e .``) carries them too, naming the source checkout's absolute
  path: ``setup.py`` hands them to the editable wheel as data files, so pip records them, a second
  ``pip install -e .`` writes them again and ``pip uninstall`` removes them;
* ``val-probing register`` writes the same stubs where an install left none (``scripts/install.sh``
  runs it; it finds them already there), and adds them to the installed distribution's ``RECORD`` so
  that ``pip uninstall val-probing`` removes them too. ``val-probing unregister`` removes them.

Rules: idempotent; a file in the folder that the manifest does not vouch for (absent from it, or changed
since it was written) is never overwritten or deleted; the folder is removed only when it is empty.

It imports nothing heavy (not lm-eval, not even to find it), so ``setup.py`` can use it at build time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from val_probing.errors import ValProbingError

FOLDER = "val_probing"
"""The folder under ``lm_eval/tasks`` that holds the stubs."""

MANIFEST = ".val-probing-manifest.json"
"""Lists the stubs and their sha256; lm-eval reads only ``*.yaml`` files, so it ignores this one."""

TASK_FILES = ("val_document.yaml", "val_code.yaml", "val_database.yaml", "valprobing.yaml")
"""The YAMLs of ``val_probing.tasks_yaml`` that define a task or group (the base is included by them)."""

HEADER = (
    "# Written by val-probing: makes its VAL task visible to lm_eval without --include_path.\n"
    "# Do not edit; `val-probing unregister` (or `pip uninstall val-probing`) removes it.\n"
)


def stub_text(target: str) -> str:
    """The stub for one task: lm-eval merges the included file, so the task is exactly the shipped one."""
    return f"{HEADER}include: {json.dumps(target)}\n"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stub_files(tasks_dir: Path | str) -> dict[str, str]:
    """File name -> text of the stubs and the manifest, for task YAMLs at ``tasks_dir`` (may be relative)."""
    files = {name: stub_text(str(Path(tasks_dir) / name)) for name in TASK_FILES}
    manifest = {
        "written_by": "val-probing",
        "tasks_dir": str(tasks_dir),
        "files": {name: _sha256(text.encode()) for name, text in files.items()},
    }
    files[MANIFEST] = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    return files


# --------------------------------------------------------------------------------------- the installed side


class RegistrationError(ValProbingError):
    """Registration cannot go ahead; the message says why and what to do."""


@dataclass(frozen=True)
class Change:
    """What register / unregister did, for the command to print."""

    folder: Path
    written: tuple[Path, ...] = ()
    removed: tuple[Path, ...] = ()
    unchanged: tuple[Path, ...] = ()


def lm_eval_tasks_folder() -> Path:
    """``lm_eval/tasks`` of the lm-eval that this interpreter imports (found without importing it)."""
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise RegistrationError(
            "lm-eval is not installed in this environment: install it (pip install 'val-probing[lmeval]')"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "tasks"
    if not folder.is_dir():
        raise RegistrationError(f"{folder}: lm-eval's task folder is missing (a broken lm-eval install?)")
    return folder


def _read_manifest(folder: Path) -> dict[str, str]:
    path = folder / MANIFEST
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RegistrationError(
            f"{path}: unreadable manifest ({err}); remove the folder {folder} by hand"
        ) from err
    if not isinstance(data, dict) or data.get("written_by") != "val-probing":
        raise RegistrationError(f"{path}: not a val-probing manifest; refusing to touch {folder}")
    files = data.get("files")
    if not isinstance(files, dict):
        raise RegistrationError(f"{path}: not a val-probing manifest; refusing to touch {folder}")
    return {str(k): str(v) for k, v in files.items()}


def _ours(path: Path, manifest: Mapping[str, str]) -> bool:
    """Whether ``path`` is a stub we wrote and nobody changed since."""
    expected = manifest.get(path.name)
    return expected is not None and path.is_file() and _sha256(path.read_bytes()) == expected


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def installed_record() -> Path | None:
    """The installed val-probing distribution's ``RECORD`` (None when it is not installed, e.g. in a test)."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution("val-probing")
    except PackageNotFoundError:
        return None
    record = next((f for f in dist.files or () if f.name == "RECORD"), None)
    return Path(str(record.locate())) if record is not None else None


def _update_record(record: Path | None, add: list[Path], drop: list[Path]) -> None:
    """List ``add`` in ``RECORD`` (so ``pip uninstall val-probing`` removes them) and forget ``drop``."""
    if record is None or not record.is_file():
        return
    root = record.parent.parent  # RECORD paths are relative to the folder holding the dist-info
    lines = record.read_text(encoding="utf-8").splitlines()
    names = {os.path.relpath(p, root) for p in [*add, *drop]}
    kept = [line for line in lines if line.split(",", 1)[0] not in names]
    kept += [f"{os.path.relpath(p, root)},," for p in add]
    _write(record, "\n".join(kept) + "\n")


def register(tasks_dir: Path, lm_eval_tasks: Path, record: Path | None) -> Change:
    """Write the stubs for the task YAMLs at ``tasks_dir`` into ``lm_eval_tasks/val_probing``.

    ``record``: the installed distribution's ``RECORD`` (:func:`installed_record`), which learns the
    stubs so that ``pip uninstall`` removes them; None leaves it alone.
    """
    folder = lm_eval_tasks / FOLDER
    wanted = stub_files(tasks_dir.resolve())
    manifest = _read_manifest(folder)
    blocked = [
        folder / name
        for name in wanted
        if name != MANIFEST and (folder / name).exists() and not _ours(folder / name, manifest)
    ]
    if blocked:
        raise RegistrationError(
            f"refusing to overwrite {', '.join(map(str, blocked))}: not written by val-probing (or changed "
            "since); move them away, then run val-probing register again"
        )
    written, unchanged = [], []
    try:
        folder.mkdir(exist_ok=True)
        for name, text in wanted.items():  # the manifest last: it vouches only for stubs on disk
            path = folder / name
            if path.is_file() and path.read_text(encoding="utf-8") == text:
                unchanged.append(path)
                continue
            _write(path, text)
            written.append(path)
        _update_record(record, add=[folder / name for name in wanted], drop=[])
    except OSError as err:
        raise RegistrationError(
            f"{folder}: cannot write the task stubs ({err.strerror or err}); lm-eval's folder must be "
            'writable by this user (or use --include_path "$(val-probing tasks-path)")'
        ) from err
    return Change(folder, written=tuple(written), unchanged=tuple(unchanged))


def unregister(lm_eval_tasks: Path, record: Path | None) -> Change:
    """Remove the stubs the manifest vouches for (and their ``RECORD`` lines); the folder once empty."""
    folder = lm_eval_tasks / FOLDER
    if not folder.exists():
        return Change(folder)
    manifest = _read_manifest(folder)
    changed = [folder / n for n in manifest if (folder / n).exists() and not _ours(folder / n, manifest)]
    if changed:
        raise RegistrationError(
            f"refusing to delete {', '.join(map(str, changed))}: changed since val-probing wrote it; "
            "remove it by hand if it is not yours"
        )
    removed = []
    try:
        for name in [*manifest, MANIFEST]:
            path = folder / name
            if path.exists():
                path.unlink()
                removed.append(path)
        if not any(folder.iterdir()):
            folder.rmdir()
        _update_record(record, add=[], drop=[folder / name for name in [*manifest, MANIFEST]])
    except OSError as err:
        raise RegistrationError(f"{folder}: cannot remove the task stubs ({err.strerror or err})") from err
    return Change(folder, removed=tuple(removed))


PLUGIN_GROUP = "lm_eval.tasks"
"""The entry-point group of lm-eval's proposed task-plugin hook (PR #4015), which pyproject.toml declares."""


def loads_task_plugins(lm_eval_tasks: Path) -> bool:
    """Whether this lm-eval discovers task plugins through the ``lm_eval.tasks`` entry points itself.

    Read from its source (nothing imported): its task-loading modules name the entry-point group. Then
    the package's entry point already defines the tasks, and stubs would define every one twice.
    """
    for path in sorted(lm_eval_tasks.glob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if "entry_points" in text and (f'"{PLUGIN_GROUP}"' in text or f"'{PLUGIN_GROUP}'" in text):
            return True
    return False


def registration_problem(lm_eval_tasks: Path) -> str | None:
    """None when ``lm_eval --tasks 'val_*'`` will find the tasks; else what is wrong and the fix."""
    if loads_task_plugins(lm_eval_tasks) or is_registered(lm_eval_tasks):
        return None
    folder = lm_eval_tasks / FOLDER
    missing = [name for name in TASK_FILES if not (folder / name).is_file()]
    what = (
        f"the task stubs {', '.join(missing)} are missing from {folder}"
        if missing
        else f"the task stubs in {folder} are not the ones val-probing wrote"
    )
    return (
        f"{what}, so lm_eval answers 'Tasks not found: val_*'. A `pip install -e .` of a checkout older than "
        "the editable install's own stubs deletes those `val-probing register` wrote (pip removes the files "
        "the old install recorded): run `val-probing register` again (or pass --include_path "
        '"$(val-probing tasks-path)")'
    )


def is_registered(lm_eval_tasks: Path) -> bool:
    """Whether every stub is in place and vouched for by the manifest."""
    folder = lm_eval_tasks / FOLDER
    try:
        manifest = _read_manifest(folder)
    except RegistrationError:
        return False
    return all(_ours(folder / name, manifest) for name in TASK_FILES)
