"""``val-probing score`` end to end through ``val_probing.cli.main``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from val_probing.cli import main
from val_probing.files import write_jsonl
from val_probing.official import film_prompt, load_official
from val_probing.records import write_probes

N_ITEMS = 100  # two paper-sized buckets of 50 positions
DOC_INSTRUCTION = 'In above context, which sentence contains the piece "{}"?'


def sentence(set_id: int, position: int) -> str:
    return f"Item {position} of set {set_id} mentions the token w{position}x{set_id} today."


def write_data(
    path: Path, n_sets: int = 2, duplicate: tuple[int, int] | None = None
) -> list[dict[str, object]]:
    """Official-schema document rows; ``duplicate=(set, position)`` repeats that row's piece elsewhere."""
    rows = []
    for set_id in range(n_sets):
        sentences = [sentence(set_id, p) for p in range(N_ITEMS)]
        if duplicate and duplicate[0] == set_id:
            sentences[-1] += f" Also the token w{duplicate[1]}x{set_id} here."
        context = " ".join(sentences)
        for position in range(N_ITEMS):
            rows.append(
                {
                    "prompt": film_prompt(context, DOC_INSTRUCTION.format(f"the token w{position}x{set_id}")),
                    "completion": sentences[position]
                    if position != N_ITEMS - 1
                    else sentence(set_id, position),
                    "position_id": position,
                    "set_id": set_id,
                }
            )
    write_jsonl(path, rows)
    return rows


def write_outputs(
    path: Path, rows: list[dict[str, object]], correct: Callable[[int, int], bool], field: str = "samples"
) -> None:
    answers = []
    for row in rows:
        text = row["completion"] if correct(row["set_id"], row["position_id"]) else "I do not remember it."  # type: ignore[arg-type]
        answers.append({field: [text] if field == "samples" else text})
    write_jsonl(path, answers)


def score_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    assert main(["score", "--task", "document", "--json", "--n-boot", "200", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_has_the_contract_keys_and_the_right_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = write_data(tmp_path / "data.jsonl")
    write_outputs(tmp_path / "out.jsonl", rows, lambda _s, p: p < 50)  # first bucket right, second wrong
    data = score_json(
        capsys, "--data", str(tmp_path / "data.jsonl"), "--outputs", str(tmp_path / "out.jsonl")
    )
    assert data["task"] == "document"
    assert data["avg"] == pytest.approx(50.0)
    assert data["gap"] == pytest.approx(100.0)
    assert [(b["index"], b["mean"], b["n"]) for b in data["buckets"]] == [(0, 100.0, 100), (1, 0.0, 100)]  # type: ignore[union-attr]
    assert data["n_skipped"] == 0
    assert data["n_rows"] == 200
    assert data["mode"] == "default"
    assert {"avg_ci", "n_sets", "n_samples"} <= set(data)


def test_reference_mode_drops_the_last_position_and_applies_the_skip_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = write_data(tmp_path / "data.jsonl")
    # Wrong only at positions 49 and 99 (the last of each bucket) and at row 3 (set 0, position 3).
    write_outputs(tmp_path / "out.jsonl", rows, lambda s, p: p not in (49, 99) and (s, p) != (0, 3))
    (tmp_path / "skip.json").write_text("[3]")
    common = ["--data", str(tmp_path / "data.jsonl"), "--outputs", str(tmp_path / "out.jsonl")]
    default = score_json(capsys, *common)
    reference = score_json(capsys, *common, "--reference", "--skip-list", str(tmp_path / "skip.json"))
    assert reference["avg"] == 100.0
    assert reference["n_skipped"] == 1
    assert reference["mode"] == "reference"
    assert [b["n"] for b in reference["buckets"]] == [2 * 49 - 1, 2 * 49]  # type: ignore[union-attr]
    # Default: bucket 0 misses (0, 3) and both 49s (3 of 100), bucket 1 both 99s (2 of 100).
    assert default["avg"] == pytest.approx((97 + 98) / 2)
    assert default["n_skipped"] == 0


def test_derived_skip_rows_leave_out_ambiguous_questions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = write_data(tmp_path / "data.jsonl", duplicate=(1, 7))
    write_outputs(tmp_path / "out.jsonl", rows, lambda s, p: (s, p) != (1, 7))
    data = score_json(
        capsys, "--data", str(tmp_path / "data.jsonl"), "--outputs", str(tmp_path / "out.jsonl")
    )
    assert data["n_skipped"] == 1
    assert data["skip_source"] == "derived"
    assert data["avg"] == 100.0


@pytest.mark.parametrize("field", ["samples", "sample", "text", "output"])
def test_every_documented_output_form_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str
) -> None:
    rows = write_data(tmp_path / "data.jsonl", n_sets=1)
    write_outputs(tmp_path / "out.jsonl", rows, lambda _s, p: p % 2 == 0, field=field)
    data = score_json(
        capsys, "--data", str(tmp_path / "data.jsonl"), "--outputs", str(tmp_path / "out.jsonl")
    )
    assert data["avg"] == pytest.approx(50.0)


def test_null_answers_score_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_data(tmp_path / "data.jsonl", n_sets=1)
    write_jsonl(tmp_path / "out.jsonl", [{"sample": None}] * N_ITEMS)
    data = score_json(
        capsys, "--data", str(tmp_path / "data.jsonl"), "--outputs", str(tmp_path / "out.jsonl")
    )
    assert data["avg"] == 0.0


def test_row_count_mismatch_names_both_files_and_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = write_data(tmp_path / "document_bi_32k.jsonl")  # a folder in the layout of download.py
    write_outputs(tmp_path / "out.jsonl", rows[:150], lambda _s, _p: True)
    code = main(
        ["score", "--task", "document", "--data", str(tmp_path), "--outputs", str(tmp_path / "out.jsonl")]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert f"{tmp_path / 'document_bi_32k.jsonl'} has 200 rows" in err
    assert f"{tmp_path / 'out.jsonl'} has 150 answers" in err
    assert "Traceback" not in err


def test_a_folder_needs_the_split_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_jsonl(tmp_path / "out.jsonl", [{"sample": "x"}])
    code = main(
        ["score", "--task", "code", "--data", str(tmp_path), "--outputs", str(tmp_path / "out.jsonl")]
    )
    assert code == 2
    assert "no code_backward_32k.jsonl" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"samples": []}, "field 'samples' must be a non-empty list"),
        ({"sample": 3}, "field 'sample' must hold text"),
        ({"answer": "x"}, "no answer field"),
    ],
)
def test_bad_output_lines_name_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: dict[str, object], message: str
) -> None:
    write_data(tmp_path / "data.jsonl", n_sets=1)
    write_jsonl(tmp_path / "out.jsonl", [{"sample": "x"}, line])
    code = main(
        [
            "score",
            "--task",
            "document",
            "--data",
            str(tmp_path / "data.jsonl"),
            "--outputs",
            str(tmp_path / "out.jsonl"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'out.jsonl'}:2: {message}" in err


def test_skip_list_of_another_split_is_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = write_data(tmp_path / "data.jsonl", n_sets=1)
    write_outputs(tmp_path / "out.jsonl", rows, lambda _s, _p: True)
    (tmp_path / "skip.json").write_text("[5, 3188]")
    data, out, skip = (str(tmp_path / name) for name in ("data.jsonl", "out.jsonl", "skip.json"))
    code = main(["score", "--task", "document", "--data", data, "--outputs", out, "--skip-list", skip])
    assert code == 2
    assert "past the 100 data rows" in capsys.readouterr().err


def test_readable_table_with_diagnostics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = write_data(tmp_path / "data.jsonl")
    write_outputs(tmp_path / "out.jsonl", rows, lambda _s, p: p >= 50)
    args = ["score", "--task", "document", "--data", str(tmp_path / "data.jsonl"), "--outputs"]
    assert main([*args, str(tmp_path / "out.jsonl"), "--diagnostics", "--n-boot", "100"]) == 0
    out = capsys.readouterr().out
    assert "document: 200 rows, 0 skipped (derived), 200 scored in 2 sets; mode default, 2 buckets" in out
    assert "0-49" in out and "50-99" in out
    assert "avg 50.0" in out and "gap (max-min) 100.0" in out
    assert "diagnostic recall_nopunct: avg 50.0" in out
    assert main([*args, str(tmp_path / "out.jsonl"), "--reference", "--n-boot", "100"]) == 0
    assert "0-48" in capsys.readouterr().out


def test_built_probe_records_can_be_scored_directly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    official_rows = write_data(tmp_path / "data.jsonl", n_sets=1)
    probes = load_official("document", data=tmp_path / "data.jsonl")
    write_probes(tmp_path / "probes.jsonl", probes)
    write_outputs(tmp_path / "out.jsonl", official_rows, lambda _s, p: p < 25)
    data = score_json(
        capsys,
        "--data",
        str(tmp_path / "probes.jsonl"),
        "--outputs",
        str(tmp_path / "out.jsonl"),
        "--buckets",
        "4",
    )
    assert [b["mean"] for b in data["buckets"]] == [100.0, 0.0, 0.0, 0.0]  # type: ignore[union-attr]
    code = main(
        [
            "score",
            "--task",
            "code",
            "--data",
            str(tmp_path / "probes.jsonl"),
            "--outputs",
            str(tmp_path / "out.jsonl"),
        ]
    )
    assert code == 2
    assert "is a document probe, not code" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--buckets", "0"], "n_buckets"),
        (["--buckets", "101"], "cannot be filled"),
        (["--n-boot", "0"], "n_boot"),
    ],
)
def test_bad_bucket_settings_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    rows = write_data(tmp_path / "data.jsonl", n_sets=1)
    write_outputs(tmp_path / "out.jsonl", rows, lambda _s, _p: True)
    args = ["score", "--task", "document", "--data", str(tmp_path / "data.jsonl")]
    assert main([*args, "--outputs", str(tmp_path / "out.jsonl"), *extra]) == 2
    assert message in capsys.readouterr().err


def test_reference_mode_needs_paper_sized_sets_or_explicit_buckets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = write_data(tmp_path / "data.jsonl", n_sets=1)[:60]  # 60 positions: not a multiple of 50
    write_jsonl(tmp_path / "data.jsonl", rows)
    write_outputs(tmp_path / "out.jsonl", rows, lambda _s, _p: True)
    args = ["score", "--task", "document", "--data", str(tmp_path / "data.jsonl"), "--outputs"]
    assert main([*args, str(tmp_path / "out.jsonl"), "--reference"]) == 2
    assert "pass --buckets N" in capsys.readouterr().err
    files = ["--data", str(tmp_path / "data.jsonl"), "--outputs", str(tmp_path / "out.jsonl")]
    data = score_json(capsys, *files, "--reference", "--buckets", "3")
    assert [b["n"] for b in data["buckets"]] == [19, 19, 19]  # type: ignore[union-attr]
