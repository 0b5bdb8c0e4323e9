"""The CI gate: baseline files, paired tests that catch a real middle drop but not noise, exit codes.

Runs are written in lm-eval's layout (results_<stamp>.json + samples_<task>_<stamp>.jsonl under
<output_path>/<model>) with 4 sets x 400 positions in 16 buckets (100 questions per bucket, 25
per set-bucket cell): binary scores for code and database (McNemar's exact test), graded scores for
document (the sign-flip test). The baseline model has a U-shaped curve.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from xml.etree import ElementTree

import numpy as np
import pytest
import yaml

from val_probing import gate
from val_probing.buckets import ScoredSample, summarize
from val_probing.cli import main
from val_probing.gate.stats import holm, resamples_for, sign_flip_p
from val_probing.results import TaskResult, load_results

N_SETS, N_ITEMS, N_BUCKETS = 4, 400, 16
TASKS = ("document", "code", "database")
META = {
    "source": "built",
    "context_length": 2048,
    "pool": "embedded",
    "seed": 0,
    "n_buckets": N_BUCKETS,
    "probe_version": 1,
    "probe_hash": "abc123",
}
Scores = dict[str, list[float]]  # task -> scores in (set, position) order


def success_rate(position_id: int) -> float:
    """The U-curve: 0.9 at both ends, 0.6 in the middle."""
    depth = (position_id + 0.5) / N_ITEMS
    return 0.6 + 0.3 * (2 * depth - 1) ** 2


def draw(task: str, rng: random.Random) -> list[float]:
    out = []
    for _set_id in range(N_SETS):
        for pos in range(N_ITEMS):
            if task == "document":  # graded recall, like the document metric
                out.append(min(1.0, round(rng.random() * 2 * success_rate(pos) * 4) / 4))
            else:
                out.append(1.0 if rng.random() < success_rate(pos) else 0.0)
    return out


def keys() -> list[tuple[int, int]]:
    return [(s, p) for s in range(N_SETS) for p in range(N_ITEMS)]


def draw_run(seed: int) -> Scores:
    rng = random.Random(seed)
    return {task: draw(task, rng) for task in TASKS}


def bucket(pos: int) -> int:
    return pos * N_BUCKETS // N_ITEMS


def write_run(
    out: Path,
    scores: Scores,
    *,
    model: str = "org/model",
    meta: dict | None = None,
    samples: bool = True,
    stamp: str = "2026-02-03T04-05-06.000001",
) -> Path:
    """lm_eval --output_path OUT --log_samples, for the given per-sample scores."""
    folder = out / model.replace("/", "__")
    folder.mkdir(parents=True)
    results, configs = {}, {}
    for task, values in scores.items():
        name = f"val_{task}"
        summary = summarize(
            [ScoredSample(s, p, N_ITEMS, "", v) for (s, p), v in zip(keys(), values, strict=True)],
            n_buckets=N_BUCKETS,
            n_boot=10,
        )
        block = {"alias": name, "avg,none": summary.avg, "gap,none": summary.gap}
        block.update({f"bucket_{b.index:02d},none": b.mean for b in summary.buckets})
        results[name] = block
        configs[name] = {"task": name, "metadata": {**META, **(meta or {})}}
        if samples:
            with (folder / f"samples_{name}_{stamp}.jsonl").open("w") as handle:
                for i, ((s, p), v) in enumerate(zip(keys(), values, strict=True)):
                    doc = {"set_id": s, "position_id": p, "n_items": N_ITEMS, "bucket": bucket(p),
                           "key": f"{task}-{s}-{p}", "answer": "x"}  # fmt: skip
                    handle.write(json.dumps({"doc_id": i, "doc": doc, "ref_score": v}) + "\n")
    data = {
        "results": results,
        "configs": configs,
        "config": {"model": "vllm", "model_args": f"pretrained={model}", "limit": None},
        "model_name": model,
    }
    (folder / f"results_{stamp}.json").write_text(json.dumps(data))
    return out


def in_memory(scores: Scores, model: str = "org/model") -> list[TaskResult]:
    """The same run as TaskResults, without files (for the many-seed noise test)."""
    results = []
    for task, values in scores.items():
        samples = tuple(
            ScoredSample(s, p, N_ITEMS, f"{task}-{s}-{p}", v)
            for (s, p), v in zip(keys(), values, strict=True)
        )
        summary = summarize(list(samples), n_buckets=N_BUCKETS, n_boot=10)
        results.append(
            TaskResult(model, task, Path("mem"), 2048, MappingProxyType(dict(META)), summary, samples)
        )
    return results


def degrade_middle(scores: Scores, task: str, buckets: tuple[int, ...], flips: int, seed: int) -> Scores:
    """Turn ``flips`` successes into failures in each of ``buckets`` (spread over the sets)."""
    rng = random.Random(seed)
    values = list(scores[task])
    for b in buckets:
        hits = [i for i, (_s, p) in enumerate(keys()) if bucket(p) == b and values[i] == 1.0]
        for i in rng.sample(hits, flips):
            values[i] = 0.0
    return {**scores, task: values}


@pytest.fixture(scope="module")
def base_scores() -> Scores:
    return draw_run(seed=1)


@pytest.fixture(scope="module")
def baseline_file(tmp_path_factory: pytest.TempPathFactory, base_scores: Scores) -> Path:
    run = write_run(tmp_path_factory.mktemp("base") / "run", base_scores)
    out = tmp_path_factory.mktemp("baseline") / "baseline.yaml"
    assert main(["baseline", str(run), "--out", str(out)]) == 0
    return out


def check_cli(run: Path, baseline: Path, *extra: str) -> int:
    return main(["check", str(run), "--baseline", str(baseline), *extra])


def samples_of(baseline: Path) -> Path:
    """The samples file a baseline YAML names (content-addressed, beside it)."""
    return baseline.parent / yaml.safe_load(baseline.read_text())["samples"]


def copy_baseline(baseline: Path, folder: Path, text: str | None = None) -> Path:
    """The baseline pair copied into ``folder`` (the YAML's text replaced by ``text`` if given)."""
    path = folder / "baseline.yaml"
    path.write_text(baseline.read_text() if text is None else text)
    (folder / samples_of(baseline).name).write_bytes(samples_of(baseline).read_bytes())
    return path


# ------------------------------------------------------------------------------------------- baseline


def test_baseline_file_records_numbers_settings_and_samples(baseline_file: Path, base_scores: Scores) -> None:
    b = gate.read_baseline(baseline_file)
    assert b.model == "model" and list(b.tasks) == list(TASKS)
    code = b.tasks["code"]
    assert code.settings["probe_hash"] == "abc123" and code.settings["context_length"] == 2048
    assert code.settings["n_buckets"] == N_BUCKETS and code.settings["limit"] is None
    # the numbers are the recomputed curve of the samples
    expected = summarize(
        [ScoredSample(s, p, N_ITEMS, "", v) for (s, p), v in zip(keys(), base_scores["code"], strict=True)],
        n_buckets=N_BUCKETS,
        n_boot=10,
    )
    assert code.avg == pytest.approx(expected.avg, abs=1e-4)
    assert code.buckets[7] == pytest.approx(expected.buckets[7].mean, abs=1e-4)
    assert code.samples is not None and len(code.samples) == N_SETS * N_ITEMS
    assert sorted(s.score for s in code.samples) == sorted(base_scores["code"])
    assert samples_of(baseline_file).is_file()
    assert samples_of(baseline_file).name.startswith("baseline.samples.")


def test_baseline_tolerance_override_is_read(baseline_file: Path, tmp_path: Path) -> None:
    text = baseline_file.read_text()
    edited = text.replace("  code:\n", "  code:\n    tolerances: {bucket: 25.0}\n", 1)
    b = gate.read_baseline(copy_baseline(baseline_file, tmp_path, edited))
    assert b.tasks["code"].tolerances.bucket == 25.0 and b.tasks["code"].tolerances.avg == 2.0
    assert b.tasks["document"].tolerances.bucket == 10.0


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("format: 3", "format: 7", "format: expected 3, got 7"),
        ("  start: 0.25", "  start: 0.9", "regions.start: expected start < end"),
        ("  min_drop: 0.0", "  min_drop: -1", "statistics.min_drop: expected a number of points"),
        ("  bucket: 10.0", "  bucket: -1", "tolerances.bucket: expected a number >= 0, got -1"),
        ("  alpha: 0.05", "  alpha: 2", "statistics.alpha: expected a number with 0 < alpha < 1, got 2"),
        ("samples: baseline.samples.", "samples: gone.samples.", "gone.samples."),
    ],
)
def test_bad_baseline_is_exit_2_naming_the_field(
    baseline_file: Path, tmp_path: Path, old: str, new: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = baseline_file.read_text()
    assert old in text
    path = copy_baseline(baseline_file, tmp_path, text.replace(old, new, 1))
    assert check_cli(tmp_path, path) == 2
    assert message in capsys.readouterr().err


# -------------------------------------------------------------------------------------------- check


def test_identical_rerun_passes(baseline_file: Path, base_scores: Scores, tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", base_scores, stamp="2026-03-01T00-00-00.000001")
    assert check_cli(run, baseline_file) == 0
    result = gate.check(gate.read_baseline(baseline_file), load_results([run], n_boot=10))
    assert result.paired and result.passed
    # the fixed family (avg, start, middle, end, shape per task, and the middle pooled over the
    # tasks) is tested; buckets and gap are informational
    assert len(result.checks) == len(TASKS) * (5 + N_BUCKETS + 1) + 1
    assert len(result.gated) == len(TASKS) * 5 + 1
    assert [(c.task, c.metric) for c in result.checks][-1] == ("all", "middle")
    assert {c.metric for c in result.gated} == {"avg", "start", "middle", "end", "shape"}
    assert all(c.change == pytest.approx(0, abs=1e-9) for c in result.checks)
    assert all(c.p_value == 1.0 for c in result.gated)
    assert {c.status for c in result.checks if c.kind is gate.MetricKind.BUCKET} == {"info"}


def test_a_middle_drop_fails_on_the_pooled_middle_region_and_the_shape(
    baseline_file: Path, base_scores: Scores, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 15 of 100 questions in each of buckets 7 and 8 go from right to wrong: the average drops by
    # 30/1600 = 1.9 points, the middle region (buckets 4-11, 800 questions) by 3.75, the two buckets by 15.
    degraded = degrade_middle(base_scores, "code", (7, 8), flips=15, seed=3)
    run = write_run(tmp_path / "run", degraded)
    md, xml = tmp_path / "gate.md", tmp_path / "gate.xml"
    assert check_cli(run, baseline_file, "--markdown", str(md), "--junit", str(xml)) == 1
    result = gate.check(gate.read_baseline(baseline_file), load_results([run], n_boot=10))
    by = {(c.task, c.metric): c for c in result.checks}
    assert by[("code", "avg")].change == pytest.approx(30 / 1600 * 100)
    assert by[("code", "middle")].change == pytest.approx(30 / 800 * 100)
    assert by[("code", "middle")].method == "McNemar exact"
    assert by[("code", "middle")].p_value == pytest.approx(0.5**30)
    assert by[("code", "middle")].questions == 800
    # the pooled tests fail (the middle pooled over the tasks too); the edges did not move, so they
    # pass; buckets are reported, not gated
    assert {(c.task, c.metric) for c in result.failures} == {
        ("code", "avg"),
        ("code", "middle"),
        ("code", "shape"),
        ("all", "middle"),
    }
    assert by[("code", "start")].status == by[("code", "end")].status == "pass"
    bucket = by[("code", "bucket_07")]
    assert bucket.status == "info" and bucket.change == pytest.approx(15.0)
    assert bucket.ci is not None and bucket.ci[1] < 0  # its 95% interval of run - baseline is below 0
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "code/middle" in out and "95% CI" in out
    assert "code | middle" in md.read_text() and "REGRESSION" in md.read_text()
    root = ElementTree.fromstring(xml.read_text())
    cases = root.findall(".//testcase")
    assert len(cases) == len(TASKS) * (5 + N_BUCKETS + 1) + 1
    failed = {(c.get("classname"), c.get("name")) for c in cases if c.find("failure") is not None}
    assert failed == {("val_probing.code", m) for m in ("avg", "middle", "shape")} | {
        ("val_probing.all", "middle")
    }
    assert root.get("failures") == "4"


def test_gate_buckets_adds_the_buckets_to_the_family(baseline_file: Path, base_scores: Scores) -> None:
    degraded = in_memory(degrade_middle(base_scores, "code", (7, 8), flips=15, seed=3))
    result = gate.check(gate.read_baseline(baseline_file), degraded, gate_buckets=True)
    assert len(result.gated) == len(TASKS) * (5 + N_BUCKETS) + 1
    assert {("code", "bucket_07"), ("code", "bucket_08")} <= {(c.task, c.metric) for c in result.failures}


def test_a_margin_passes_a_small_true_drop_and_still_fails_a_big_one(
    baseline_file: Path, base_scores: Scores
) -> None:
    baseline = gate.read_baseline(baseline_file)
    small = in_memory(degrade_middle(base_scores, "code", (7, 8), flips=15, seed=3))  # middle -3.75
    assert not gate.check(baseline, small).passed
    result = gate.check(baseline, small, min_drop=5)
    assert result.passed, gate.format_table(result)
    assert any("margin min_drop 5 points" in n for n in result.notes)
    big = in_memory(degrade_middle(base_scores, "code", (5, 6, 7, 8, 9, 10), flips=40, seed=3))  # -30
    assert {c.metric for c in gate.check(baseline, big, min_drop=5).failures} >= {"middle", "avg"}
    with pytest.raises(gate.GateInputError, match="--min-drop"):
        gate.check(baseline, small, min_drop=-1)


def test_an_improvement_of_the_edges_only_never_fails(baseline_file: Path, base_scores: Scores) -> None:
    """The dip grows (shape) but the middle did not get worse: a better model, not a regression."""
    values = list(base_scores["code"])
    for i, (_s, p) in enumerate(keys()):
        if bucket(p) in (0, 1, 14, 15) and values[i] == 0.0:
            values[i] = 1.0
    result = gate.check(gate.read_baseline(baseline_file), in_memory({**base_scores, "code": values}))
    by = {(c.task, c.metric): c for c in result.checks}
    assert by[("code", "shape")].change > 0 and by[("code", "shape")].p_value is not None
    assert by[("code", "shape")].p_value < 1e-6  # the dip grew, significantly ...
    assert result.passed, gate.format_table(result)  # ... but the middle is unchanged: pass


def test_same_number_of_flips_spread_over_buckets_both_ways_passes(
    baseline_file: Path, base_scores: Scores
) -> None:
    # The 30 changed answers of the regression test, spread at random over all buckets, half of
    # them wrong -> right: that is noise, not a regression.
    rng = random.Random(5)
    values = list(base_scores["code"])
    ones = [i for i, v in enumerate(values) if v == 1.0]
    zeros = [i for i, v in enumerate(values) if v == 0.0]
    for i in rng.sample(ones, 15):
        values[i] = 0.0
    for i in rng.sample(zeros, 15):
        values[i] = 1.0
    result = gate.check(gate.read_baseline(baseline_file), in_memory({**base_scores, "code": values}))
    assert result.passed, gate.format_table(result)


def test_independent_reruns_pass_although_buckets_move_more_than_the_tolerance(baseline_file: Path) -> None:
    # A fresh draw of every answer from the SAME model (same U-curve): far more changed answers
    # than the regression above. Buckets of 100 questions move by several points, and in every
    # one of these reruns some bucket drops by more than its 10-point tolerance, so a
    # tolerance-only gate would fail them all; the paired, Holm-corrected test passes them.
    baseline = gate.read_baseline(baseline_file)
    tolerance_only = gate.Baseline(
        baseline.model,
        {n: replace(t, samples=None) for n, t in baseline.tasks.items()},
        replace(baseline.statistics, gate_buckets=True),
        baseline.tolerances,
    )
    # Against one fixed baseline draw the false-alarm rate is alpha on average, so a few of 20 fixed
    # reruns may fail (2 of these 20; 4 of 60 measured); a tolerance-only gate fails every one.
    failed = over = 0
    for seed in range(10, 30):
        run = in_memory(draw_run(seed))
        result = gate.check(baseline, run)
        failed += not result.passed
        worst = max(c.change for c in result.checks if c.metric.startswith("bucket_"))
        if worst > baseline.tolerances.bucket + 1e-6:
            over += 1
            assert not gate.check(tolerance_only, run).passed
    assert failed <= 2
    assert over >= 18, f"noise too small to mean anything: a bucket beyond its tolerance in {over} of 20"


# ----------------------------------------------------------------------------------- unusable input


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"probe_hash": "def456"}, "probe_hash"),
        ({"context_length": 4096}, "context_length"),
        ({"probe_version": 2}, "probe_version"),
    ],
)
def test_mismatched_settings_exit_2(
    baseline_file: Path,
    base_scores: Scores,
    tmp_path: Path,
    meta: dict,
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = write_run(tmp_path / "run", base_scores, meta=meta)
    assert check_cli(run, baseline_file) == 2
    err = capsys.readouterr().err
    assert message in err and "cannot be compared" in err


def test_another_model_is_compared_and_named(
    baseline_file: Path, base_scores: Scores, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a new checkpoint against the baseline of the previous one: not unusable input
    run = write_run(tmp_path / "run", base_scores, model="elsewhere/model-copy")
    md = tmp_path / "gate.md"
    assert check_cli(run, baseline_file, "--markdown", str(md)) == 0
    assert "model differs" in capsys.readouterr().out and "model differs" in md.read_text()
    worse = write_run(
        tmp_path / "worse", degrade_middle(base_scores, "code", (7, 8), flips=15, seed=3), model="x/ckpt-2"
    )
    assert check_cli(worse, baseline_file) == 1
    assert check_cli(worse, baseline_file, "--ignore", "model") == 1


def test_ignored_setting_is_compared_no_more(
    baseline_file: Path, base_scores: Scores, tmp_path: Path
) -> None:
    run = write_run(tmp_path / "run", base_scores, meta={"probe_hash": "def456"})
    assert check_cli(run, baseline_file) == 2
    assert check_cli(run, baseline_file, "--ignore", "probe_hash") == 0


def test_missing_task_exit_2(
    baseline_file: Path, base_scores: Scores, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    partial = {t: v for t, v in base_scores.items() if t != "database"}
    run = write_run(tmp_path / "run", partial)
    assert check_cli(run, baseline_file) == 2
    assert "tasks missing from the run: database" in capsys.readouterr().err


def test_samples_of_other_questions_exit_2(baseline_file: Path, base_scores: Scores) -> None:
    run = in_memory(base_scores)
    moved = [
        replace(r, samples=tuple(replace(s, key=s.key + "!") for s in r.samples))
        if r.task == "code" else r
        for r in run
    ]  # fmt: skip
    with pytest.raises(gate.GateInputError, match="code: the samples do not match"):
        gate.check(gate.read_baseline(baseline_file), moved)


# ------------------------------------------------------------------------------------ no samples


def test_without_samples_falls_back_to_tolerances_and_says_so(
    baseline_file: Path, base_scores: Scores, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    same = write_run(tmp_path / "same", base_scores, samples=False)
    md = tmp_path / "same.md"
    assert check_cli(same, baseline_file, "--markdown", str(md)) == 0
    out = capsys.readouterr().out
    assert "NO PER-SAMPLE SCORES in the run" in out and "tolerance comparison only" in out
    assert "NO PER-SAMPLE SCORES" in md.read_text()
    # a 40-point drop of two buckets moves the middle region by 10 (> its 5-point tolerance)
    degraded = write_run(
        tmp_path / "worse", degrade_middle(base_scores, "code", (7, 8), flips=40, seed=3), samples=False
    )
    assert check_cli(degraded, baseline_file) == 1
    result = gate.check(gate.read_baseline(baseline_file), load_results([degraded], n_boot=10))
    assert not result.paired and {c.method for c in result.gated} == {"tolerance"}
    assert {c.metric for c in result.failures} == {"avg", "middle", "shape"}


def test_baseline_without_samples_is_written_and_says_so(
    base_scores: Scores, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = write_run(tmp_path / "run", base_scores, samples=False)
    out = tmp_path / "b.yaml"
    assert main(["baseline", str(run), "--out", str(out)]) == 0
    assert "WITHOUT per-sample scores" in capsys.readouterr().out
    assert not list(tmp_path.glob("b.samples*")) and yaml.safe_load(out.read_text())["samples"] is None
    b = gate.read_baseline(out)
    assert not b.has_samples and b.tasks["code"].buckets[0] > 0


def test_github_step_summary_is_appended(
    baseline_file: Path, base_scores: Scores, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    run = write_run(tmp_path / "run", base_scores)
    assert check_cli(run, baseline_file) == 0
    text = summary.read_text()
    assert text.startswith("earlier step\n") and "VAL probing gate" in text and "PASS" in text


def test_holm_adjustment() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]
    # weighted (the pooled middle's half of alpha against two tasks' quarters): ordered by p / w, each
    # step multiplied by the weight left over its own
    assert holm([0.02, 0.01, 0.03], [0.5, 0.25, 0.25]) == pytest.approx([0.04, 0.04, 0.04])
    assert holm([0.01, 0.04, 0.03], [1, 1, 1]) == pytest.approx(holm([0.01, 0.04, 0.03]))


def test_the_pooled_middle_is_the_tasks_mean_and_adds_a_shared_drop_up(base_scores: Scores) -> None:
    """A middle drop too small for any one task's tests fails on the middle pooled over the tasks."""
    base = gate.make_baseline(in_memory(base_scores))
    degraded = base_scores
    for task in TASKS:  # 2 of 800 middle questions per task, spread: p = 2^-2 per task
        degraded = degrade_middle(degraded, task, (6, 9), flips=1, seed=5)
    same = gate.check(base, in_memory(base_scores))
    by = {(c.task, c.metric): c for c in same.checks}
    mean = sum(by[(t, "middle")].baseline for t in TASKS) / len(TASKS)
    assert by[("all", "middle")].baseline == pytest.approx(mean)
    assert by[("all", "middle")].questions == sum(by[(t, "middle")].questions or 0 for t in TASKS)
    result = gate.check(base, in_memory(degraded))
    by = {(c.task, c.metric): c for c in result.checks}
    assert all((by[(t, "middle")].p_value or 1) > 0.2 for t in TASKS)
    assert by[("all", "middle")].p_value == pytest.approx(0.5**6)  # 6 questions, every one worse
    assert {(c.task, c.metric) for c in result.failures} == {("all", "middle")}


def test_small_slices_say_which_tests_cannot_fail(base_scores: Scores) -> None:
    def small(samples: tuple[ScoredSample, ...]) -> tuple[ScoredSample, ...]:
        return tuple(s for s in samples if s.set_id == 0 and s.position_id % 25 == 0)  # 1 per bucket

    base = gate.make_baseline(in_memory(base_scores))
    few = replace(base, tasks={n: replace(t, samples=small(t.samples or ())) for n, t in base.tasks.items()})
    run = [replace(r, samples=small(r.samples)) for r in in_memory(base_scores)]
    result = gate.check(few, run)
    # start and end pool 4 questions each, the middle 8: within the tasks' half of alpha, p >= 2^-8
    # cannot pass 0.025 / 9, so they leave the Holm family (Tarone), which leaves avg and shape (16
    # questions) per task and the middle pooled over the tasks (24 questions): 7 tests
    said = [n for n in result.notes if "cannot fail at this size" in n]
    assert len(said) == len(TASKS) and all("start, middle, end cannot fail" in n for n in said)
    assert all("with 8 paired questions or fewer" in n and "Holm over the other 7" in n for n in said)
    by = {(c.task, c.metric): c for c in result.checks}
    assert by[("code", "start")].status == "low power" and by[("code", "start")].p_adjusted is None
    assert by[("all", "middle")].p_adjusted is not None and by[("all", "middle")].questions == 24
    assert len(result.gated) == 7
    # gated buckets of 1 question are low power, reported and not failing, unless asked for
    gated = gate.check(few, run, gate_buckets=True)
    low = {(c.task, c.metric) for c in gated.checks if c.status == "low power"}
    buckets = {(t, f"bucket_{b:02d}") for t in TASKS for b in range(N_BUCKETS)}
    assert low == buckets | {(t, m) for t in TASKS for m in ("start", "middle", "end")}
    assert any("min_questions 16" in n for n in gated.notes)
    strict = gate.check(few, run, gate_buckets=True, fail_low_power=True)
    assert not any(c.status == "low power" for c in strict.checks)
    assert len(strict.gated) == len(TASKS) * (5 + N_BUCKETS) + 1


def test_several_models_need_model_option(
    baseline_file: Path, base_scores: Scores, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = write_run(tmp_path / "run", base_scores)
    write_run(run, degrade_middle(base_scores, "code", (7, 8), flips=15, seed=3), model="org/other")
    assert check_cli(run, baseline_file) == 2
    assert "holds 2 models" in capsys.readouterr().err
    assert check_cli(run, baseline_file, "--model", "model") == 0
    assert check_cli(run, baseline_file, "--model", "other", "--ignore", "model") == 1


def test_markdown_to_the_step_summary_is_written_once(
    baseline_file: Path, base_scores: Scores, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the documented CI call: --markdown "$GITHUB_STEP_SUMMARY" with the variable set
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    run = write_run(tmp_path / "run", base_scores)
    assert check_cli(run, baseline_file, "--markdown", str(summary)) == 0
    text = summary.read_text()
    assert text.startswith("earlier step\n") and text.count("VAL probing gate") == 1


def test_monte_carlo_floor_cannot_block_a_clear_drop() -> None:
    stats = gate.Statistics(alpha=0.05, resamples=100)
    n_tests = 54
    resamples = resamples_for(stats, n_tests)
    assert n_tests / (resamples + 1) < stats.alpha / 5  # the smallest possible Holm p is well below alpha
    terms = -np.linspace(0.01, 0.02, 40)  # every graded question got worse, by different amounts
    p, method = sign_flip_p(terms, np.random.default_rng(0), resamples, binary=False)
    assert method == "sign-flip" and p == pytest.approx(1 / (resamples + 1))


def test_shipped_lm_eval_run_round_trips(
    repo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """baseline + check on the repository's own run in lm-eval's layout (2 sets x 16 positions, 8 buckets)."""
    run = repo_root / "tests" / "data" / "runs" / "synthetic" / "org__u-model"
    out = tmp_path / "baseline.yaml"
    assert main(["baseline", str(run), "--out", str(out)]) == 0
    assert check_cli(run, out, "--junit", str(tmp_path / "j.xml")) == 0
    text = capsys.readouterr().out
    assert "PASS" in text and "LOW POWER: document start, end cannot fail at this size" in text
    assert "Holm-corrected over 10 tests" in text  # start and end (8 questions) left out: Tarone
    assert len(ElementTree.parse(tmp_path / "j.xml").getroot().findall(".//testcase")) > 0


def test_a_task_without_samples_falls_back_alone(
    baseline_file: Path, base_scores: Scores, tmp_path: Path
) -> None:
    run = write_run(tmp_path / "run", degrade_middle(base_scores, "database", (7, 8), flips=15, seed=3))
    next(run.rglob("samples_val_code_*.jsonl")).unlink()  # e.g. lost: code falls back, the rest is paired
    result = gate.check(gate.read_baseline(baseline_file), load_results([run], n_boot=10))
    assert {c.method for c in result.gated if c.task == "code"} == {"tolerance"}
    assert "tolerance" not in {c.method for c in result.checks if c.task != "code"}
    assert {c.task for c in result.checks} == {*TASKS, "all"} and not result.paired
    assert any("NO PER-SAMPLE SCORES in the run for code" in n for n in result.notes)
    assert any("paired tests on matched samples of document, database" in n for n in result.notes)
    assert {(c.task, c.metric) for c in result.failures} == {
        ("database", "avg"),
        ("database", "middle"),
        ("database", "shape"),
        ("all", "middle"),  # pooled over the paired tasks, document and database
    }


def test_samples_cut_short_are_unusable_not_a_pass(
    baseline_file: Path, base_scores: Scores, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = write_run(tmp_path / "run", base_scores)
    samples = next(run.rglob("samples_val_code_*.jsonl"))
    text = samples.read_text()
    samples.write_text(text[: len(text) - 40])  # a run killed while writing its last line
    assert check_cli(run, baseline_file) == 2
    assert (
        "code: the samples do not match: 1 baseline questions are not in the run" in capsys.readouterr().err
    )


def test_the_committed_embedded_baseline_reads_verifies_and_passes_its_own_run(
    repo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fast guard for tests/test_ci_gate.py: the committed pair is current (format, hash) and whole."""
    folder = repo_root / "tests" / "data" / "runs" / "embedded"
    baseline = gate.read_baseline(folder / "baseline.yaml")  # verifies the samples file's sha256
    assert baseline.has_samples and list(baseline.tasks) == list(TASKS)
    assert sorted(p.name for p in folder.glob("baseline.samples.*")) == [
        samples_of(folder / "baseline.yaml").name
    ]
    assert check_cli(folder, folder / "baseline.yaml") == 0
    assert "PASS" in capsys.readouterr().out
