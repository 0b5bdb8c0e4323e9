"""Loading saved runs: lm-eval folders, results files, score --json; recomputation and bad input."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import pytest

from val_probing.buckets import ScoredSample, summarize
from val_probing.results import ResultsError, load_results, read_samples

DATA = Path(__file__).resolve().parent / "data"
SYNTHETIC = DATA / "runs" / "synthetic"
LENGTHS = DATA / "runs" / "lengths"
SCORE_JSON = DATA / "score" / "mistral-like_document.json"


@pytest.fixture
def run_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "run"
    shutil.copytree(SYNTHETIC, dest)
    return dest


def _results_file(folder: Path) -> Path:
    (found,) = folder.glob("results_*.json")
    return found


def test_loads_every_model_and_task_recomputed_from_samples() -> None:
    results = load_results([SYNTHETIC], n_boot=50)
    assert [(r.model, r.task) for r in results] == [
        (m, t) for m in ("flat-model", "u-model") for t in ("document", "code", "database")
    ]
    for r in results:
        assert r.has_samples and r.has_spread
        assert r.context_length == 4096
        assert r.metadata["n_buckets"] == 8
        assert r.metadata["model_args"]["pretrained"] == f"org/{r.model}"
        assert r.metadata["lm_eval_version"] == "0.4.13"
        assert len(r.samples) == 32
        # recomputed with summarize(): same numbers as a direct call on the same samples
        direct = summarize(
            [ScoredSample(s.set_id, s.position_id, s.n_items, s.key, s.score) for s in r.samples],
            n_buckets=8,
            n_boot=50,
        )
        assert r.summary == direct
        # and the same avg/gap/bucket means the run's aggregates report
        block = json.loads(r.source.read_text())["results"][f"val_{r.task}"]
        assert r.summary.avg == pytest.approx(block["avg,none"])
        assert r.summary.gap == pytest.approx(block["gap,none"])
        assert [b.mean for b in r.summary.buckets] == pytest.approx(
            [block[f"bucket_{i:02d},none"] for i in range(8)]
        )
    u_doc = results[3]
    assert u_doc.summary.gap > 40 > results[0].summary.gap  # the U-model loses the middle


def test_without_samples_the_spread_is_unknown_not_zero(run_copy: Path) -> None:
    for samples in run_copy.rglob("samples_*.jsonl"):
        samples.unlink()
    results = load_results([run_copy])
    assert len(results) == 6
    for r in results:
        assert not r.has_samples and not r.has_spread
        assert all(math.isnan(b.std) and math.isnan(b.ci[0]) for b in r.summary.buckets)
        assert math.isnan(r.summary.avg_ci[0]) and r.summary.n_sets == 0
        assert r.summary.n_samples == 32  # lm-eval's n-samples "effective"
        block = json.loads(r.source.read_text())["results"][f"val_{r.task}"]
        assert r.summary.avg == block["avg,none"] and r.summary.gap == block["gap,none"]
        assert [b.mean for b in r.summary.buckets] == [block[f"bucket_{i:02d},none"] for i in range(8)]


def test_context_length_from_metadata_lists(run_copy: Path) -> None:
    for samples in run_copy.rglob("samples_*.jsonl"):
        samples.unlink()
    path = _results_file(run_copy / "org__u-model")
    data = json.loads(path.read_text())
    data["configs"]["val_code"]["metadata"]["context_length"] = [8192]  # as the tasks record it
    data["configs"]["val_database"]["metadata"]["context_length"] = [1024, 2048]  # mixed: unknown
    path.write_text(json.dumps(data))
    lengths = {r.task: r.context_length for r in load_results([path])}
    assert lengths == {"document": 4096, "code": 8192, "database": None}


def test_a_null_bucket_is_reported_missing(run_copy: Path) -> None:
    for samples in run_copy.rglob("samples_*.jsonl"):
        samples.unlink()
    path = _results_file(run_copy / "org__u-model")
    data = json.loads(path.read_text())
    data["results"]["val_code"]["bucket_03,none"] = None
    path.write_text(json.dumps(data))
    code = next(r for r in load_results([path]) if r.task == "code")
    assert code.summary.missing_buckets == (3,)
    assert [b.index for b in code.summary.buckets] == [0, 1, 2, 4, 5, 6, 7]


def test_one_result_per_context_length_and_latest_run_wins() -> None:
    results = [r for r in load_results([SYNTHETIC, LENGTHS], n_boot=20) if r.model == "u-model"]
    doc = [r for r in results if r.task == "document"]
    assert [r.context_length for r in doc] == [1024, 2048, 4096]
    assert [r.source.parts[-3] for r in doc] == ["lengths", "lengths", "synthetic"]  # newest 4096
    assert doc[0].summary.gap < doc[1].summary.gap < doc[2].summary.gap
    everything = load_results([SYNTHETIC, LENGTHS], latest_only=False, n_boot=20)
    assert len([r for r in everything if r.model == "u-model" and r.task == "document"]) == 4


def test_score_json_keeps_its_spread_and_takes_the_model_from_the_file_name() -> None:
    with_caplog = load_results([SCORE_JSON])
    (r,) = with_caplog
    data = json.loads(SCORE_JSON.read_text())
    assert (r.model, r.task, r.samples) == ("mistral-like", "document", ())
    assert r.summary.avg == data["avg"] and r.summary.gap == data["gap"]
    assert [b.std for b in r.summary.buckets] == [b["std"] for b in data["buckets"]]
    assert r.has_spread


def test_truncated_last_samples_line_is_dropped_with_a_warning(
    run_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    samples = next((run_copy / "org__u-model").glob("samples_val_code_*.jsonl"))
    text = samples.read_text()
    samples.write_text(text[: len(text) - 40])  # cut inside the last line
    with caplog.at_level(logging.WARNING):
        results = load_results([run_copy], n_boot=20)
    code = next(r for r in results if r.model == "u-model" and r.task == "code")
    assert len(code.samples) == 31
    assert "truncated" in caplog.text and samples.name in caplog.text


def test_a_broken_line_inside_the_file_is_an_error_naming_file_and_line(run_copy: Path) -> None:
    samples = next((run_copy / "org__u-model").glob("samples_val_code_*.jsonl"))
    lines = samples.read_text().splitlines()
    lines[4] = lines[4][:30]
    samples.write_text("\n".join(lines) + "\n")
    with pytest.raises(ResultsError, match=rf"{samples.name}:5: malformed JSON"):
        read_samples(samples)


def test_a_missing_field_names_file_line_and_field(run_copy: Path) -> None:
    samples = next((run_copy / "org__u-model").glob("samples_val_code_*.jsonl"))
    lines = samples.read_text().splitlines()
    obj = json.loads(lines[2])
    del obj["doc"]["position_id"]
    lines[2] = json.dumps(obj)
    obj = json.loads(lines[3])
    obj["ref_score"] = 1.5
    lines[3] = json.dumps(obj)
    results_file = _results_file(run_copy / "org__u-model")
    samples.write_text("\n".join(lines[:4]) + "\n")
    with pytest.raises(ResultsError, match=r":3: missing field 'position_id'"):
        load_results([results_file])  # a file named explicitly must be readable
    samples.write_text("\n".join(lines[3:4]) + "\n")
    with pytest.raises(ResultsError, match=r":1: .*score"):
        load_results([results_file])


def test_inside_a_folder_unreadable_parts_are_skipped_with_a_warning(
    run_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    samples = next((run_copy / "org__u-model").glob("samples_val_code_*.jsonl"))
    lines = samples.read_text().splitlines()
    lines[1] = lines[1][:50]
    samples.write_text("\n".join(lines) + "\n")
    broken = run_copy / "org__flat-model" / "results_2027-01-01T00-00-00.json"
    broken.write_text('{"results": {"val_code": ')
    with caplog.at_level(logging.WARNING):
        results = load_results([run_copy], n_boot=20)
    assert [(r.model, r.task) for r in results] == [
        ("flat-model", "document"),
        ("flat-model", "code"),
        ("flat-model", "database"),
        ("u-model", "document"),
        ("u-model", "database"),
    ]
    assert f"{samples.name}:2: malformed JSON" in caplog.text
    assert f"{broken.name}: not valid JSON" in caplog.text
    assert "u-model: no results for code" in caplog.text


def test_empty_folder_alone_is_an_error_beside_results_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ResultsError, match=r"no VAL probing results in .*empty"):
        load_results([empty])
    with caplog.at_level(logging.WARNING):
        results = load_results([empty, SCORE_JSON])
    assert len(results) == 1 and "no lm-eval results_*.json" in caplog.text
    with pytest.raises(ResultsError, match="no such file or folder"):
        load_results([tmp_path / "nope"])


def test_results_of_another_task_are_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    other = tmp_path / "other" / "m" / "results_2026-01-01T00-00-00.json"
    other.parent.mkdir(parents=True)
    other.write_text(json.dumps({"results": {"arc_easy": {"acc,none": 0.5}}, "model_name": "m"}))
    with pytest.raises(ResultsError, match="no VAL probing results"):
        load_results([other])
    with caplog.at_level(logging.WARNING):
        results = load_results([other.parent, SCORE_JSON])
    assert len(results) == 1 and "arc_easy" in caplog.text
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ResultsError, match=r"foreign\.json: neither an lm-eval results file"):
        load_results([foreign])


def test_a_model_with_only_some_tasks_is_loaded_with_a_warning(
    run_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _results_file(run_copy / "org__flat-model")
    data = json.loads(path.read_text())
    del data["results"]["val_database"]
    path.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING):
        results = load_results([run_copy], n_boot=20)
    assert [r.task for r in results if r.model == "flat-model"] == ["document", "code"]
    assert "flat-model: no results for database" in caplog.text


def test_only_one_filter_is_read_when_the_task_has_several(run_copy: Path) -> None:
    samples = next((run_copy / "org__u-model").glob("samples_val_code_*.jsonl"))
    lines = [json.loads(line) for line in samples.read_text().splitlines()]
    other = [{**line, "filter": "strict", "ref_score": 0.0} for line in lines]
    samples.write_text("".join(json.dumps(line) + "\n" for line in lines + other))
    read = read_samples(samples)
    assert len(read) == 32 and [s.score for _l, s in read] == [line["ref_score"] for line in lines]


def test_a_predict_only_run_is_scored_from_its_responses(run_copy: Path) -> None:
    """lm-eval's --predict_only replaces every metric with 'bypass': the loader scores the responses."""
    results_file = next((run_copy / "org__u-model").glob("results_*.json"))
    data = json.loads(results_file.read_text())
    for name in ("val_document", "val_code", "val_database"):
        data["results"][name] = {"alias": name, "bypass,none": 999, "bypass_stderr,none": "N/A"}
    results_file.write_text(json.dumps(data))
    samples = next((run_copy / "org__u-model").glob("samples_val_code_*.jsonl"))
    lines = [json.loads(line) for line in samples.read_text().splitlines()]
    for line in lines:
        line["doc"].update(family="code", description=None)
        # the model named the function in the first half of the context only
        right = line["doc"]["position_id"] < 8
        line["filtered_resps"] = [f"def {line['doc']['answer']}():" if right else "no idea"]
        del line["ref_score"]
        line["bypass"] = None
    samples.write_text("".join(json.dumps(line) + "\n" for line in lines))
    code = next(r for r in load_results([results_file]) if r.task == "code")
    assert [b.mean for b in code.summary.buckets] == [100.0] * 4 + [0.0] * 4
    assert (code.summary.avg, code.summary.gap) == (50.0, 100.0)
    del lines[3]["filtered_resps"]
    samples.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(ResultsError, match=r"samples_val_code_.*:4: no 'ref_score' and no 'filtered_resps'"):
        load_results([results_file])


def test_a_predict_only_run_without_samples_says_what_is_missing(run_copy: Path) -> None:
    results_file = next((run_copy / "org__u-model").glob("results_*.json"))
    data = json.loads(results_file.read_text())
    data["results"] = {"val_code": {"alias": "val_code", "bypass,none": 999}}
    results_file.write_text(json.dumps(data))
    for samples in (run_copy / "org__u-model").glob("samples_*.jsonl"):
        samples.unlink()
    with pytest.raises(ResultsError, match=r"--predict_only run .* its samples file"):
        load_results([results_file])


@pytest.mark.slow
def test_a_real_lm_eval_run_of_the_tasks_loads(tmp_path: Path, repo_root: Path) -> None:
    """The contract with the tasks, end to end: lm_eval (dummy model) writes, load_results reads."""
    import os
    import subprocess
    import sys

    from val_probing.tables import table_rows

    out = tmp_path / "out"
    meta = {"tokenizer": "whitespace", "context_length": 512, "sets": 2, "positions": 8, "n_buckets": 4}
    cmd = [sys.executable, "-m", "lm_eval", "--model", "dummy", "--tasks", "val_code"]
    cmd += ["--include_path", str(repo_root / "tasks_yaml")]
    cmd += ["--metadata", json.dumps(meta), "--output_path", str(out), "--log_samples"]
    env = {**os.environ, "VAL_PROBING_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    (result,) = load_results([out], n_boot=20)
    assert (result.task, result.context_length, result.summary.n_buckets) == ("code", 512, 4)
    assert len(result.samples) == 16 and result.summary.n_sets == 2
    assert result.metadata["probe_hash"] and result.metadata["source"] == "built"
    block = json.loads(result.source.read_text())["results"]["val_code"]
    assert result.summary.avg == pytest.approx(block["avg,none"])
    assert [b.mean for b in result.summary.buckets] == pytest.approx(
        [block[f"bucket_{i:02d},none"] for i in range(4)]
    )
    assert table_rows([result])[0].cells["code"].gap == pytest.approx(block["gap,none"])
