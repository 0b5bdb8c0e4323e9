"""The authors' VaLProbing-32K data (HF dataset ``In2Training/VaLProbing-32K``) as probe records.

Each official row holds a prompt already wrapped in the FILM-7B template::

    [INST] Below is a context and an instruction. ... \\n\\n### Context:\\n{context}
    \\n\\n### Instruction:\\n{instruction} [/INST]

plus the gold (``completion`` for document and code; ``label`` and ``description`` for database),
``position_id`` and ``set_id``. The authors' ``download.py`` writes one ``<split>.jsonl`` per split and
drops every field whose value is ``' '``. This module

* reads that JSONL (a folder of ``<split>.jsonl`` or one file) or the hub split (lazily imports
  ``datasets``; offline it fails with a message saying how to get the files),
* splits the prompt back into context and instruction, so any model's chat template can be used,
* finds the key the instruction asks about (quoted piece, code line, entity id) with a rule that does
  not depend on the exact wording (:func:`extract_key`), and
* measures where the needle sits with any :class:`~val_probing.token_counters.TokenCounter`, tokenizing each
  distinct context once.

``n_items`` is the number of positions of the row's set (max ``position_id`` + 1), unless the row
carries an ``n_items`` field (files exported by :func:`to_official_row` do, because built probes may
ask about only some positions). ``row`` is the 0-based row index, the index the authors' skip lists
use. Rows whose key occurs more than once in their context are ambiguous; :func:`skip_rows` derives
them from the data, :func:`load_skip_list` reads the authors' JSON list.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from val_probing.errors import ValProbingError
from val_probing.files import RecordError, iter_jsonl
from val_probing.probes import get_family
from val_probing.records import FAMILIES, Family, ProbeExample
from val_probing.token_counters import TokenCounter, WhitespaceCounter, token_index_at
from val_probing.typed import is_int

log = logging.getLogger(__name__)

HF_DATASET = "In2Training/VaLProbing-32K"
OFFICIAL_SPLITS: dict[Family, str] = {name: get_family(name).OFFICIAL_SPLIT for name in FAMILIES}

FILM_HEAD = (
    "[INST] Below is a context and an instruction. Based on the information provided in the context, "
    "write a response for the instruction.\n\n### Context:\n"
)
FILM_SEP = "\n\n### Instruction:\n"
FILM_TAIL = " [/INST]"


class OfficialDataError(ValProbingError):
    """The official data cannot be found or read (hub offline, missing split file, ...)."""


# --------------------------------------------------------------------------------------------------
# The FILM prompt and the official instructions


def film_prompt(context: str, instruction: str) -> str:
    """The FILM-7B prompt the official data ships (the template of the authors' model)."""
    return f"{FILM_HEAD}{context}{FILM_SEP}{instruction}{FILM_TAIL}"


def split_film_prompt(prompt: str) -> tuple[str, str]:
    """``(context, instruction)`` of a FILM-template prompt; ValueError when it is not one."""
    if not prompt.startswith(FILM_HEAD):
        raise ValueError("does not start with the FILM template '[INST] Below is a context ...'")
    if not prompt.endswith(FILM_TAIL):
        raise ValueError("does not end with ' [/INST]'")
    body = prompt[len(FILM_HEAD) : len(prompt) - len(FILM_TAIL)]
    context, sep, instruction = body.rpartition(FILM_SEP)
    if not sep:
        raise ValueError("has no '\\n\\n### Instruction:\\n' marker")
    if not context.strip() or not instruction.strip():
        raise ValueError("has an empty context or instruction")
    return context, instruction


def extract_key(family: Family, instruction: str, context: str | None = None) -> str:
    """The piece / code line / entity id an instruction asks about; ValueError naming the instruction.

    The rule survives changes of case, spacing and punctuation in the wording: document and code keys
    are the quoted span (straight or curly double quotes; the longest, so quotes inside a key are kept;
    without quotes, what follows "piece"/"code"/"line"), the database key is the token after the word
    "id" (``is``, ``:`` or ``=`` between them allowed; quotes and end punctuation around it dropped).
    With the ``context``, the first candidate that occurs in it wins (database: as ``<id: KEY,``), so a
    space or a question mark the wording put next to the key is not taken as part of it; when none
    occurs, the first is returned (such a row's needle is not found, and it is skipped downstream).
    Each family module owns its rule (``extract_key`` there).
    """
    return get_family(family).extract_key(instruction, context)


# --------------------------------------------------------------------------------------------------
# Where the needle is, and whether the key is ambiguous


def key_count(family: Family, context: str, key: str) -> int:
    """How often the key occurs in the context (database: the exact ``<id: KEY,`` entry)."""
    return context.count(get_family(family).key_marker(key))


def needle_start(family: Family, context: str, answer: str, key: str) -> int | None:
    """Character offset of the needle item (document: the sentence; code: its ``def NAME`` header;
    database: ``<id: KEY,``) when it occurs exactly once in the context, else None."""
    starts = [m.start() for m in get_family(family).needle_pattern(answer, key).finditer(context)]
    return starts[0] if len(starts) == 1 else None


def is_ambiguous(example: ProbeExample) -> bool:
    """The key occurs more than once in the context (the authors' skip rule), or the needle item
    cannot be found exactly once."""
    return key_count(example.family, example.context, example.key) > 1 or (
        needle_start(example.family, example.context, example.answer, example.key) is None
    )


def skip_rows(examples: Iterable[ProbeExample]) -> set[int]:
    """The ``row`` of every example to leave out of scoring (see :func:`is_ambiguous`)."""
    return {ex.row for ex in examples if is_ambiguous(ex)}


def load_skip_list(path: Path) -> set[int]:
    """The authors' skip list: a JSON list of 0-based row indices."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise OfficialDataError(f"{path}: cannot read the skip list ({err.strerror or err})") from err
    except json.JSONDecodeError as err:
        raise RecordError(f"{path}:{err.lineno}: malformed JSON ({err.msg})") from err
    if not isinstance(data, list):
        raise RecordError(f"{path}: a skip list is a JSON list of row indices, got {type(data).__name__}")
    for i, value in enumerate(data):
        if not is_int(value) or value < 0:
            raise RecordError(f"{path}: entry {i} is {value!r}, expected a non-negative row index")
    return set(data)


# --------------------------------------------------------------------------------------------------
# Reading rows


def _field(obj: dict[str, Any], name: str, where: str, kind: type) -> Any:
    if name not in obj:
        raise RecordError(f"{where}: missing field {name!r}")
    value = obj[name]
    if kind is int:
        if not is_int(value) or value < 0:
            raise RecordError(f"{where}: field {name!r} must be a non-negative int, got {value!r}")
    elif not isinstance(value, str) or not value.strip():
        raise RecordError(f"{where}: field {name!r} must be a non-empty string, got {value!r}")
    return value


def _parse_row(family: Family, row: int, where: str, obj: dict[str, Any]) -> dict[str, Any]:
    """The fields of a ProbeExample that one official row gives by itself (no n_items, no tokens)."""
    prompt = _field(obj, "prompt", where, str)
    try:
        context, instruction = split_film_prompt(prompt)
    except ValueError as err:
        raise RecordError(f"{where}: field 'prompt' {err}") from err
    fam = get_family(family)
    try:
        key = fam.extract_key(instruction, context)
    except ValueError as err:
        raise RecordError(f"{where} (row {row}): field 'prompt': the instruction {err}") from err
    set_id = _field(obj, "set_id", where, int)
    position_id = _field(obj, "position_id", where, int)
    answer, *rest = (_field(obj, name, where, str) for name in fam.OFFICIAL_GOLD)
    n_items = _field(obj, "n_items", where, int) if "n_items" in obj else None
    return {
        "family": family,
        "set_id": set_id,
        "position_id": position_id,
        "n_items": n_items,
        "context": context,
        "instruction": instruction,
        "key": key,
        "answer": answer,
        "description": rest[0] if rest else None,
        "source": "official",
        "row": row,
    }


def parse_official(
    family: Family, records: Iterable[tuple[str, dict[str, Any]]], counter: TokenCounter | None = None
) -> list[ProbeExample]:
    """Every official row, in file order, as a ProbeExample (source "official", row = the row index);
    errors name the location and the field.

    Token counts come from ``counter`` (default: whitespace words), one tokenization per distinct
    context. A row whose needle item is not found exactly once in its context keeps its place with
    ``needle_token_offset=None`` (its offset is undefined; :func:`is_ambiguous` is true for it).
    """
    if family not in FAMILIES:
        raise ValueError(f"family: {family!r} is not one of {FAMILIES}")
    counter = counter or WhitespaceCounter()
    parsed: list[tuple[str, dict[str, Any]]] = []
    contexts: dict[str, str] = {}  # one string object per distinct context: 3,200 rows share 4
    for row, (where, obj) in enumerate(records):
        fields = _parse_row(family, row, where, obj)
        fields["context"] = contexts.setdefault(fields["context"], fields["context"])
        parsed.append((where, fields))
    if not parsed:
        raise OfficialDataError("no rows: the official data is empty")
    set_sizes: dict[int, int] = defaultdict(int)
    for _where, f in parsed:
        set_sizes[f["set_id"]] = max(set_sizes[f["set_id"]], f["position_id"] + 1)
    starts: dict[str, list[int | None]] = defaultdict(list)
    for where, f in parsed:
        if f["n_items"] is None:
            f["n_items"] = set_sizes[f["set_id"]]
        if f["position_id"] >= f["n_items"]:
            raise RecordError(
                f"{where}: field 'position_id' {f['position_id']} is not below n_items={f['n_items']}"
            )
        starts[f["context"]].append(needle_start(family, f["context"], f["answer"], f["key"]))
    tokens: dict[str, tuple[int, list[int | None]]] = {}
    for context, found in starts.items():
        # One tokenization per distinct context serves every needle in it.
        located = [start for start in found if start is not None] + [len(context)]
        offsets = iter(token_index_at(counter, context, located))
        needles = [None if start is None else next(offsets) for start in found]
        tokens[context] = (next(offsets), needles)
    examples = []
    seen: dict[str, int] = defaultdict(int)
    for where, f in parsed:
        context_tokens, needles = tokens[f["context"]]
        offset = needles[seen[f["context"]]]
        seen[f["context"]] += 1
        try:
            examples.append(
                ProbeExample(
                    **f, needle_token_offset=offset, context_tokens=context_tokens, tokenizer=counter.name
                )
            )
        except ValueError as err:
            raise RecordError(f"{where}: {err}") from err
    return examples


def _jsonl_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for lineno, obj in tqdm(iter_jsonl(path), desc=f"reading {path.name}", unit=" rows", disable=None):
        yield f"{path}:{lineno}", obj


def _hub_records(family: Family) -> Iterator[tuple[str, dict[str, Any]]]:
    split = OFFICIAL_SPLITS[family]
    how = (
        f"Download it where the hub is reachable, with the authors' VaLProbing/download.py "
        f"(writes ValProbing-32K/{split}.jsonl) or `huggingface-cli download {HF_DATASET} "
        f"--repo-type dataset --local-dir DIR`, then pass --data DIR (or the .jsonl file). "
        f"Set HF_HUB_OFFLINE=1 to fail fast instead of retrying the network."
    )
    try:
        import datasets
    except ImportError as err:
        raise OfficialDataError(
            f"reading {HF_DATASET} from the hub needs the 'datasets' package "
            f"(pip install 'val-probing[lmeval]'). {how}"
        ) from err
    try:
        dataset = datasets.load_dataset(HF_DATASET, split=split)
    except (OSError, ValueError) as err:  # ConnectionError and the hub's not-found errors are OSErrors
        raise OfficialDataError(
            f"cannot load {HF_DATASET} split {split} from the hub ({err}). {how}"
        ) from err
    for i, info in enumerate(dataset):
        # As the authors' download.py: fields whose value is ' ' do not exist.
        yield f"{HF_DATASET}[{split}] row {i}", {k: v for k, v in info.items() if v != " "}


def official_file(family: Family, data: Path) -> Path:
    """``data`` itself if it is a file, else ``data/<split>.jsonl``; a clear error if absent."""
    data = Path(data)
    if data.is_file():
        return data
    if data.is_dir():
        path = data / f"{get_family(family).OFFICIAL_SPLIT}.jsonl"
        if path.is_file():
            return path
        found = sorted(p.name for p in data.glob("*.jsonl"))
        raise OfficialDataError(
            f"{data}: no {path.name} for the {family} task (found: {', '.join(found) or 'no .jsonl files'})"
        )
    raise OfficialDataError(f"{data}: no such file or folder")


def read_official(
    family: Family, data: Path | None = None, *, counter: TokenCounter | None = None
) -> list[ProbeExample]:
    """Every official row of one family, from a local folder/file or (data=None) the hub; rows whose
    needle is not found once have ``needle_token_offset=None`` (see :func:`parse_official`)."""
    records = _hub_records(family) if data is None else _jsonl_records(official_file(family, data))
    return parse_official(family, records, counter)


def load_official(
    family: Family, *, data: Path | None = None, counter: TokenCounter | None = None
) -> list[ProbeExample]:
    """The official rows whose needle is located (source "official", row = the authors' row index).

    Rows whose needle item cannot be found exactly once in the context are left out (the count is
    logged; :func:`skip_rows` lists them too), because their token offset is undefined. Rows whose
    key is ambiguous are kept; leave them out of scoring with :func:`skip_rows`.
    """
    rows = read_official(family, data, counter=counter)
    examples = [row for row in rows if row.needle_token_offset is not None]
    unlocated = [row.row for row in rows if row.needle_token_offset is None]
    if unlocated:
        log.warning(
            "%s: %d of %d rows left out, their needle is not found exactly once in the context (rows %s)",
            family,
            len(unlocated),
            len(rows),
            ", ".join(map(str, unlocated[:20])) + (" ..." if len(unlocated) > 20 else ""),
        )
    return examples


# --------------------------------------------------------------------------------------------------
# Export


def to_official_row(example: ProbeExample) -> dict[str, Any]:
    """A probe in the official schema (FILM prompt), so official-format tools can read built probes.

    Adds ``n_items`` (not in the authors' files) because built probes may ask about only some
    positions, and max(position_id) + 1 would then understate the context's size.
    """
    row: dict[str, Any] = {
        "prompt": film_prompt(example.context, example.instruction),
        "position_id": example.position_id,
        "set_id": example.set_id,
        "n_items": example.n_items,
    }
    gold = (example.answer, example.description)
    row.update(zip(get_family(example.family).OFFICIAL_GOLD, gold, strict=False))  # document: no description
    return row
