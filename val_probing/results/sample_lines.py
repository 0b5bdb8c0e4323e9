"""The lines of an lm-eval samples file as JSON objects, streamed, with the one rule for bad lines:
a truncated LAST line (a run killed while writing) is dropped with a warning; any other malformed
line is a :class:`ResultsError` naming the file and line."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from val_probing.results.task_result import ResultsError

log = logging.getLogger(__name__)


def jsonl_objects(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) of every non-blank line of ``path``, streamed."""
    broken: tuple[int, json.JSONDecodeError] | None = None
    try:
        with Path(path).open(encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                if broken is not None:  # the bad line was not the last one
                    raise ResultsError(f"{path}:{broken[0]}: malformed JSON ({broken[1].msg})") from broken[1]
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    broken = (lineno, err)
                    continue
                yield lineno, obj
    except (OSError, UnicodeDecodeError) as err:
        raise ResultsError(f"{path}: cannot read the samples file ({err})") from err
    if broken is not None:
        log.warning("%s:%d: last line is truncated (a run stopped while writing?); ignored", path, broken[0])
