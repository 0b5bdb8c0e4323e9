"""The official VaLProbing-32K loader, on small hand-made files in the authors' schema."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from val_probing.errors import ValProbingError
from val_probing.files import RecordError, write_jsonl
from val_probing.official import (
    FILM_HEAD,
    OFFICIAL_SPLITS,
    OfficialDataError,
    extract_key,
    film_prompt,
    load_official,
    load_skip_list,
    needle_start,
    read_official,
    skip_rows,
    split_film_prompt,
    to_official_row,
)
from val_probing.records import ProbeExample
from val_probing.token_counters import WhitespaceCounter

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "film-pieces"

DOC_INSTRUCTION = 'In above context, which sentence contains the piece "{}"?'
CODE_INSTRUCTION = 'In above context, which function contains the code snip "{}" ?'
DB_INSTRUCTION = "In above context , what is the label and description for the query where the id is {} ?"


def document_context(n: int) -> list[str]:
    return [f"Sentence {i} says the lamp number {i} is bright." for i in range(n)]


def document_rows(n_sets: int = 2, n: int = 6) -> list[dict[str, object]]:
    """Official-schema document rows: one fixed context per set, one question per position."""
    rows = []
    for set_id in range(n_sets):
        sentences = document_context(n)
        if set_id == 1:
            sentences[4] = "Sentence 4 says the lamp number 2 is bright."  # piece of position 2 twice
        context = " ".join(sentences)
        for position_id in range(n):
            piece = f"lamp number {position_id} is"
            rows.append(
                {
                    "prompt": film_prompt(context, DOC_INSTRUCTION.format(piece)),
                    "completion": sentences[position_id],
                    "position_id": position_id,
                    "set_id": set_id,
                }
            )
    return rows


def test_film_prompt_round_trips() -> None:
    context = "A.\n\nB."
    instruction = DOC_INSTRUCTION.format("x")
    prompt = film_prompt(context, instruction)
    assert prompt.startswith("[INST] Below is a context and an instruction.")
    assert prompt.endswith('"x"? [/INST]')
    assert "\n\n### Context:\nA.\n\nB.\n\n### Instruction:\nIn above" in prompt
    assert split_film_prompt(prompt) == (context, instruction)


@pytest.mark.parametrize(
    "prompt", ["no template", FILM_HEAD + "ctx only [/INST]", FILM_HEAD + "c\n\n### Instruction:\nq"]
)
def test_split_rejects_other_templates(prompt: str) -> None:
    with pytest.raises(ValueError):
        split_film_prompt(prompt)


def test_keys_come_from_the_three_official_wordings() -> None:
    assert extract_key("document", DOC_INSTRUCTION.format('the "quoted" piece')) == 'the "quoted" piece'
    assert extract_key("code", CODE_INSTRUCTION.format("f.write('x')")) == "f.write('x')"
    assert extract_key("database", DB_INSTRUCTION.format("Q42")) == "Q42"
    with pytest.raises(ValueError, match="is not a code question"):
        extract_key("code", DOC_INSTRUCTION.format("x"))


def _variants(instruction: str, key: str) -> list[str]:
    """The same question reworded: case, spacing and punctuation changed around the key (never in it)."""
    head, _sep, tail = instruction.partition(key)
    return [
        head.upper() + key + tail.upper(),
        head.lower() + key + tail.lower(),
        "  " + " ".join(head.split()) + key + " ".join(tail.split()) + "  ",
        head.replace(",", "").replace(" ,", "") + key + tail.replace(" ?", "?"),
        head.replace("? ", "") + key + tail.rstrip("? ") + ".",
        head.rstrip('"') + "\u201c" + key + "\u201d" + tail.lstrip('"'),
        head.replace("\n", " ") + key + tail + "\n",
    ]


DOC_KEY = 'the "quoted" piece, with a comma'
CODE_KEY = "return f.write('x?') or None"
VARIANT_CASES = [
    ("document", DOC_INSTRUCTION.format(DOC_KEY), DOC_KEY),
    ("document", f'Which sentence of the context includes the phrase: "{DOC_KEY}"?', DOC_KEY),
    ("code", CODE_INSTRUCTION.format(CODE_KEY), CODE_KEY),
    ("code", f'Find the function whose body has the line "{CODE_KEY}".', CODE_KEY),
    ("database", DB_INSTRUCTION.format("Q42"), "Q42"),
    ("database", "What are the label and description of the entity with ID: Q42?", "Q42"),
    ("database", "Give label and description where id = 'Q42'", "Q42"),
]


@pytest.mark.parametrize(("family", "instruction", "key"), VARIANT_CASES)
def test_keys_survive_case_spacing_and_punctuation_changes(family: str, instruction: str, key: str) -> None:
    context = f"before <id: {key}, label: L, description: D> {key} after"
    for variant in [instruction, *_variants(instruction, key)]:
        assert extract_key(family, variant, context) == key, variant  # type: ignore[arg-type]
        assert extract_key(family, variant) in (key, key.strip(".?")), variant  # type: ignore[arg-type]


def test_the_context_picks_the_key_when_the_wording_leans_on_it() -> None:
    # spaces inside the quotes, and an id followed by a question mark with no space: both cut off
    assert extract_key("document", 'Which sentence contains the piece " lamp 3 "?', "(lamp 3)") == "lamp 3"
    assert extract_key("database", "where the id is Q7?", "<id: Q7, label: x, description: y>") == "Q7"
    # a key the context lacks is still the key (the row is left out later: its needle is not found)
    assert extract_key("database", "where the id is Q8?", "<id: Q7, label: x, description: y>") == "Q8"


@pytest.mark.parametrize(
    ("family", "instruction"),
    [
        ("document", "Which sentence is the longest?"),
        ("code", "In above context, which function is the slowest?"),
        ("database", "What is the label of the last entity?"),
        ("document", 'In above context, which function contains the code snip "x" ?'),
    ],
)
def test_no_key_fails_with_the_row_and_the_instruction(tmp_path: Path, family: str, instruction: str) -> None:
    with pytest.raises(ValueError, match=f"is not a {family} question"):
        extract_key(family, instruction)  # type: ignore[arg-type]
    rows = [{"prompt": film_prompt("ctx", instruction), "completion": "a", "label": "a", "description": "d",
             "position_id": 0, "set_id": 0}]  # fmt: skip
    write_jsonl(tmp_path / "split.jsonl", rows)
    with pytest.raises(RecordError) as info:
        read_official(family, tmp_path / "split.jsonl")  # type: ignore[arg-type]
    assert "split.jsonl:1 (row 0)" in str(info.value) and instruction[:30] in str(info.value)


@pytest.mark.parametrize("family", ["document", "code", "database"])
def test_real_pools_reworded_keep_every_key(tmp_path: Path, family: str, film_pieces_dir: Path) -> None:
    """Probes built from the authors' pools, exported to the official schema with reworded
    instructions (every variant above, one per row in turn), read back with the same keys."""
    from val_probing.build import ProbeSpec, build_probes
    from val_probing.pools import FILE_NAMES, read_pool

    items = read_pool(family, film_pieces_dir / FILE_NAMES[family])  # type: ignore[index, arg-type]
    spec = ProbeSpec(family, 6000, "whitespace", pool=str(film_pieces_dir), sets=2)  # type: ignore[arg-type]
    import random

    examples = build_probes(spec, WhitespaceCounter(), items, random.Random(0))
    rows = []
    for i, ex in enumerate(examples):
        variants = [ex.instruction, *_variants(ex.instruction, ex.key)]
        rows.append(to_official_row(dataclasses.replace(ex, instruction=variants[i % len(variants)])))
    write_jsonl(tmp_path / "split.jsonl", rows)
    read = read_official(family, tmp_path / "split.jsonl")  # type: ignore[arg-type]
    assert len(read) == len(examples) > 50
    assert [row.key for row in read] == [ex.key for ex in examples]


def test_loader_splits_prompts_and_measures_needles(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "document_bi_32k.jsonl", document_rows())
    examples = load_official("document", data=tmp_path, counter=WhitespaceCounter())
    assert len(examples) == 12
    first = examples[3]
    sentences = document_context(6)
    assert first.context == " ".join(sentences)
    assert first.instruction == DOC_INSTRUCTION.format("lamp number 3 is")
    assert first.key == "lamp number 3 is"
    assert first.answer == sentences[3]
    assert (first.set_id, first.position_id, first.n_items, first.row) == (0, 3, 6, 3)
    assert first.needle_token_offset == 3 * 9  # nine words per sentence before it
    assert first.context_tokens == 6 * 9
    assert first.source == "official"
    assert first.tokenizer == "whitespace"
    assert [ex.row for ex in examples] == list(range(12))
    assert examples[0].context is examples[5].context  # one string per distinct context


def test_a_duplicated_key_is_derived_as_a_skip_row(tmp_path: Path) -> None:
    path = tmp_path / "doc.jsonl"
    write_jsonl(path, document_rows())
    examples = load_official("document", data=path)
    assert skip_rows(examples) == {6 + 2}  # set 1, position 2: its piece occurs twice
    assert skip_rows(read_official("document", path)) == {8}


def test_rows_whose_needle_is_not_unique_are_left_out_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = document_rows(n_sets=1)
    rows[1]["completion"] = "A sentence that is not in the context."
    path = tmp_path / "doc.jsonl"
    write_jsonl(path, rows)
    examples = load_official("document", data=path)
    assert [ex.row for ex in examples] == [0, 2, 3, 4, 5]
    assert "1 of 6 rows left out" in caplog.text
    assert skip_rows(read_official("document", path)) == {1}


def code_rows() -> list[dict[str, object]]:
    functions = {
        "load_table": ["    rows = []", "    f.close()"],
        "save_table": ["    out = open(p)", "    f.close()"],
        "count": ["    return len(x)"],
    }
    context = "\n\n".join(f"def {name}:\n" + "\n".join(body) for name, body in functions.items())
    pieces = {"load_table": "rows = []", "save_table": "f.close()", "count": "return len(x)"}
    return [
        {
            "prompt": film_prompt(context, CODE_INSTRUCTION.format(pieces[name])),
            "completion": name,
            "position_id": position,
            "set_id": 0,
        }
        for position, name in enumerate(functions)
    ]


def test_code_rows(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "code_backward_32k.jsonl", code_rows())
    examples = load_official("code", data=tmp_path)
    assert [ex.key for ex in examples] == ["rows = []", "f.close()", "return len(x)"]
    assert [ex.answer for ex in examples] == ["load_table", "save_table", "count"]
    assert examples[0].needle_token_offset == 0
    assert examples[2].needle_token_offset == 6 + 6  # "def", "NAME:" and four body words, twice
    assert skip_rows(examples) == {1}  # "f.close()" is in two functions


def database_rows() -> list[dict[str, object]]:
    entities = [
        ("Q1", "Alpha house", "a house"),
        ("Q12", "Beta bridge", "a bridge"),
        ("Q7", "Gamma", "a lake"),
    ]
    context = "\n".join(f"<id: {i}, label: {label}, description: {d}>" for i, label, d in entities)
    return [
        {
            "prompt": film_prompt(context, DB_INSTRUCTION.format(i)),
            "label": label,
            "description": d,
            "position_id": position,
            "set_id": 3,
        }
        for position, (i, label, d) in enumerate(entities)
    ]


def test_database_rows_match_whole_ids(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "database_forward_32k.jsonl", database_rows())
    examples = load_official("database", data=tmp_path)
    assert [(ex.key, ex.answer, ex.description) for ex in examples][1] == ("Q12", "Beta bridge", "a bridge")
    assert [ex.needle_token_offset for ex in examples] == [0, 8, 16]  # eight words per entity
    assert skip_rows(examples) == set()  # "Q1" is inside "Q12", but "<id: Q1," is unique


@pytest.mark.parametrize(
    ("family", "rows", "drop", "field"),
    [
        ("document", document_rows(1, 3), "completion", "completion"),
        ("document", document_rows(1, 3), "position_id", "position_id"),
        ("document", document_rows(1, 3), "set_id", "set_id"),
        ("document", document_rows(1, 3), "prompt", "prompt"),
        ("database", database_rows(), "description", "description"),
        ("database", database_rows(), "label", "label"),
    ],
)
def test_missing_fields_name_file_line_and_field(
    tmp_path: Path, family: str, rows: list[dict[str, object]], drop: str, field: str
) -> None:
    del rows[1][drop]
    path = tmp_path / "data.jsonl"
    write_jsonl(path, rows)
    with pytest.raises(RecordError, match=rf"{path}:2: missing field '{field}'"):
        read_official(family, path)  # type: ignore[arg-type]


def test_bad_prompt_and_bad_values_name_the_field(tmp_path: Path) -> None:
    rows = document_rows(1, 3)
    rows[2]["prompt"] = "Context: ... Question: ..."
    path = tmp_path / "data.jsonl"
    write_jsonl(path, rows)
    with pytest.raises(RecordError, match=rf"{path}:3: field 'prompt' does not start with the FILM"):
        read_official("document", path)
    rows = document_rows(1, 3)
    rows[0]["position_id"] = "7"
    write_jsonl(path, rows)
    with pytest.raises(RecordError, match=rf"{path}:1: field 'position_id' must be a non-negative int"):
        read_official("document", path)
    rows = document_rows(1, 3)
    rows[0]["prompt"] = film_prompt("c", CODE_INSTRUCTION.format("x"))
    write_jsonl(path, rows)
    with pytest.raises(RecordError, match=r"data.jsonl:1 \(row 0\): .*is not a document question"):
        read_official("document", path)


def test_missing_split_file_lists_what_is_there(tmp_path: Path) -> None:
    (tmp_path / "other.jsonl").write_text("")
    with pytest.raises(OfficialDataError, match=r"no database_forward_32k.jsonl .*other.jsonl"):
        read_official("database", tmp_path)
    with pytest.raises(OfficialDataError, match="no such file"):
        read_official("database", tmp_path / "absent")


def test_the_hub_offline_error_says_what_to_do(tmp_path: Path) -> None:
    # A subprocess, so the offline switch is read fresh by huggingface_hub and datasets.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "HF_DATASETS_OFFLINE": "1"}
    code = (
        "from val_probing.official import load_official\n"
        "from val_probing.errors import ValProbingError\n"
        "try:\n    load_official('code')\n"
        "except ValProbingError as err:\n    print(err)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    message = out.stdout
    assert "In2Training/VaLProbing-32K" in message
    assert OFFICIAL_SPLITS["code"] in message
    assert "download.py" in message
    assert "huggingface-cli download" in message
    assert "--data DIR" in message
    assert "HF_HUB_OFFLINE=1" in message


def test_skip_list(tmp_path: Path) -> None:
    path = tmp_path / "skip.json"
    path.write_text("[774, 1126]")
    assert load_skip_list(path) == {774, 1126}
    path.write_text('{"rows": [1]}')
    with pytest.raises(RecordError, match="JSON list"):
        load_skip_list(path)
    path.write_text("[1, -2]")
    with pytest.raises(RecordError, match="entry 1"):
        load_skip_list(path)
    path.write_text("[1,")
    with pytest.raises(RecordError, match=f"{path}:1: malformed JSON"):
        load_skip_list(path)
    with pytest.raises(ValProbingError, match="cannot read"):
        load_skip_list(tmp_path / "absent.json")


def probe(family: str, position_id: int, n_items: int) -> ProbeExample:
    context = " ".join(f"<id: Q{i}, label: L{i}, description: d{i}>" for i in range(n_items))
    return ProbeExample(
        family=family,  # type: ignore[arg-type]
        set_id=0,
        position_id=position_id,
        n_items=n_items,
        needle_token_offset=6 * position_id,  # six words per entity
        context_tokens=6 * n_items,
        tokenizer="whitespace",
        context=context,
        instruction=DB_INSTRUCTION.format(f"Q{position_id}"),
        key=f"Q{position_id}",
        answer=f"L{position_id}",
        description=f"d{position_id}",
    )


def test_built_probes_export_to_the_official_schema_and_back(tmp_path: Path) -> None:
    built = [probe("database", p, 10) for p in (1, 4)]  # only some positions: n_items must travel
    rows = [to_official_row(ex) for ex in built]
    assert set(rows[0]) == {"prompt", "label", "description", "position_id", "set_id", "n_items"}
    path = tmp_path / "exported.jsonl"
    write_jsonl(path, rows)
    loaded = load_official("database", data=path, counter=WhitespaceCounter())
    for before, after in zip(built, loaded, strict=True):
        assert after.n_items == 10
        for name in ("context", "instruction", "key", "answer", "description", "position_id"):
            assert getattr(after, name) == getattr(before, name)
        assert after.needle_token_offset == before.needle_token_offset
        assert after.context_tokens == before.context_tokens
    document = to_official_row(
        ProbeExample(
            "document", 0, 0, 1, 0, 2, "whitespace", "A b.", DOC_INSTRUCTION.format("b"), "b", "A b."
        )
    )
    assert document["completion"] == "A b." and "label" not in document


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs /work/shared/data/film-pieces beside the clone")
def test_real_code_pool_duplicates_become_skip_rows(tmp_path: Path) -> None:
    """A small official-format file from the authors' real code pool: shared pieces are skipped."""
    items = []
    with (SHARED / "code_functions.jsonl").open(encoding="utf-8") as handle:
        for line, _ in zip(handle, range(200), strict=False):
            items.append(json.loads(line))
    names: set[str] = set()
    unique = [it for it in items if not (it["function_name"] in names or names.add(it["function_name"]))]
    context = "\n\n".join(f"def {it['function_name']}:\n{it['function_define']}" for it in unique)
    rows = [
        {
            "prompt": film_prompt(context, CODE_INSTRUCTION.format(it["piece"])),
            "completion": it["function_name"],
            "position_id": i,
            "set_id": 0,
        }
        for i, it in enumerate(unique)
    ]
    path = tmp_path / "code.jsonl"
    write_jsonl(path, rows)
    examples = load_official("code", data=path)
    assert len(examples) == len(unique)
    expected = {i for i, it in enumerate(unique) if context.count(it["piece"]) > 1}
    assert expected  # this slice of the pool has pieces shared between functions
    assert skip_rows(examples) == expected
    words = context.split()
    for ex in examples:  # the offset points at the needle's "def NAME:" line
        assert words[ex.needle_token_offset : ex.needle_token_offset + 2] == ["def", f"{ex.answer}:"]


def test_code_needles_are_found_when_functions_are_joined_by_spaces() -> None:
    """The paper's Figure 3 shows functions run together on one line; headers still count once."""
    context = "def get_num:\n    x = 1 def get_number:\n    return x def undef_get_num(y):\n    pass"
    assert needle_start("code", context, "get_num", "x = 1") == 0
    assert needle_start("code", context, "get_number", "return x") == context.index("def get_number")
    assert needle_start("code", context, "undef", "pass") is None  # "undef_get_num" is no header
    assert needle_start("code", context + " def get_num: pass", "get_num", "x = 1") is None  # twice
