"""One rule for output paths, in every command: checked before the work starts, and a failed write is
a user-facing error that names the path (exit 2), never a traceback.

    check_output_file(path)   a file will be written there: not a folder, its folder exists or can be
                              made, and is writable
    check_output_dir(path)    a folder will be written there: not a file, exists or can be made, writable
    writing(path)             a context manager that turns any OSError inside it into ``OutputError``
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from val_probing.errors import ValProbingError


class OutputError(ValProbingError):
    """An output path that cannot be written; the message names the path."""


def _reason(err: OSError) -> str:
    return err.strerror or errno.errorcode.get(err.errno or 0, "") or str(err)


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def _check_folder_writable(folder: Path, path: Path, what: str) -> None:
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise OutputError(f"{path}: cannot write the {what}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: cannot write the {what}: {existing} is not writable")
    # os.access can pass where nothing can be made (/proc, /sys, as root too): make and remove a folder
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".val-probing-check-", dir=existing))
    except OSError as err:
        reason = _reason(err)
        if err.errno == errno.ENOENT:  # the folder is there, yet nothing can be made in it (/proc, /sys)
            reason = "nothing can be created in it (a virtual file system such as /proc?)"
        raise OutputError(f"{path}: cannot write the {what}: {existing}: {reason}") from err


def check_output_file(path: Path | str, what: str = "output file") -> Path:
    """Check, before any work, that a file can be written at ``path``; return it as a Path."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: cannot write the {what}: it is a folder (name a file)")
    if path.exists() and not os.access(path, os.W_OK):
        # replaced atomically, so the file's own mode matters less than its folder's; still refuse a
        # read-only file: the user marked it so
        raise OutputError(f"{path}: cannot write the {what}: the file is read-only")
    _check_folder_writable(path.parent, path, what)
    return path


def check_output_dir(path: Path | str, what: str = "output folder") -> Path:
    """Check, before any work, that a folder can be written at ``path``; return it as a Path."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: cannot write the {what}: it is a file, not a folder")
    _check_folder_writable(path, path, what)
    return path


@contextmanager
def writing(path: Path | str, what: str = "output") -> Iterator[None]:
    """Turn a failed write into an ``OutputError`` naming ``path``."""
    try:
        yield
    except OSError as err:
        raise OutputError(f"{path}: cannot write the {what}: {_reason(err)}") from err
