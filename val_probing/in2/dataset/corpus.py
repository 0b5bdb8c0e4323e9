"""The synthesis pipeline's inputs: raw-text corpora (``read_corpus``) and general instruction data."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from val_probing.errors import ValProbingError
from val_probing.files import RecordError, iter_jsonl
from val_probing.in2.assemble import TrainingExample
from val_probing.in2.segment import RawText

log = logging.getLogger(__name__)


TEXT_SUFFIXES = (".txt", ".md")


def _texts_from_jsonl(path: Path) -> list[RawText]:
    out = []
    for lineno, obj in iter_jsonl(path):
        text = obj.get("text")
        if not isinstance(text, str):
            raise RecordError(f"{path}:{lineno}: field 'text': expected a string, got {type(text).__name__}")
        text_id = obj.get("id")
        out.append(RawText(f"{path}:{text_id}" if text_id is not None else f"{path}:{lineno}", text))
    return out


@dataclass(frozen=True)
class Corpus:
    """The raw texts read from ``--texts``, and the files that were not read, by reason."""

    texts: tuple[RawText, ...]
    not_read: tuple[str, ...] = ()  # files in the folders without a .txt, .md or .jsonl suffix
    undecodable: tuple[str, ...] = ()  # .txt/.md files that are not UTF-8 text (skipped, with a warning)

    def to_manifest(self) -> dict[str, Any]:
        """Counts (and the file names, up to 100 of each) for the dataset manifest."""
        return {
            "texts": len(self.texts),
            "not_read": {"count": len(self.not_read), "files": list(self.not_read[:100])},
            "undecodable": {"count": len(self.undecodable), "files": list(self.undecodable[:100])},
        }


def _listed(files: Sequence[str], limit: int = 20) -> str:
    more = f" and {len(files) - limit} more" if len(files) > limit else ""
    return ", ".join(files[:limit]) + more


def read_corpus(paths: Sequence[Path]) -> Corpus:
    """Raw texts from files and folders: each .txt/.md file is one text; each line of a .jsonl is one text
    (field ``text``, optional ``id``). Folders are searched recursively, in sorted order.

    Files in the folders with another suffix are not read: they are listed in the log and counted in the
    result. A .txt/.md file that is not UTF-8 text (a binary file, another encoding) is skipped with a
    warning naming it (convert it with ``iconv -t UTF-8`` to use it); a .jsonl file that is not UTF-8 is
    an error naming it and the line. A file named directly must have one of the three suffixes."""
    files: list[Path] = []
    not_read: list[str] = []
    for path in map(Path, paths):
        if path.is_dir():
            for found in sorted(p for p in path.rglob("*") if p.is_file()):
                if found.suffix in (*TEXT_SUFFIXES, ".jsonl"):
                    files.append(found)
                else:
                    not_read.append(str(found))
        elif path.is_file():
            if path.suffix not in (*TEXT_SUFFIXES, ".jsonl"):
                raise ValProbingError(f"{path}: expected .txt, .md or .jsonl")
            files.append(path)
        else:
            raise ValProbingError(f"{path}: no such file or folder")
    if not_read:
        log.info("%d file(s) not read (not .txt, .md or .jsonl): %s", len(not_read), _listed(not_read))
    texts: list[RawText] = []
    undecodable: list[str] = []
    for path in files:
        if path.suffix == ".jsonl":
            texts.extend(_texts_from_jsonl(path))
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            log.warning(
                "%s: skipped, not UTF-8 text (byte %d: %s); convert it (iconv -t UTF-8) or remove it",
                path,
                err.start,
                err.reason,
            )
            undecodable.append(str(path))
            continue
        except OSError as err:
            raise ValProbingError(f"{path}: cannot read ({err.strerror or err})") from err
        texts.append(RawText(str(path), text))
    if not texts:
        skipped = f"; skipped as not UTF-8: {_listed(undecodable)}" if undecodable else ""
        raise ValProbingError(
            f"no raw texts found in {', '.join(map(str, paths))} (.txt, .md or .jsonl){skipped}"
        )
    return Corpus(tuple(texts), tuple(not_read), tuple(undecodable))


def read_texts(paths: Sequence[Path]) -> list[RawText]:
    """The texts of :func:`read_corpus` (without the account of the files not read)."""
    return list(read_corpus(paths).texts)


_GENERAL_SCHEMAS = (
    ("question", "response", "system_prompt"),
    ("instruction", "output", "input"),
    ("prompt", "completion", None),
)


def read_general(path: Path) -> list[TrainingExample]:
    """General instruction data, one JSON object a line, in one of three schemas: OpenOrca
    (question, response, system_prompt?), Alpaca (instruction, input?, output) or (prompt, completion)."""
    out = []
    for lineno, obj in iter_jsonl(path):
        schema = next((sch for sch in _GENERAL_SCHEMAS if sch[0] in obj and sch[1] in obj), None)
        if schema is None:
            raise RecordError(
                f"{path}:{lineno}: expected fields question/response (OpenOrca), instruction/output "
                f"(Alpaca) or prompt/completion; got {', '.join(sorted(obj))}"
            )
        q_field, a_field, extra = schema
        question, answer = obj[q_field], obj[a_field]
        for name, value in ((q_field, question), (a_field, answer)):
            if not isinstance(value, str) or not value.strip():
                raise RecordError(f"{path}:{lineno}: field {name!r}: expected a non-empty string")
        system = obj.get(extra) if extra == "system_prompt" else None
        if extra == "input" and obj.get("input"):
            question = f"{question}\n\n{obj['input']}"
        out.append(
            TrainingExample("general", question, answer, system=system or None, sources=(f"{path}:{lineno}",))
        )
    if not out:
        raise ValProbingError(f"{path}: no general instruction examples in the file")
    return out
