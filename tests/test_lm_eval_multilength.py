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
