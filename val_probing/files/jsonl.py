"""JSONL files: read line by line with errors naming the file and line, written atomically."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from val_probing.errors import ValProbingError
from val_probing.files.atomic import atomic_path


class RecordError(ValProbingError, ValueError):
    """Bad input, with the file, line and field it came from."""


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


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write one JSON object per line, atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
