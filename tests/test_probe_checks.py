"""Probe sets that can measure reading (issue 25): checked at build and on every read, their
constant-answer floor computed exactly, and the inputs that ended in tracebacks or wrong pairings.

Expectations are derived from the data: the floors are compared with a brute force over every
candidate answer scored with the reference metric itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest

from val_probing.build import ProbeSpec, cache_path, cached_probes, probe_hash
from val_probing.cli import main
from val_probing.files import RecordError, file_sha256, write_jsonl
from val_probing.fingerprints import tokenizer_fingerprint
from val_probing.metrics import reference_score
from val_probing.pools import load_pool, pool_path
from val_probing.probes import get_family
from val_probing.probes.base import Target
from val_probing.probes.checks import probe_floor, read_probe_file
from val_probing.records import FAMILIES, ProbeExample, read_probes, write_probes


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAL_PROBING_CACHE", str(tmp_path / "cache"))


def _constant_score(examples: Sequence[ProbeExample], answer: str) -> float:
    """What ``answer``, given to every question, scores (x100, mean over the questions)."""
    total = sum(reference_score(ex.family, answer, ex.answer, ex.description) for ex in examples)
    return 100.0 * total / len(examples)


def _brute_floor(examples: Sequence[ProbeExample]) -> float:
    """The best gold string (label, description, name or sentence) as a constant answer, scored one
    by one with the reference metric: what ``probe_floor`` must equal."""
    candidates = {g for ex in examples for g in (ex.answer, ex.description) if g}
    if examples[0].family == "database":
        candidates = {c.strip(".").lower() for c in candidates}
    elif examples[0].family == "code":
        candidates = {c.strip(".") for c in candidates}
    return max(_constant_score(examples, c) for c in candidates)


def _spec(family: str, **kwargs: object) -> ProbeSpec:
    settings: dict[str, object] = {"length": 2048, "tokenizer": "whitespace", "sets": 2, "positions": 16}
    return ProbeSpec(family=family, **(settings | kwargs))  # type: ignore[arg-type]


def _database_pool(path: Path, rows: Sequence[dict[str, str]]) -> Path:
    write_jsonl(path, rows)
    return path


# --------------------------------------------------------------------------------------------------
# The constant-answer floor


@pytest.mark.parametrize("family", FAMILIES)
def test_the_floor_is_exactly_the_best_single_gold_answer(family: str) -> None:
    examples, _ = cached_probes(_spec(family, length=1500))
    floor = probe_floor(examples)
    assert floor.score == pytest.approx(_brute_floor(examples))
    assert _constant_score(examples, floor.answer) == pytest.approx(floor.score)


def test_the_floor_counts_golds_inside_the_answer() -> None:
    """A name credits the names it contains (code's metric is a substring test): ``get_value``
    answers both ``get`` and ``get_value``."""
    fam = get_family("code")
    floor = fam.constant_floor([Target("get"), Target("get_value"), Target("put")])
    assert (floor.answer, floor.score) == ("get_value", pytest.approx(200 / 3))


def test_a_constant_answer_scores_a_few_points_at_most_on_the_embedded_database_probes() -> None:
    """The issue's reproduction: 'other letter, other symbol' scored 53.1; the embedded descriptions
    were 129 Unicode categories. Now a gold answers its own question only (of 32: 3.1 points), and
    two of them together two questions."""
    examples, _ = cached_probes(_spec("database"))
    assert _constant_score(examples, "other letter, other symbol") == 0.0
    assert _brute_floor(examples) == pytest.approx(100 / len(examples))
    common = [d for d, _n in Counter(ex.description for ex in examples).most_common(2)]
    assert _constant_score(examples, ", ".join(d for d in common if d)) == pytest.approx(200 / len(examples))
    pool = load_pool("database", "embedded")
    assert Counter(item.dcpt for item in pool).most_common(1)[0][1] == 1  # every description distinct


def test_a_pool_of_one_label_and_description_is_warned_about_and_refused_with_strict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    pool = _database_pool(
        tmp_path / "same.jsonl", [{"id": f"Q{i}", "label": "Paris", "dcpt": "a city"} for i in range(50)]
    )
    args = ["build", "--task", "database", "--length", "200", "--tokenizer", "whitespace"]
    args += ["--pool", str(pool), "--sets", "1", "--out", str(tmp_path / "p.jsonl")]
    with caplog.at_level(logging.WARNING):
        assert main(args) == 0
    assert "scores 100.0 of 100" in caplog.text and "'a city'" in caplog.text
    assert "constant-answer floor 100.0" in capsys.readouterr().out
    assert main([*args, "--strict", "--no-cache"]) == 2
    assert "refused: --strict" in capsys.readouterr().err


def test_a_cache_entry_written_by_another_process_is_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The recorded floor is recomputed on read: it must not depend on the process's hash seed (the
    document floor sums word weights over a set of words)."""
    script = (
        "from val_probing.build import ProbeSpec, cached_probes\n"
        "cached_probes(ProbeSpec('document', 1500, 'whitespace', sets=2, positions=16))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", script], check=True, env=env)
    spec = _spec("document", length=1500)
    assert _entry(spec).is_file()
    with caplog.at_level(logging.WARNING):
        cached_probes(spec)
    assert "rebuilding" not in caplog.text


def test_a_small_set_of_distinct_answers_is_not_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    """With 8 questions any gold scores 12.5 (it answers its own question): that is no guessing."""
    with caplog.at_level(logging.WARNING):
        examples, _ = cached_probes(_spec("code", length=300, positions=4))
    floor = probe_floor(examples)
    assert floor.score == pytest.approx(100 / len(examples)) and floor.elsewhere == 0.0
    assert "constant answer" not in caplog.text


def test_the_floor_is_reported_with_the_lm_eval_docs() -> None:
    from val_probing.adapter.docs import load_probe_set
    from val_probing.adapter.options import ValOptions

    meta = {"context_length": 1500, "tokenizer": "whitespace", "sets": 2, "positions": 16}
    probes = load_probe_set(ValOptions.from_metadata("code", meta))
    examples, _ = cached_probes(_spec("code", length=1500))
    assert probes.floor == probe_floor(examples)


# --------------------------------------------------------------------------------------------------
# Golds that cannot be scored are refused at build, naming the pool file and line


@pytest.mark.parametrize("field", ["label", "dcpt"])
def test_a_gold_of_dots_is_refused_at_build_naming_the_pool_line(
    field: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [{"id": f"Q{i}", "label": f"label {i}", "dcpt": f"description {i}"} for i in range(50)]
    rows[7][field] = "..."
    pool = _database_pool(tmp_path / "dots.jsonl", rows)
    args = ["build", "--task", "database", "--length", "300", "--tokenizer", "whitespace"]
    assert main([*args, "--pool", str(pool), "--sets", "1", "--out", str(tmp_path / "p.jsonl")]) == 2
    err = capsys.readouterr().err
    assert f"{pool}:8:" in err and "empty after strip('.')" in err
    assert not (tmp_path / "p.jsonl").exists()


# --------------------------------------------------------------------------------------------------
# Every read checks the rows: cache entries (also lm-eval's, through cached_probes) and --out files


def _entry(spec: ProbeSpec) -> Path:
    digest = probe_hash(
        spec, tokenizer_fingerprint(spec.tokenizer), file_sha256(pool_path(spec.family, spec.pool))
    )
    return cache_path(spec, digest)


def _rewrite_with_header_fixed(path: Path, edit: object) -> None:
    """Apply ``edit(rows)`` to a cache entry's rows and recompute its header's sha256 and count."""
    header_line, *lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    rows = [json.loads(line) for line in lines]
    edit(rows)  # type: ignore[operator]
    body = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
    header = json.loads(header_line) | {
        "rows": len(rows),
        "sha256": hashlib.sha256(body.encode()).hexdigest(),
    }
    path.write_text(json.dumps(header, sort_keys=True) + "\n" + body, encoding="utf-8")


def test_a_cached_row_whose_answer_was_edited_is_rebuilt(caplog: pytest.LogCaptureFixture) -> None:
    spec = _spec("code", length=1500)
    clean, digest = cached_probes(spec)
    entry = _entry(spec)
    assert entry.is_file()

    def edit(rows: list[dict[str, object]]) -> None:
        probe = next(r for r in rows if "answer" in r)
        probe["answer"] = "not_the_function"

    _rewrite_with_header_fixed(entry, edit)
    with caplog.at_level(logging.WARNING):
        again, digest_again = cached_probes(spec)
    assert (again, digest_again) == (clean, digest)
    assert "rebuilding the cached probes" in caplog.text and "not_the_function" not in str(again)


def test_a_cache_entry_copied_over_another_with_its_key_edited_is_rebuilt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seed0, seed1 = _spec("database", seed=0), _spec("database", seed=1)
    clean0, _ = cached_probes(seed0)
    cached_probes(seed1)
    entry0, entry1 = _entry(seed0), _entry(seed1)
    header_line, rest = entry1.read_text(encoding="utf-8").split("\n", 1)
    header = json.loads(header_line) | {"key": json.loads(entry0.read_text().split("\n", 1)[0])["key"]}
    entry0.write_text(json.dumps(header, sort_keys=True) + "\n" + rest, encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        again, _ = cached_probes(seed0)
    assert again == clean0
    assert "probe-set record" in caplog.text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"answer": "wrong_name"}, "the context answers key"),
        ({"key": "no such line anywhere"}, "the instruction does not ask"),
    ],
)
def test_an_out_file_whose_row_was_edited_is_refused_on_read(
    change: dict[str, str], message: str, tmp_path: Path
) -> None:
    examples, _ = cached_probes(_spec("code", length=1500))
    rows = [ex.to_dict() for ex in examples]
    rows[3] |= change
    path = tmp_path / "edited.jsonl"
    write_jsonl(path, rows)
    with pytest.raises(RecordError, match=f"{path} row 3: {message}"):
        read_probe_file(path)


def test_a_set_that_asks_one_position_twice_is_refused_on_read(tmp_path: Path) -> None:
    examples, _ = cached_probes(_spec("document", length=1500))
    path = tmp_path / "twice.jsonl"
    write_probes(path, [*examples, examples[0]])
    with pytest.raises(RecordError, match="asks about position"):
        read_probe_file(path)
    assert len(read_probes(path)) == len(examples) + 1  # the plain reader is the schema alone


# --------------------------------------------------------------------------------------------------
# build: the inputs that ended in tracebacks or false messages


@pytest.mark.parametrize("flag", ["--tokenizer", "--pool"])
def test_an_empty_tokenizer_or_pool_is_one_clear_line(
    flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = {"--tokenizer": "whitespace", "--pool": "embedded"} | {flag: ""}
    argv = ["build", "--task", "code", "--length", "512", "--out", str(tmp_path / "x.jsonl")]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, *(x for pair in args.items() for x in pair)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: expected a name or a path" in err and "Traceback" not in err


def test_an_out_under_proc_gives_a_true_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "build",
        "--task",
        "code",
        "--length",
        "512",
        "--tokenizer",
        "whitespace",
        "--out",
        "/proc/x.jsonl",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "/proc/x.jsonl" in err and "No such file or directory" not in err


def test_a_pool_that_exactly_fills_the_budget_builds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """50 entities of 6 whitespace tokens in a 300-token budget: the context is full when the pool
    ends (the old rule said "the pool ran out ... about 300 of 300 tokens")."""
    rows = [{"id": f"Q{i:02d}", "label": f"name{i:02d}", "dcpt": f"thing{i:02d}"} for i in range(50)]
    pool = _database_pool(tmp_path / "exact.jsonl", rows)
    assert all(
        len(get_family("database").render(item).split()) == 6 for item in load_pool("database", str(pool))
    )
    out = tmp_path / "p.jsonl"
    argv = ["build", "--task", "database", "--length", "300", "--tokenizer", "whitespace", "--sets", "1"]
    assert main([*argv, "--pool", str(pool), "--out", str(out)]) == 0
    assert "set 0: 50 items, 300 tokens" in capsys.readouterr().out
    assert main([*argv, "--pool", str(pool), "--length", "299", "--out", str(out), "--no-cache"]) == 0
    one_short = read_probes(out)
    assert {ex.n_items for ex in one_short} == {49}  # one token less: the last entity does not fit


# --------------------------------------------------------------------------------------------------
# score: pairing by the rows' own identity


def _scored_avg(capsys: pytest.CaptureFixture[str], data: Path, outputs: Path) -> float:
    argv = ["score", "--task", "database", "--data", str(data), "--outputs", str(outputs), "--json"]
    assert main([*argv, "--buckets", "4", "--n-boot", "50"]) == 0
    return float(json.loads(capsys.readouterr().out)["avg"])


def _half_right(examples: Sequence[ProbeExample], path: Path) -> None:
    """Outputs in the data's order: the first half of each set answered right, the rest wrong."""
    answers = [ex.answer if ex.position_id < ex.n_items // 2 else "no idea" for ex in examples]
    write_jsonl(path, ({"text": a} for a in answers))


def test_score_pairs_by_row_whatever_the_data_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    examples, _ = cached_probes(_spec("database"))
    data, outputs = tmp_path / "db.jsonl", tmp_path / "out.jsonl"
    write_probes(data, examples)
    _half_right(examples, outputs)
    expected = _scored_avg(capsys, data, outputs)
    assert expected == pytest.approx(50.0)
    shuffled = list(examples)
    random.Random(0).shuffle(shuffled)
    write_probes(data, reversed(shuffled))
    assert _scored_avg(capsys, data, outputs) == expected


def test_score_refuses_a_duplicated_question_and_outputs_of_other_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    examples, _ = cached_probes(_spec("database"))
    data, outputs = tmp_path / "db.jsonl", tmp_path / "out.jsonl"
    argv = ["score", "--task", "database", "--data", str(data), "--outputs", str(outputs)]
    duplicated = [*examples[:-1], ProbeExample(**(examples[0].to_dict() | {"row": len(examples) - 1}))]
    write_probes(data, duplicated)
    _half_right(duplicated, outputs)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{data} row {len(examples) - 1}: set 0 asks about position {examples[0].position_id} twice" in err

    write_probes(data, examples)
    lines = [{"text": ex.answer, "set_id": ex.set_id, "position_id": ex.position_id} for ex in examples]
    lines[0], lines[1] = lines[1], lines[0]  # in another order than the rows they name
    write_jsonl(outputs, lines)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{outputs}:1: position_id" in err and "does not match row 0" in err

    row_of = {(ex.set_id, ex.position_id): ex.row for ex in examples}
    for line in lines:  # the same lines, each naming its row: paired by it
        line["row"] = row_of[(line["set_id"], line["position_id"])]  # type: ignore[index]
    write_jsonl(outputs, lines)
    assert main([*argv, "--json", "--buckets", "4", "--n-boot", "50"]) == 0
    assert json.loads(capsys.readouterr().out)["avg"] == pytest.approx(100.0)


def test_score_seed_names_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["score", "--task", "code", "--outputs", str(tmp_path / "o.jsonl"), "--seed", "-1"])
    assert exit_info.value.code == 2
    assert "argument --seed: expected an integer >= 0, got -1" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# score --json files read back are checked


def _score_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, dict[str, object]]:
    examples, _ = cached_probes(_spec("database"))
    data, outputs = tmp_path / "db.jsonl", tmp_path / "out.jsonl"
    write_probes(data, examples)
    _half_right(examples, outputs)
    _scored_avg(capsys, data, outputs)  # clears the captured output
    argv = ["score", "--task", "database", "--data", str(data), "--outputs", str(outputs), "--json"]
    assert main([*argv, "--buckets", "4", "--n-boot", "50"]) == 0
    saved = json.loads(capsys.readouterr().out)
    return tmp_path / "score.json", saved


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d.update(avg=99.0), "'avg'"),
        (lambda d: d["buckets"][1].update(mean=-50.0), "'buckets[1].mean'"),
        (lambda d: d["buckets"][0].update(mean=1e308), "'buckets[0].mean'"),
        (lambda d: d.update(gap=0.5), "'gap'"),
    ],
)
def test_an_edited_score_json_is_an_error_naming_file_and_field(
    edit: object, field: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from val_probing.results import load_results

    path, saved = _score_json(tmp_path, capsys)
    path.write_text(json.dumps(saved), encoding="utf-8")
    assert load_results([path])  # as written, it reads back
    edit(saved)  # type: ignore[operator]
    path.write_text(json.dumps(saved), encoding="utf-8")
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and field in err


def test_a_probe_s_gold_is_checked_by_its_family(tmp_path: Path) -> None:
    """ProbeExample asks the family (check_gold_fields): a database row needs its entity description, on
    every read too (the rule lives in probes/database.py, not in records.py)."""
    row = ProbeExample("database", 0, 0, 1, 0, 9, "whitespace", "<id: Q1, label: L, description: D>",
                       "what is the id Q1 ?", "Q1", "L", "D")  # fmt: skip
    with pytest.raises(ValueError, match="description: database examples need the entity description"):
        ProbeExample(**(row.to_dict() | {"description": None}))
    assert ProbeExample(**(row.to_dict() | {"family": "code", "description": None})).description is None
    path = tmp_path / "db.jsonl"
    write_jsonl(path, [row.to_dict() | {"description": ""}])
    with pytest.raises(RecordError, match=rf"{path}:1: description: database examples need"):
        read_probes(path)
