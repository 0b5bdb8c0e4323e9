"""One rule for output paths, in every command: checked before the work starts, and a failed write is
a user-facing error that names the path (exit 2), never a traceback.

    check_paths(inputs=..., outputs=..., output_folders=...)
                              a command's paths side by side: an output that is (realpath, or a hard link
                              of) one of its inputs or another of its outputs, an output folder that holds
                              one, or an output file that already exists inside an input folder is refused,
                              naming both; an input that is a FIFO, device or socket is refused as what it
                              is (reading a FIFO would wait for a writer)
    check_output_file(path)   a file will be written there: not a folder, its folder exists or can be
                              made, and is writable; a file name the file system can hold (with the
                              temporary file's suffix)
    check_output_dir(path)    a folder will be written there: not a file, exists or can be made, writable
    output_target(path)       where a write of ``path`` lands: a symbolic link is followed (its target is
                              written, dangling too; the link is kept), a character device or FIFO is
                              written in place (``/dev/null``, ``>(gzip > x.gz)``), never replaced by the
                              atomic rename; a block device or socket is refused
    writing(path)             a context manager that turns any OSError inside it into ``OutputError``
"""

from __future__ import annotations

import errno
import fnmatch
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from val_probing.errors import ValProbingError

PathArg = Path | str
# what a command passes for one flag: a path, several (nargs), or None (not given)
PathsArg = PathArg | Iterable[PathArg] | None


class OutputError(ValProbingError):
    """An output path that cannot be written; the message names the path."""


class InputError(ValProbingError):
    """An input path that val-probing will not read (a FIFO, a device, a socket); the message says what."""


def _reason(err: OSError) -> str:
    return err.strerror or errno.errorcode.get(err.errno or 0, "") or str(err)


def _stat(path: Path) -> os.stat_result | None:
    """``os.stat`` of ``path`` (links followed), None where nothing is there (or a dangling link)."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def special_kind(mode: int) -> str | None:
    """What a non-regular, non-folder file is, in words; None for a regular file or a folder."""
    for test, name in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return None


def _name_max(folder: Path) -> int:
    existing = _nearest_existing(folder)
    try:
        return os.pathconf(existing if existing.is_dir() else existing.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _check_names(path: Path, what: str, *, suffix_bytes: int = 0) -> None:
    """Every part of ``path`` fits the file system's name limit (the last one with ``suffix_bytes`` more:
    the temporary file ``.NAME.PID.tmp`` it is written as first)."""
    limit = _name_max(path.parent)
    parts = path.parts
    for index, part in enumerate(parts):
        size = len(os.fsencode(part))
        extra = suffix_bytes if index == len(parts) - 1 else 0
        if size + extra > limit:
            detail = f" ({extra} more for the temporary file)" if extra else ""
            raise OutputError(
                f"{path}: cannot write the {what}: a name of {size} bytes{detail} in it; "
                f"the file system allows {limit}"
            )


def _temporary_suffix_bytes() -> int:
    return len(f"..{os.getpid()}.tmp")  # records.atomic_path writes ``.NAME.PID.tmp`` beside the file


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        try:
            if candidate.exists():
                return candidate
        except OSError:  # a name too long, a loop: look further up
            continue
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


def output_target(path: PathArg, what: str = "output") -> tuple[Path, bool]:
    """``(where a write of path lands, whether it is written in place)``.

    A character device or FIFO is written in place (never replaced); a symbolic link is followed, so its
    target is the file replaced and the link is kept (a dangling link: its target is created). A block
    device or a socket is refused (``OutputError``).
    """
    path = Path(path)
    try:
        found = _stat(path)
    except OSError as err:
        raise OutputError(f"{path}: cannot write the {what}: {_reason(err)}") from err
    if found is not None:
        if stat.S_ISCHR(found.st_mode) or stat.S_ISFIFO(found.st_mode):
            return path, True
        kind = special_kind(found.st_mode)
        if kind is not None:
            raise OutputError(f"{path}: cannot write the {what}: it is {kind}")
    if path.is_symlink():
        return Path(os.path.realpath(path)), False
    return path, False


@contextmanager
def writing_in_place(path: PathArg, what: str = "output") -> Iterator[Path]:
    """Yield a private temporary file; on success its bytes are written into ``path`` (a device or a
    FIFO, opened for writing: never replaced), so a failed write sends nothing half-made."""
    with tempfile.TemporaryDirectory(prefix="val-probing-") as folder, writing(path, what):
        tmp = Path(folder) / "output"
        yield tmp
        with tmp.open("rb") as src, Path(path).open("wb") as dst:
            shutil.copyfileobj(src, dst)


def check_output_file(path: PathArg, what: str = "output file") -> Path:
    """Check, before any work, that a file can be written at ``path``; return it as a Path."""
    path = Path(path)
    _check_names(path, what, suffix_bytes=_temporary_suffix_bytes())
    target, in_place = output_target(path, what)
    if in_place:  # a device or FIFO: opened for writing, its folder is not written
        if not os.access(path, os.W_OK):
            raise OutputError(f"{path}: cannot write the {what}: it is not writable")
        return path
    if target != path:  # a symbolic link: its target is written
        _check_names(target, what, suffix_bytes=_temporary_suffix_bytes())
    if target.is_dir():
        raise OutputError(f"{path}: cannot write the {what}: it is a folder (name a file)")
    if target.exists() and not os.access(target, os.W_OK):
        # replaced atomically, so the file's own mode matters less than its folder's; still refuse a
        # read-only file: the user marked it so
        raise OutputError(f"{path}: cannot write the {what}: the file is read-only")
    _check_folder_writable(target.parent, path, what)
    return path


def check_output_dir(path: PathArg, what: str = "output folder", *, temporary: bool = False) -> Path:
    """Check, before any work, that a folder can be written at ``path``; return it as a Path.

    ``temporary``: it is first written as ``.NAME.PID.tmp`` beside it (its name must leave room)."""
    path = Path(path)
    _check_names(path, what, suffix_bytes=_temporary_suffix_bytes() if temporary else 0)
    if path.is_symlink() and not path.exists():
        raise OutputError(
            f"{path}: cannot write the {what}: it is a dangling symbolic link (to {os.readlink(path)})"
        )
    if path.exists() and not path.is_dir():
        kind = special_kind(path.stat().st_mode)
        raise OutputError(f"{path}: cannot write the {what}: it is {kind or 'a file'}, not a folder")
    _check_folder_writable(path, path, what)
    return path


@contextmanager
def writing(path: PathArg, what: str = "output") -> Iterator[None]:
    """Turn a failed write into an ``OutputError`` naming ``path``."""
    try:
        yield
    except OSError as err:
        raise OutputError(f"{path}: cannot write the {what}: {_reason(err)}") from err


# --------------------------------------------------------------------------------------------------
# A command's inputs and outputs, side by side


@dataclass(frozen=True)
class _Named:
    flag: str
    path: Path
    real: Path  # symbolic links resolved (dangling ones as far as they go)
    found: os.stat_result | None  # None: nothing there yet

    def __str__(self) -> str:
        return f"{self.flag} {self.path}"

    def same_file(self, other: _Named) -> bool:
        if self.real == other.real:
            return True
        mine, theirs = self.found, other.found
        return mine is not None and theirs is not None and os.path.samestat(mine, theirs)

    def holds(self, other: _Named) -> bool:
        """``other`` lies inside this folder."""
        return other.real != self.real and other.real.is_relative_to(self.real)


def _named(flags: Mapping[str, PathsArg], *, output: bool, suffix: bool = False) -> list[_Named]:
    named: list[_Named] = []
    for flag, value in flags.items():
        if value is None:
            continue
        paths = [value] if isinstance(value, str | os.PathLike) else list(value)
        for item in paths:
            path = Path(item)
            if output:
                _check_names(path, flag, suffix_bytes=_temporary_suffix_bytes() if suffix else 0)
            try:
                found = _stat(path)
            except OSError as err:  # a name too long, a symbolic-link loop, no permission
                error = OutputError if output else InputError
                raise error(f"{flag} {path}: {_reason(err)}") from err
            named.append(_Named(flag, path, Path(os.path.realpath(path)), found))
    return named


def check_paths(
    *,
    inputs: Mapping[str, PathsArg] | None = None,
    outputs: Mapping[str, PathsArg] | None = None,
    output_folders: Mapping[str, PathsArg] | None = None,
    input_files: Iterable[str] = (),
) -> None:
    """The one rule on a command's paths, before any work (flags name each path in the messages):

    * an input that exists must be a regular file or a folder (a FIFO would block the read, a device
      would be read forever): ``InputError`` saying what it is;
    * an output (file or folder) is never one of the inputs or another output, a hard link of one
      included; an output folder never holds an input or another output; an output file never names a
      file inside an input folder that the command reads from it (``input_files``: name patterns, such
      as a run's ``results_*.json``): ``OutputError`` naming both. Other files beside an input are
      fine (``report runs/ --csv runs/table1.csv``, run again).
    """
    ins = _named(inputs or {}, output=False)
    files = _named(outputs or {}, output=True, suffix=True)
    folders = _named(output_folders or {}, output=True)
    for item in ins:
        kind = special_kind(item.found.st_mode) if item.found is not None else None
        if kind is not None:
            raise InputError(f"{item}: it is {kind}, not a file or folder: val-probing reads regular files")
    outs = files + folders
    file_ids = {id(out) for out in files}
    for index, out in enumerate(outs):
        for other in outs[index + 1 :]:
            if out.same_file(other):
                raise OutputError(f"{out} and {other} are one file: each output needs its own path")
        for item in ins:
            if out.same_file(item):
                raise OutputError(
                    f"{out} is the input {item}: an output never replaces an input (name another {out.flag})"
                )
            read = any(fnmatch.fnmatchcase(out.real.name, pattern) for pattern in input_files)
            if id(out) in file_ids and read and item.holds(out):
                raise OutputError(
                    f"{out} is a file of the input {item}: an output never replaces an input "
                    f"(name another {out.flag})"
                )
    for folder in folders:
        for role, others in (("input", ins), ("output", outs)):
            for other in others:
                if other is folder or not folder.holds(other):
                    continue
                raise OutputError(
                    f"{folder} holds the {role} {other}: an output folder never holds the command's "
                    f"inputs or other outputs (name another {folder.flag})"
                )
