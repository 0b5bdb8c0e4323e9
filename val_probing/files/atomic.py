"""Atomic writes: every file the package writes goes through :func:`atomic_path`, and the ``.NAME.PID.tmp``
leftovers of killed runs are removed (:func:`remove_orphans`) once their process is gone."""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from val_probing.files.outputs import output_target, writing, writing_in_place

log = logging.getLogger(__name__)


_ORPHAN = re.compile(r"^\..+\.(?P<pid>\d+)\.tmp$")


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (a process of another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphans(folder: Path, name: str | None = None) -> list[Path]:
    """Delete ``.NAME.PID.tmp`` files and folders in ``folder`` whose process is no longer alive
    (only those of ``NAME`` = ``name`` when given)."""
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir()) if folder.is_dir() else []
    except OSError as err:
        log.warning("cannot list %s for leftovers of killed runs (%s)", folder, err.strerror or err)
        return removed
    for path in entries:
        match = _ORPHAN.match(path.name)
        if match is None or pid_alive(int(match.group("pid"))):
            continue
        if name is not None and path.name != f".{name}.{match.group('pid')}.tmp":
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as err:
            log.warning("cannot remove %s, left by a killed run (%s)", path, err.strerror or err)
            continue
        removed.append(path)
    if removed:
        log.info("removed %d temporary file(s) left by killed runs in %s", len(removed), folder)
    return removed


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``, on error it is removed.

    Every file the package writes goes through here, so nothing is ever half-written. Temporary
    files of earlier writes of ``path`` whose process is gone (killed runs) are removed first.
    """
    path, in_place = output_target(path)  # a symbolic link's target; a device or FIFO is written in place
    if in_place:
        with writing_in_place(path) as tmp:
            yield tmp
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    remove_orphans(path.parent, path.name)  # what a killed earlier write of this file left behind
    try:
        with writing(path):  # a failed write (the folder, the temporary file, the rename) names `path`
            path.parent.mkdir(parents=True, exist_ok=True)
            yield tmp
            tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
