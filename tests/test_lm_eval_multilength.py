"""A task built at several context lengths runs through the real lm_eval CLI and loads per length.

Regression test: set ids repeat across lengths, and the aggregations once mixed two contexts with
different item counts into one "set" (SummaryError: samples disagree on n_items).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from val_probing.lm_eval_tasks import TASKS_DIR
from val_probing.results import load_results


def test_two_context_lengths_run_and_load_per_length(tmp_path: Path) -> None:
    out = tmp_path / "run"
    meta = {"context_length": [384, 768], "sets": 2, "positions": 4, "tokenizer": "embedded"}
    cmd = [
        sys.executable,
        "-m",
        "lm_eval",
        "--include_path",
        str(TASKS_DIR),
        "--tasks",
        "val_code",
        "--model",
        "dummy",
        "--metadata",
        json.dumps(meta),
        "--log_samples",
        "--output_path",
        str(out),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    (results_file,) = out.rglob("results_*.json")
    task = json.loads(results_file.read_text())["results"]["val_code"]
    assert task["avg,none"] == 0.0 and task["gap,none"] == 0.0  # the dummy model answers nothing

    samples = [json.loads(line) for f in out.rglob("samples_val_code_*.jsonl") for line in f.open()]
    by_length: dict[int, set[int]] = {}
    for s in samples:
        by_length.setdefault(s["doc"]["context_length"], set()).add(s["doc"]["context_index"])
    assert sorted(by_length) == [384, 768]
    # each (length, set) context has its own index, so the summary never merges two contexts
    assert by_length[384].isdisjoint(by_length[768]) and len(by_length[384] | by_length[768]) == 4

    loaded = sorted(load_results([out]), key=lambda r: r.context_length or 0)
    assert [r.context_length for r in loaded] == [384, 768]
    assert all(r.summary.n_samples == 2 * 4 for r in loaded)


def _lm_eval(out: Path, tasks: str, meta: dict, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "lm_eval", "--include_path", str(TASKS_DIR), "--tasks", tasks]
    cmd += ["--model", "dummy", "--metadata", json.dumps(meta), "--log_samples", "--output_path", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([*cmd, *extra], capture_output=True, text=True, env=env, timeout=300)


def test_per_length_avg_and_gap_in_the_results_file_and_ref_score_has_a_stderr(tmp_path: Path) -> None:
    out = tmp_path / "run"
    meta = {"max_seq_lengths": [96, 192], "sets": 2, "positions": 4, "tokenizer": "whitespace"}
    proc = _lm_eval(out, "val_document", meta)  # RULER's key, an alias of context_length
    assert proc.returncode == 0, proc.stderr[-3000:]
    (results_file,) = out.rglob("results_*.json")
    data = json.loads(results_file.read_text())
    task = data["results"]["val_document"]
    assert data["configs"]["val_document"]["metadata"]["context_length"] == [96, 192]
    # the dummy model answers "lol": every score is 0, so every per-length number is 0 too
    for length in (96, 192):
        assert task[f"avg_{length},none"] == 0.0 and task[f"gap_{length},none"] == 0.0
    assert isinstance(task["ref_score_stderr,none"], float)  # lm-eval's own mean: a real stderr
    assert task["ref_score,none"] == 0.0
    # the per-length numbers are those of the loaded results, one per length
    loaded = {r.context_length: r.summary for r in load_results(out)}
    assert sorted(loaded) == [96, 192]
    assert all(task[f"avg_{n},none"] == loaded[n].avg for n in loaded)


def test_a_768_token_run_adapts_its_buckets_and_predict_only_is_scored_by_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from val_probing.cli import main

    out = tmp_path / "pred"
    meta = {"context_length": 768, "sets": 1, "tokenizer": "embedded"}  # 14 functions fit: 14 buckets
    proc = _lm_eval(out, "val_code", meta, "--predict_only")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "fewer than the default 16 buckets: using n_buckets=14" in proc.stderr
    (results_file,) = out.rglob("results_*.json")
    data = json.loads(results_file.read_text())
    assert set(data["results"]["val_code"]) >= {"bypass,none"}
    assert data["configs"]["val_code"]["metadata"]["n_buckets"] == 14
    # answer the first bucket right, as if a model had: report must score the responses itself
    (samples_file,) = out.rglob("samples_val_code_*.jsonl")
    lines = [json.loads(line) for line in samples_file.read_text().splitlines()]
    assert all("ref_score" not in ln and ln["filtered_resps"] == ["lol"] for ln in lines)
    for ln in lines:
        if ln["doc"]["bucket"] == 0:
            ln["filtered_resps"] = [f"It is {ln['doc']['answer']}."]
    samples_file.write_text("".join(json.dumps(ln) + "\n" for ln in lines))
    assert main(["report", str(out), "--digits", "2"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| Model |")
    header = [c.strip() for c in table[0].split("|")]
    cells = dict(zip(header, (c.strip() for c in table[2].split("|")), strict=True))  # the one model's row
    # code avg: 1 of 14 buckets right; gap 100
    assert (cells["Code Avg"], cells["Code Gap↓"]) == (f"{100 / 14:.2f}", "100.00")
