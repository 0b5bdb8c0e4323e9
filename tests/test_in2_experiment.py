"""The IN2 placement experiment (issues 13, 24): arms from one plan, resumable stages, the whole path."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from test_training_data import make_corpus
from val_probing.errors import ValProbingError
from val_probing.in2 import experiment as ex
from val_probing.in2.assemble import SEGMENT_SEPARATOR, LengthRange, MixtureRatios, edge_band
from val_probing.in2.dataset import SynthesisConfig, save_dataset, synthesize
from val_probing.in2.experiment import design, package_prose, power, prepare, runner, stages
from val_probing.in2.qa import ExtractiveLocalGenerator
from val_probing.token_counters import WhitespaceCounter

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def _plan(seed: int = 0) -> Any:
    config = SynthesisConfig(
        n_examples=40,
        ratios=MixtureRatios(fine_grained=0.75, integration=0.25, short_context=0.0, general=0.0),
        length=LengthRange(600, 1200, slack_tokens=64),
        segment_tokens=40,
        seed=seed,
    )
    corpus = make_corpus(30, 10, random.Random(seed))
    return synthesize(corpus, WhitespaceCounter(), ExtractiveLocalGenerator(), config, random.Random(seed))


# ---------------------------------------------------------------------------------------------- the two arms


def test_both_arms_come_from_one_plan_and_differ_only_in_placement() -> None:
    plan = _plan()
    uniform = list(plan.with_placement("uniform").examples())
    edges = list(plan.with_placement("edges").examples())
    assert list(plan.examples()) == uniform  # the default is the IN2 placement
    assert len(uniform) == len(edges) == len(plan)
    middle = 0
    for a, b in zip(uniform, edges, strict=True):
        # same QA pair, same needed segments, the same multiset of context segments
        assert (a.kind, a.instruction, a.answer, a.sources) == (b.kind, b.instruction, b.answer, b.sources)
        parts_a, parts_b = a.context.split(SEGMENT_SEPARATOR), b.context.split(SEGMENT_SEPARATOR)
        assert sorted(parts_a) == sorted(parts_b) and a.context_tokens == b.context_tokens
        needed = {parts_b[n.segment_index] for n in b.needles}
        fillers = [p for p in parts_b if p not in needed]
        assert fillers == [p for p in parts_a if p not in needed]  # fillers in the same order too
        band = edge_band(len(fillers))
        for n in b.needles:  # edges: within the band of fillers nearest an end
            before = sum(p not in needed for p in parts_b[: n.segment_index])
            assert min(before, len(fillers) - before) <= band
        middle += any(0.3 < n.depth < 0.7 for n in a.needles)
    assert middle >= len(uniform) // 4  # uniform: the needed segment is often in the middle
    edge_depths = [n.depth for e in edges for n in e.needles]
    assert min(edge_depths) == 0.0 and max(edge_depths) > 0.85


def test_saved_arms_pass_the_arm_check_and_a_different_plan_fails_it(tmp_path: Path) -> None:
    plan = _plan()
    for placement in ("uniform", "edges"):
        save_dataset(tmp_path / placement, plan.with_placement(placement), "film")
    prepare.check_arms(tmp_path / "uniform", tmp_path / "edges")
    manifest = json.loads((tmp_path / "edges" / "manifest.json").read_text())
    assert manifest["placement"] == "edges"
    save_dataset(tmp_path / "other", _plan(seed=1).with_placement("edges"), "film")
    with pytest.raises(design.ExperimentError, match="differ beyond placement"):
        prepare.check_arms(tmp_path / "uniform", tmp_path / "other")


def test_train_synthesize_takes_the_placement(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for text in make_corpus(20, 10, random.Random(1)):
        (corpus / f"{text.text_id}.txt").write_text(text.text)
    common = ["synthesize", "--texts", str(corpus), "--tokenizer", "whitespace", "--generator", "local",
              "--n-examples", "12", "--mixture", "fine_grained=1", "--min-context", "600", "--max-context",
              "900", "--segment-tokens", "40"]  # fmt: skip
    manifests = {}
    for placement in ("uniform", "edges"):
        done = subprocess.run(
            [sys.executable, "-m", "val_probing.cli", "train", *common, "--placement", placement,
             "--out", str(tmp_path / placement)],
            capture_output=True, text=True, cwd=ROOT, check=False, env={**os.environ, **OFFLINE},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        manifests[placement] = json.loads((tmp_path / placement / "manifest.json").read_text())
    assert manifests["edges"]["placement"] == "edges" and manifests["uniform"]["placement"] == "uniform"
    edge_counts = [b["count"] for b in manifests["edges"]["needle_depth_histogram"]]
    assert sum(edge_counts[2:8]) == 0 and sum(edge_counts) == 12  # first or last segment only
    prepare.check_arms(tmp_path / "uniform", tmp_path / "edges")
    cmd = [sys.executable, "-m", "val_probing.cli", "train", *common, "--placement", "center", "--out", "x"]
    bad = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "--placement" in bad.stderr


# ---------------------------------------------------------------------------------------------- stages


def _config() -> design.ExperimentConfig:
    return design.load_experiment("in2_placement_smoke")[0]


def _counting_stage(name: str, needs: tuple[str, ...], calls: list[str], setting: dict[str, Any]) -> ex.Stage:
    def body(run: stages.Run, folder: Path) -> dict[str, Any]:
        calls.append(name)
        upstream = "".join((run.stage_dir(n) / "out.txt").read_text() for n in needs)
        (folder / "out.txt").write_text(f"{name}:{setting['value']}:{upstream}")
        return {"value": setting["value"]}

    return stages.Stage(name, needs, lambda _run: dict(setting), body)


def test_a_finished_stage_is_skipped_and_a_broken_or_changed_one_runs_again(tmp_path: Path) -> None:
    calls: list[str] = []
    first_setting, second_setting = {"value": 1}, {"value": 10}
    first = _counting_stage("first", (), calls, first_setting)
    second = _counting_stage("second", ("first",), calls, second_setting)

    def go() -> stages.Run:
        run = stages.Run(_config(), tmp_path)
        for stage in (first, second):
            stages.run_stage(run, stage)
        return run

    go()
    assert calls == ["first", "second"]
    record = json.loads((tmp_path / "stages" / "first" / design.STAGE_FILE).read_text())
    assert record["summary"] == {"value": 1} and record["inputs"] == {"value": 1}
    assert record["versions"]["python"] and record["seconds"] >= 0 and record["finished"]

    go()  # everything finished: nothing runs
    assert calls == ["first", "second"]

    # a killed run: the second stage's temporary folder is left, its final folder gone
    (tmp_path / "stages" / ".second.tmp").mkdir()
    (tmp_path / "stages" / "second" / "out.txt").unlink()
    go()
    assert calls == ["first", "second", "second"]
    assert not (tmp_path / "stages" / ".second.tmp").exists()

    # a corrupted stage manifest re-runs that stage (and, its outputs being the same, nothing after it)
    (tmp_path / "stages" / "first" / design.STAGE_FILE).write_text("{ not json")
    go()
    assert calls == ["first", "second", "second", "first"]
    # so does a damaged output file, or a damaged folder manifest
    (tmp_path / "stages" / "first" / "out.txt").write_text("first:1:cut")
    go()
    (tmp_path / "stages" / "second" / "val_probing_manifest.json").write_text("[]")
    go()
    assert calls == ["first", "second", "second", "first", "first", "second"]

    # a changed setting re-runs the stage and everything that reads it
    first_setting["value"] = 2
    run = go()
    assert calls[-2:] == ["first", "second"]
    assert (run.stage_dir("second") / "out.txt").read_text() == "second:10:first:2:"
    go()
    assert len(calls) == 8


def _keys(config: design.ExperimentConfig, tmp_path: Path) -> dict[str, str]:
    run = stages.Run(config, tmp_path)
    run.done = {
        s.name: stages.StageRecord(s.name, tmp_path, "k", "same", {}, 0.0)
        for s in runner.experiment_stages(config)
    }
    return {s.name: stages.inputs_hash(run, s) for s in runner.experiment_stages(config)}


def test_a_changed_setting_changes_the_key_of_the_stages_that_read_it(tmp_path: Path) -> None:
    import dataclasses

    config = _config()
    before = _keys(config, tmp_path)
    gen = dataclasses.replace(config.evaluation, max_gen_toks=16)
    after = _keys(dataclasses.replace(config, evaluation=gen), tmp_path)
    assert {n for n in before if before[n] != after[n]} == {"eval_base", "eval_uniform_s0", "eval_edges_s0"}
    syn = dataclasses.replace(config.synthesis, n_examples=9)
    after = _keys(dataclasses.replace(config, synthesis=syn), tmp_path)
    assert {n for n in before if before[n] != after[n]} == {"data_s0"}  # the rest follow on its new outputs


def test_the_experiment_seed_reaches_the_trainer(tmp_path: Path) -> None:
    import dataclasses

    from val_probing.training import config_path

    from val_probing.in2.experiment.runs import train_overrides
    from val_probing.in2.recipe_settings import load_config

    config = _config()
    training = dataclasses.replace(config.training, overrides=(*config.training.overrides, "seed=99"))
    config = dataclasses.replace(config, seed=7, training=training)
    run = stages.Run(config, tmp_path)
    run.done = {
        s.name: stages.StageRecord(s.name, tmp_path, "k", "same", {"path": "model"}, 0.0)
        for s in runner.experiment_stages(config)
    }
    recipe_config = load_config(
        config_path(config.training.config), train_overrides(run, "edges", 7, tmp_path)
    )
    assert recipe_config.seed == 7  # the experiment's, over the config file's 0 and a training override's 99
    assert recipe_config.dataset == str(tmp_path / "stages" / "data_s7" / "edges")  # that seed's data


def test_editing_the_recipe_or_its_config_trains_again(tmp_path: Path) -> None:
    import dataclasses
    import shutil

    from val_probing.training import config_path, recipe_path

    config = _config()
    recipe = tmp_path / "recipe.py"
    shutil.copy(recipe_path(config.training.recipe), recipe)
    recipe_config = tmp_path / "recipe.yaml"
    shutil.copy(config_path(config.training.config), recipe_config)
    training = dataclasses.replace(config.training, recipe=str(recipe), config=str(recipe_config))
    config = dataclasses.replace(config, training=training)
    before = _keys(config, tmp_path)
    trains = {"train_uniform_s0", "train_edges_s0"}
    for edited in (recipe_config, recipe):  # same names, other content
        edited.write_text(edited.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
        after = _keys(config, tmp_path)
        assert {n for n in before if before[n] != after[n]} == trains, edited.name
        before = after
    seeded = _keys(dataclasses.replace(config, seed=config.seed + 1), tmp_path)
    assert {"train_uniform_s1", "train_edges_s1"} <= set(seeded) and not trains & set(seeded)


def test_an_unwritable_experiment_folder_is_refused_before_any_work(tmp_path: Path) -> None:
    from val_probing.files import OutputError

    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="file"):
        ex.run_experiment(_config(), tmp_path / "file" / "exp")
    assert not (tmp_path / "stages").exists()


def test_status_lists_every_stage_pending_on_a_new_folder(tmp_path: Path) -> None:
    rows = ex.stage_status(_config(), tmp_path / "new")
    assert [name for name, _ in rows] == ex.stage_names(_config())
    assert {state for _, state in rows} == {"pending"}


def test_configs_are_found_by_name_and_checked(tmp_path: Path) -> None:
    full = design.load_experiment("in2_placement_cpu")[0]
    assert full.model == "embedded" and full.evaluation.backend == "vllm"
    assert full.synthesis.n_examples >= 100 and 768 <= full.synthesis.max_context <= 1024
    # enough questions per bucket for the gate to test every metric
    assert full.probes.sets * full.probes.positions // full.probes.n_buckets >= 16
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodel: tiny-llama\nprobes:\n  contxt_length: 5\n")
    with pytest.raises(
        design.ExperimentError,
        match=r"probes: unknown setting 'contxt_length' \(did you mean 'context_length'\?\)",
    ):
        design.load_experiment(bad)
    bad.write_text("name: x\nmodel: tiny-llama\nprobes:\n  positions: 5\n  n_buckets: 2\n")
    with pytest.raises(design.ExperimentError, match="multiple of n_buckets"):
        design.load_experiment(bad)
    bad.write_text("name: x\nmodel: tiny-llama\nevaluation:\n  backend: vlm\n")
    with pytest.raises(design.ExperimentError, match=r"backend: expected one of 'hf', 'vllm', got 'vlm'"):
        design.load_experiment(bad)
    for setting, message in [
        ("corpus:\n  max_texts: ten", "corpus.max_texts: expected int, got 'ten'"),
        ("synthesis:\n  n_examples: true", "synthesis.n_examples: expected int, got True"),
        ("synthesis:\n  n_examples: null", "synthesis.n_examples: must be set"),
        ("comparison:\n  power_effects: [5, x]", "power_effects: expected a list of float"),
        ("evaluation:\n  env: [a]", "evaluation.env: expected a mapping"),
        ("training:\n  in_process: 1", "training.in_process: expected bool, got 1"),
        ("evaluation:\n  env: {A: 1}", "evaluation.env.A: expected str, got 1"),
        ("arms: [uniform, uniform]", "arms: expected two or more different placements"),
        (
            "endpoint:\n  treatment: middle\n  control: ends",
            "endpoint: treatment 'middle' and control 'ends'",
        ),
        ("probes:\n  pool: synthetic", "probes.pool synthetic needs corpus.source synthetic"),
    ]:
        bad.write_text(f"name: x\nmodel: tiny-llama\n{setting}\n")
        with pytest.raises(design.ExperimentError, match=re.escape(message)):
            design.load_experiment(bad)
    for setting in ("", "corpus:\n  source: synthetic\n"):  # scratch: the synthetic language or nothing
        bad.write_text(f"name: x\nmodel: scratch\n{setting}")
        with pytest.raises(design.ExperimentError, match=r"model scratch needs corpus\.source synthetic"):
            design.load_experiment(bad)
    good = tmp_path / "good.yaml"
    good.write_text(
        "name: x\nmodel: tiny-llama\ncorpus:\n  max_texts: null\ncomparison:\n  alpha: 1\n"
        "  power_effects: [5, 10]\nevaluation:\n  env: {A: '1'}\n"
    )
    loaded = design.load_experiment(good)[0]
    assert loaded.corpus.max_texts is None and loaded.comparison.alpha == 1.0
    assert isinstance(loaded.comparison.alpha, float) and loaded.comparison.power_effects == (5.0, 10.0)
    assert loaded.evaluation.env == {"A": "1"}
    bad.write_text("- a list\n")
    with pytest.raises(ValProbingError, match="expected a mapping of settings"):
        design.load_experiment(bad)


def test_the_corpus_is_installed_package_prose() -> None:
    texts = package_prose.package_texts(min_words=150)
    assert len(texts) >= 10  # numpy, transformers, datasets, tqdm ... in any install of the project
    ids = [i for i, _t in texts]
    names = [i.partition("==")[0] for i in ids]
    assert len(set(names)) == len(names) and names == sorted(names)
    assert all(len(t.split()) >= 150 for _i, t in texts)
    fences = [line for _i, t in texts for line in t.splitlines() if re.fullmatch(r"\s*```[\w-]*\s*", line)]
    assert not fences  # code blocks are left out
    assert package_prose.package_texts(min_words=150, max_texts=3) == texts[:3]


def test_power_rises_with_the_effect_through_the_gate() -> None:
    config = _config()
    layout = design.ProbeSettings(context_length=384, sets=4, positions=16, n_buckets=4)
    settings = design.ComparisonSettings(power_effects=(0.0, 40.0), power_draws=4, resamples=400)
    config = design.ExperimentConfig("p", "tiny-llama", probes=layout, comparison=settings)
    found = power.simulated_power(config, {"document": 64})
    assert found["questions_per_bucket"] == 16 and found["tested"]
    assert found["by_effect"]["40"]["avg"] >= 0.75
    assert found["by_effect"]["0"]["avg"] <= 0.25
    # the per-bucket rows are tested (buckets are informational in the gate by default: untested,
    # their power read 0 at any effect); 16 questions per bucket in a family of ~30 tests is little
    assert found["by_effect"]["40"]["bucket"] > found["by_effect"]["0"]["bucket"]


# ---------------------------------------------------------------------------------------------- smoke


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "val_probing.cli", "train", "experiment", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=600,
        env={**os.environ, **OFFLINE},
    )


@pytest.mark.slow
def test_the_smoke_experiment_runs_the_whole_path_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    done = _cli("--config", "in2_placement_smoke", "--out", str(out))
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    compare = out / "stages" / "compare"
    found = json.loads((compare / "results.json").read_text())
    assert set(found["comparisons"]) == {"uniform_s0 vs base", "edges_s0 vs base", "uniform_s0 vs edges_s0"}
    probes = design.load_experiment("in2_placement_smoke")[0].probes
    questions = probes.sets * probes.positions
    buckets = {f"{b:02d}" for b in range(probes.n_buckets)}
    for per_task in found["comparisons"].values():
        assert set(per_task) == {"document", "code", "database"}
        for r in per_task.values():
            assert r["questions"] == questions and set(r["buckets"]) == buckets
            assert r["verdict"]["avg"] == "not tested (low power)"  # a question or two per bucket
    per_bucket = questions // probes.n_buckets
    assert found["power"]["questions_per_bucket"] == per_bucket and not found["power"]["tested"]
    summary = (compare / "summary.md").read_text()
    assert (
        "uniform (IN2)" in summary and "edges (control, by filler rank)" in summary and "low power" in summary
    )
    assert (compare / "curves.png").stat().st_size > 10_000
    data = json.loads((out / "stages" / "data_s0" / design.STAGE_FILE).read_text())["summary"]
    assert data["contamination"]["probes"] == 12 and data["contamination"]["texts_in"] == 40
    finished = {
        p.name: json.loads((p / design.STAGE_FILE).read_text())["finished"]
        for p in (out / "stages").iterdir()
    }
    assert sorted(finished) == sorted(ex.stage_names(_config()))

    status = _cli("--config", "in2_placement_smoke", "--out", str(out), "--status")
    assert status.returncode == 0 and status.stdout.count(" done (") == len(ex.stage_names(_config()))
    again = _cli("--config", "in2_placement_smoke", "--out", str(out))
    assert again.returncode == 0 and " stage " not in again.stdout  # nothing ran again
    assert finished == {
        p.name: json.loads((p / design.STAGE_FILE).read_text())["finished"]
        for p in (out / "stages").iterdir()
    }


@pytest.mark.slow
def test_the_same_settings_make_the_same_data_in_any_output_folder(tmp_path: Path) -> None:
    """The texts' ids seed the QA generator: they must not carry OUT's path (they once did, so the smoke
    data changed with pytest's tmp folder and one draw overran the recipe's length limit)."""
    from datasets import load_from_disk

    outs = [tmp_path / "a", tmp_path / "a much longer" / "folder name"]
    for out in outs:
        ex.run_experiment(_config(), out, until="data_s0")
    for arm in _config().arms:
        first, second = (load_from_disk(str(out / "stages" / "data_s0" / arm)).to_list() for out in outs)
        assert first == second and len(first) == _config().synthesis.n_examples
        assert all(s.startswith("corpus.jsonl:") for row in first for s in row["sources"])


@pytest.mark.slow
def test_the_scratch_smoke_experiment_runs_disjoint_arms_per_seed_and_the_endpoint(tmp_path: Path) -> None:
    """The powered regime's path (issue 24): synthetic corpus, one scratch model per seed, disjoint arms
    proven by their manifests, every arm x seed trained and evaluated, the registered endpoint."""
    out = tmp_path / "scratch"
    done = _cli("--config", "in2_powered_smoke", "--out", str(out))
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    config = design.load_experiment("in2_powered_smoke")[0]
    assert sorted(p.name for p in (out / "stages").iterdir()) == sorted(ex.stage_names(config))
    for seed in config.seeds:
        arms = json.loads((out / "stages" / f"data_s{seed}" / design.STAGE_FILE).read_text())["summary"][
            "arms"
        ]
        middle, ends = arms["middle"]["needle_depth_regions"], arms["ends"]["needle_depth_regions"]
        assert middle["before"] == middle["after"] == 0 and middle["middle"] == config.synthesis.n_examples
        assert ends["middle"] == 0 and ends["before"] + ends["after"] == config.synthesis.n_examples
        assert len(arms["middle"]["needle_depth_histogram"]) == 20
        lo, hi = arms["middle"]["needle_depth_range"]
        assert 0.25 <= lo <= hi < 0.75
        # a seed's models start from that seed's initialisation and train with that seed
        train = json.loads((out / "stages" / f"train_middle_s{seed}" / design.STAGE_FILE).read_text())
        assert f"seed={seed}" in train["summary"]["command"]
        model = next(a for a in train["summary"]["command"] if a.startswith("model="))
        assert model.endswith(f"warmup_s{seed}/final")  # the arms start from that seed's copy warm-up
        warm = json.loads((out / "stages" / f"warmup_s{seed}" / design.STAGE_FILE).read_text())["summary"]
        warm_model = next(a for a in warm["command"] if a.startswith("model="))
        assert warm_model.endswith(f"model/model/s{seed}")  # which starts from that seed's initialisation
        # every scratch model's summary says whether it looks sentences up by content (lookup.py)
        for summary in (warm, train["summary"]):
            assert set(summary["lookup"]) == {"near", "middle", "far"}
            assert all(0.0 <= v <= 1.0 for v in summary["lookup"].values())
    found = json.loads((out / "stages" / "compare" / "results.json").read_text())
    endpoint = found["endpoint"]
    assert set(endpoint["contrast_by_arm"]) == {"middle", "ends", "uniform"}
    assert all(set(v) == {"0", "1"} for v in endpoint["contrast_by_arm"].values())
    assert 0 < endpoint["p_value"] <= 1 and len(endpoint["paired_differences"]) == 2
    assert set(found["comparisons"]) == {
        f"{a}_s{s} vs ends_s{s}" for s in (0, 1) for a in ("middle", "uniform")
    }
    summary = (out / "stages" / "compare" / "summary.md").read_text()
    assert "Primary endpoint (pre-registered)" in summary and "H1: mean C(middle) > mean C(ends)" in summary
    assert (out / "stages" / "compare" / "curves.png").stat().st_size > 10_000


@pytest.mark.slow
def test_a_warm_up_that_teaches_no_lookup_stops_the_run_before_the_arms(tmp_path: Path) -> None:
    """``warmup.min_lookup``: a warmed model that does not find sentences by content stops the run (exit
    2, the stage and the accuracy named) before any arm trains on it."""
    text = design.load_experiment("in2_powered_smoke")[1].read_text()
    assert 'overrides: ["max_steps=2"]' in text
    config = tmp_path / "strict.yaml"
    config.write_text(
        text.replace('overrides: ["max_steps=2"]', 'overrides: ["max_steps=2"]\n  min_lookup: 0.9')
    )
    out = tmp_path / "run"
    done = _cli("--config", str(config), "--out", str(out))
    assert done.returncode == 2, (done.stdout + done.stderr)[-3000:]
    assert "warmup_s0: the warmed-up model's far lookup accuracy is" in done.stderr + done.stdout
    assert "below warmup.min_lookup 0.9" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
    assert not any(p.name.startswith("train_") for p in (out / "stages").iterdir())


@pytest.mark.slow
def test_a_pretrained_model_takes_the_synthetic_language(tmp_path: Path) -> None:
    """The synthetic corpus and pool with a pretrained tokenizer (not only the scratch model's): the
    regime a model that already looks sentences up needs (docs/in2-experiment.md). Run to the data."""
    text = design.load_experiment("in2_powered_smoke")[1].read_text()
    head, _, rest = text.partition("\nscratch:\n")
    rest = rest[rest.index("\nsynthesis:") :]  # no scratch shape and no warm-up: a pretrained model
    config = tmp_path / "pretrained.yaml"
    sized = {  # a BPE tokenizer spends about 3 tokens on a pseudo-word: 2+ sentences per segment
        "min_context: 128": "min_context: 320",
        "max_context: 192": "max_context: 448",
        "segment_tokens: 12": "segment_tokens: 64",
        "context_length: 192": "context_length: 448",
    }
    for old, new in sized.items():
        rest = rest.replace(old, new)
    assert all(new in rest for new in sized.values())
    config.write_text(head.replace("model: scratch", "model: tiny-llama") + rest)
    loaded = design.load_experiment(config)[0]
    assert loaded.model == "tiny-llama" and loaded.corpus.source == loaded.probes.pool == "synthetic"
    out = tmp_path / "run"
    done = _cli("--config", str(config), "--out", str(out), "--until", "data_s0")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    arms = json.loads((out / "stages" / "data_s0" / design.STAGE_FILE).read_text())["summary"]["arms"]
    assert arms["middle"]["needle_depth_regions"]["middle"] == loaded.synthesis.n_examples
    probes = json.loads((out / "stages" / "probes" / design.STAGE_FILE).read_text())["summary"]
    assert probes["families"]["document"]["questions"] == loaded.probes.sets * loaded.probes.positions
