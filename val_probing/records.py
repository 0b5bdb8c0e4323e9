"""The one typed record every stage passes around: a probe example that always carries its position.

Stages talk through JSONL files of these records (schema below, also in docs/schema.md):

    family               "document" | "code" | "database"
    set_id               which fixed context (0-based); every example of a set shares its context
    position_id          index of the needle among the context's items (0-based)
    n_items              number of items in the context (so depth = position_id / n_items)
    needle_token_offset  tokens of the context before the needle item (with `tokenizer`); None only for an
                         official row whose needle is not found once (official.read_official)
    context_tokens       tokens of the whole context (with `tokenizer`)
    tokenizer            the tokenizer name as given: an alias (val_probing.tokenizers), a folder, a hub name
    context              the haystack text; identical for every example of a set
    instruction          the question, placed after the context
    key                  what the question asks about (sentence piece / code line / entity id)
    answer               gold: the sentence / the function name / the entity label
    description          gold entity description (database only, else None)
    source               "built" | "official"
    row                  0-based row index in the file it came from (official data: the authors' index)
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal, get_args

from val_probing.errors import ValProbingError
from val_probing.outputs import output_target, writing, writing_in_place

log = logging.getLogger(__name__)

Family = Literal["document", "code", "database"]
FAMILIES: tuple[Family, ...] = get_args(Family)
Source = Literal["built", "official"]


class RecordError(ValProbingError, ValueError):
    """Bad input, with the file, line and field it came from."""


@dataclass(frozen=True, slots=True)
class ProbeExample:
    family: Family
    set_id: int
    position_id: int
    n_items: int
    needle_token_offset: int | None  # None: an official row whose needle is not found once
    context_tokens: int
    tokenizer: str
    context: str
    instruction: str
    key: str
    answer: str
    description: str | None = None
    source: Source = "built"
    row: int = 0

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family: {self.family!r} is not one of {FAMILIES}")
        located = self.needle_token_offset is not None or self.source != "official"
        for name in ("set_id", "position_id", "n_items", "needle_token_offset", "context_tokens", "row"):
            value = getattr(self, name)
            if name == "needle_token_offset" and not located:
                continue  # an official row whose needle item is not found exactly once
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name}: expected a non-negative int, got {value!r}")
        if self.n_items < 1:
            raise ValueError("n_items: a context holds at least one item")
        if self.position_id >= self.n_items:
            raise ValueError(f"position_id: {self.position_id} is not below n_items={self.n_items}")
        if self.needle_token_offset is not None and self.needle_token_offset > self.context_tokens:
            raise ValueError(
                f"needle_token_offset: {self.needle_token_offset} lies past "
                f"context_tokens={self.context_tokens}"
            )
        for name in ("context", "instruction", "key", "answer", "tokenizer"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name}: expected a non-empty string")
        if self.family == "database" and not self.description:
            raise ValueError("description: database examples need the entity description")
        if self.source not in get_args(Source):
            raise ValueError(f"source: {self.source!r} is not one of {get_args(Source)}")

    @property
    def depth(self) -> float:
        """Relative position of the needle in the context, in [0, 1)."""
        return self.position_id / self.n_items

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "") -> ProbeExample:
        """Build from a JSON object; errors name ``where`` (file:line) and the field."""
        prefix = f"{where}: " if where else ""
        known = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.default is MISSING}
        missing = sorted(name for name in required if name not in data)
        if missing:
            raise RecordError(f"{prefix}missing field(s) {', '.join(missing)}")
        unknown = sorted(set(data) - known)
        if unknown:
            raise RecordError(f"{prefix}unknown field(s) {', '.join(unknown)}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as err:
            raise RecordError(f"{prefix}{err}") from err


def parse_jsonl_lines(lines: Iterable[str], where: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based line number, object) for each non-blank line; errors name ``where`` and the line."""
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise RecordError(f"{where}:{lineno}: malformed JSON ({err.msg})") from err
        if not isinstance(obj, dict):
            raise RecordError(f"{where}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based line number, object) for each non-blank line of a ``.jsonl`` (or ``.jsonl.gz``) file.

    Errors name the file and line: unreadable file, not UTF-8, malformed JSON, not an object.
    """
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            yield from parse_jsonl_lines(handle, str(path))
    except UnicodeDecodeError as err:
        raise RecordError(f"{path}: not UTF-8 text ({err.reason})") from err
    except OSError as err:
        raise RecordError(f"{path}: cannot read ({err.strerror or err})") from err


def read_probes(path: Path) -> list[ProbeExample]:
    return [ProbeExample.from_dict(obj, where=f"{path}:{lineno}") for lineno, obj in iter_jsonl(path)]


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


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write one JSON object per line, atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")


def write_probes(path: Path, examples: Iterable[ProbeExample]) -> None:
    write_jsonl(path, (ex.to_dict() for ex in examples))
