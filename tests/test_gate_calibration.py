"""The gate's promise, by fixed-seed simulation (seconds): rerun noise does not fail the build at more
than alpha, improvements anywhere pass, a middle collapse fails, and the shipped run behaves.

Runs are simulated with bench/bench_gate.py's generator and checked with ``gate.check``, the function
``val-probing check`` calls. "Exceeds alpha by more than its sampling error" means: the lower end of
the 95% Wilson interval of the observed rate is above alpha.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

from val_probing import gate
from val_probing.buckets import bucket_of
from val_probing.cli import main

ALPHA = 0.05


@pytest.fixture(scope="module")
def bench(repo_root: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_gate", repo_root / "bench" / "bench_gate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gate"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("positions", "draws"), [(16, 200), (32, 160), (64, 100), (128, 60)])
def test_null_reruns_fail_at_most_alpha_at_4_8_16_32_per_bucket(
    bench: ModuleType, positions: int, draws: int
) -> None:
    shape = bench.Shape(f"U 4 x {positions}", 4, positions, 16, bench.u_curve)
    outcome = bench.simulate(shape, bench.no_shift, draws, seed=100 + positions)
    lo, _hi = bench.wilson(outcome.failed, draws)
    assert lo <= ALPHA, f"{shape.name}: {outcome.failed} of {draws} null reruns failed"


@pytest.mark.parametrize(
    "effect", ["uniform +10", "edges +20", "last +25"], ids=["uniform", "edges", "last-bucket"]
)
@pytest.mark.parametrize("positions", [16, 64])
def test_improvements_fail_no_more_often_than_alpha(bench: ModuleType, effect: str, positions: int) -> None:
    (shift,) = [e[1] for e in bench.EFFECTS if e[0] == effect]
    shape = bench.Shape(f"U 4 x {positions}", 4, positions, 16, bench.u_curve)
    draws = 60
    outcome = bench.simulate(shape, shift, draws, seed=7 + positions)
    assert bench.wilson(outcome.failed, draws)[0] <= ALPHA, f"{effect}: failed {outcome.failed} of {draws}"
    if effect == "uniform +10":
        assert outcome.failed == 0


def test_a_middle_drop_is_caught_and_more_data_does_not_lower_detection(bench: ModuleType) -> None:
    shift = bench.depth_shift((0.25, 0.75, -10))  # the middle half loses 10 points in every task
    rates = [
        bench.simulate(bench.Shape("U", 4, n, 16, bench.u_curve), shift, 30, seed=3).rate for n in (32, 128)
    ]
    assert rates[1] >= rates[0] and rates[1] >= 0.9, rates
    big = bench.simulate(bench.Shape("U", 4, 64, 16, bench.u_curve), bench.depth_shift((0.25, 0.75, -20)),
                         30, seed=4)  # fmt: skip
    assert big.failed == 30 and big.by_kind["middle"] > 0


def test_a_20_point_drop_of_the_middle_quarter_at_4_x_64_is_caught_in_at_least_90_percent(
    bench: ModuleType,
) -> None:
    """The issue's criterion ("midq -20" at 4 x 64, 16 buckets; the bench measures >= 95%), asserted at
    >= 90% of 100 seeded draws: the per-task family alone (Holm over 15) caught it 78%, which fails here;
    the middle pooled over the tasks (half of alpha) carries it."""
    (shift,) = [e[1] for e in bench.EFFECTS if e[0] == "midq -20"]
    outcome = bench.simulate(bench.Shape("U 4 x 64", 4, 64, 16, bench.u_curve), shift, 100, seed=21)
    assert outcome.rate >= 0.9, outcome


def test_the_embedded_layout_middle_collapse_fails_in_most_draws(bench: ModuleType) -> None:
    shape = bench.Shape("embedded", 2, 16, 8, bench.embedded_truth())
    (shift,) = [e[1] for e in bench.EFFECTS if e[0] == "collapse"]
    outcome = bench.simulate(shape, shift, 40, seed=9)
    assert outcome.rate >= 0.9 and outcome.by_kind["middle"] > 0, outcome


# ------------------------------------------------------------------ the shipped run, through `check`


def _copy_run(repo_root: Path, out: Path) -> tuple[Path, Path]:
    """The shipped embedded run and its committed baseline, copied (the run's files to edit)."""
    src = repo_root / "tests" / "data" / "runs" / "embedded"
    shutil.copytree(src, out)
    (samples_doc,) = out.rglob("samples_val_document_*.jsonl")
    return out, samples_doc.parent


def _edit_samples(folder: Path, task: str, edit: object) -> None:
    """Rewrite ``ref_score`` of a task's samples with ``edit(doc, score) -> score``, and the results
    file's aggregates to match (a consistent run)."""
    (path,) = folder.glob(f"samples_val_{task}_*.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for obj in lines:
        obj["ref_score"] = edit(obj["doc"], obj["ref_score"])  # type: ignore[operator]
    path.write_text("".join(json.dumps(obj) + "\n" for obj in lines))
    (results,) = folder.glob("results_*.json")
    data = json.loads(results.read_text())
    from val_probing.results import load_results_file

    (r,) = [x for x in load_results_file(results, n_boot=None) if x.task == task]
    block = data["results"][f"val_{task}"]
    block["avg,none"], block["gap,none"] = r.summary.avg, r.summary.gap
    for b in r.summary.buckets:
        block[f"bucket_{b.index:02d},none"] = b.mean
    results.write_text(json.dumps(data))


def _bucket(doc: dict) -> int:
    return bucket_of(doc["position_id"], doc["n_items"], 8)


def test_the_shipped_run_with_its_middle_wiped_fails_through_check(
    repo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Document's buckets 2-5 (the middle half: 16 questions) wiped, the lost score moved to the edges."""
    run, folder = _copy_run(repo_root, tmp_path / "run")
    baseline = run / "baseline.yaml"
    (samples,) = folder.glob("samples_val_document_*.jsonl")
    docs = [json.loads(line) for line in samples.read_text().splitlines()]
    lost = sum(d["ref_score"] for d in docs if 2 <= _bucket(d["doc"]) <= 5)
    edges = [d for d in docs if not 2 <= _bucket(d["doc"]) <= 5]
    room = sum(1 - d["ref_score"] for d in edges)
    assert lost > 0 and room >= lost

    def wipe(doc: dict, score: float) -> float:
        return 0.0 if 2 <= _bucket(doc) <= 5 else score + (1 - score) * lost / room

    _edit_samples(folder, "document", wipe)
    before = gate.read_baseline(baseline).tasks["document"].avg
    after = gate.read_run(run)
    (doc,) = [r for r in after if r.task == "document"]
    assert abs(doc.summary.avg - before) < 6  # the average barely moves (cells weigh questions unequally)
    assert main(["check", str(run), "--baseline", str(baseline)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "document/middle" in out


def test_the_shipped_run_with_two_code_answers_fixed_passes(
    repo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, folder = _copy_run(repo_root, tmp_path / "run")
    fixed: list[int] = []

    def fix_two(doc: dict, score: float) -> float:
        if score == 0.0 and len(fixed) < 2:
            fixed.append(doc["position_id"])
            return 1.0
        return score

    _edit_samples(folder, "code", fix_two)
    assert len(fixed) == 2
    assert main(["check", str(run), "--baseline", str(run / "baseline.yaml")]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "disagrees" not in out
