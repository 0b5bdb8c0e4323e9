"""The closed-book control: the same questions without their context (metadata ``closed_book``),
kept apart from the run with the context, and shown as a floor per task."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from val_probing.adapter.docs import load_probe_set, render_prompt
from val_probing.adapter.options import TaskSetupError, ValOptions
from val_probing.results import load_results
from val_probing.webpage import page_data

DATA = Path(__file__).resolve().parent / "data"
U_MODEL = DATA / "runs" / "synthetic" / "org__u-model"
LATER = "2026-01-03T00-00-00.000000"


def _meta(**extra: object) -> dict[str, object]:
    return {"tokenizer": "whitespace", "context_length": 300, "sets": 2, "positions": 8, **extra}


def test_closed_book_asks_the_same_questions_without_the_context() -> None:
    opened = load_probe_set(ValOptions.from_metadata("code", _meta()))
    closed_opts = ValOptions.from_metadata("code", _meta(closed_book=True))
    assert closed_opts.closed_book and closed_opts.record()["closed_book"] is True
    closed = load_probe_set(closed_opts)
    fields = ("set_id", "position_id", "key", "answer", "instruction", "context_id")
    assert [[d[f] for f in fields] for d in closed.docs] == [[d[f] for f in fields] for d in opened.docs]
    assert closed.probe_hash == opened.probe_hash  # same questions: pairable with the open-book run
    assert all(d["closed_book"] is True for d in closed.docs) and "closed_book" not in opened.docs[0]
    doc = closed.docs[0]
    prompt = render_prompt("plain", closed.contexts[doc["context_id"]], doc["instruction"])
    assert prompt == doc["instruction"]  # what ValTask.prompt renders: the question alone
    assert opened.contexts[doc["context_id"]] in render_prompt(
        "plain", opened.contexts[doc["context_id"]], doc["instruction"]
    )
    assert ValOptions.from_metadata("code", _meta()).closed_book is False
    with pytest.raises(TaskSetupError, match="closed_book"):
        ValOptions.from_metadata("code", _meta(closed_book="sometimes"))


def add_closed_book_run(folder: Path, factor: float = 0.25) -> None:
    """Beside the run in ``folder``, a newer closed-book run: the same questions, scores x ``factor``."""
    (results,) = folder.glob("results_*.json")
    stamp = results.stem.removeprefix("results_")
    data = json.loads(results.read_text(encoding="utf-8"))
    for config in data["configs"].values():
        config["metadata"]["closed_book"] = True
    (folder / f"results_{LATER}.json").write_text(json.dumps(data), encoding="utf-8")
    for samples in folder.glob(f"samples_*_{stamp}.jsonl"):
        lines = [json.loads(line) for line in samples.read_text(encoding="utf-8").splitlines()]
        for line in lines:
            line["ref_score"] = round(line["ref_score"] * factor, 6)
        target = samples.with_name(samples.name.replace(stamp, LATER))
        target.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")


@pytest.fixture()
def runs(tmp_path: Path) -> Path:
    """u-model's run and, beside it and newer, its closed-book run (scores x 0.25)."""
    folder = tmp_path / "org__u-model"
    shutil.copytree(U_MODEL, folder)
    add_closed_book_run(folder)
    return tmp_path


def test_a_newer_closed_book_run_never_replaces_the_run(runs: Path) -> None:
    default = load_results([runs], n_boot=20)
    assert len(default) == 3 and not any(r.closed_book for r in default)
    assert all(r.source.name.startswith("results_2026-01-02") for r in default)  # the run with context
    both = load_results([runs], n_boot=20, closed_book=True)
    assert sorted((r.task, r.closed_book) for r in both) == sorted(
        (t, c) for t in ("document", "code", "database") for c in (False, True)
    )
    floors = {r.task: r.summary.avg for r in both if r.closed_book}
    opened = {r.task: r.summary.avg for r in both if not r.closed_book}
    for task, avg in opened.items():
        assert floors[task] == pytest.approx(avg * 0.25, abs=1e-3)


def test_the_page_shows_the_floor_and_what_reading_adds(runs: Path) -> None:
    results = load_results([runs], n_boot=20, closed_book=True)
    data = page_data(results)
    assert data["models"] == ["u-model"]
    assert len(data["curves"]) == 3  # the closed-book run is a floor, not a curve
    floors = data["floors"]["u-model"]
    (row,) = data["table1"]
    for r in results:
        if r.closed_book:
            assert floors[r.task]["closed_book"] == pytest.approx(r.summary.avg, abs=1e-4)
            assert floors[r.task]["constant"] is None  # no constant-answer floor in these probe files
        else:
            floor = floors[r.task]["closed_book"]
            assert row["cells"][r.task]["above_floor"] == pytest.approx(r.summary.avg - floor, abs=1e-3)
    assert sum(p["tasks"][t]["closed_book"] for p in data["provenance"] for t in p["tasks"]) == 3


def test_only_closed_book_runs_are_refused(runs: Path, tmp_path: Path) -> None:
    from val_probing.results import ResultsError

    for path in (runs / "org__u-model").glob("*2026-01-02*"):
        path.unlink()
    with pytest.raises(ResultsError, match="only closed-book runs"):
        load_results([runs])


def test_report_table_one_says_what_reading_adds(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from val_probing.cli import main
    from val_probing.tables import constant_floors, floors, table_rows, to_markdown

    results = load_results([runs], n_boot=20, closed_book=True)
    assert main(["report", str(runs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[2:5] == ["Document Avg", "Document Gap↓", "Document above floor"]
    (row,) = [line for line in lines if line.startswith("| u-model |")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    opened = {r.task: r.summary.avg for r in results if not r.closed_book}
    closed = {r.task: r.summary.avg for r in results if r.closed_book}
    assert cells[4] == f"{opened['document'] - closed['document']:.1f}"
    # the higher floor counts: a constant-answer floor above the closed-book one wins
    from dataclasses import replace
    from types import MappingProxyType

    with_constant = [
        replace(
            r, metadata=MappingProxyType({**r.metadata, "constant_floor": {"score": 30.0, "answer": "x"}})
        )
        for r in results
    ]
    assert constant_floors(with_constant)[("u-model", "code")] == 30.0
    assert floors(with_constant)[("u-model", "code")] == max(30.0, closed["code"])
    text = to_markdown(table_rows(with_constant), floors=floors(with_constant))
    assert "above floor" in text
    assert "above floor" not in to_markdown(table_rows(results))  # no floors given: Table 1 as before


def test_the_lm_eval_task_asks_the_question_alone() -> None:
    from lm_eval.tasks._yaml_loader import load_yaml

    from val_probing.lm_eval_adapter import ValTask
    from val_probing.lm_eval_tasks import TASKS_DIR

    def task(meta: dict[str, object]) -> ValTask:
        cfg = load_yaml(Path(TASKS_DIR) / "val_database.yaml")
        # database entities are ~40 tokens each (distinct descriptions): 600 tokens hold more than 8
        extra = {"max_length": 4096, "tokenizer": "embedded", "context_length": 600}
        cfg["metadata"] = cfg.get("metadata", {}) | _meta(**meta) | extra
        return ValTask(config=cfg)

    closed, opened = task({"closed_book": True}), task({})
    assert closed.config.metadata["closed_book"] is True and opened.config.metadata["closed_book"] is False
    # the floor the task records is the one report and the page read back
    from val_probing.tables import constant_floor_of

    assert opened.probes.floor is not None
    assert constant_floor_of(opened.config.metadata) == opened.probes.floor.score > 0
    assert closed.config.metadata["probe_hash"] == opened.config.metadata["probe_hash"]
    # same probes, other prompts: lm-eval's request cache must not hand one run the other's
    assert closed.request_fingerprint != opened.request_fingerprint
    for c_doc, o_doc in zip(closed.test_docs(), opened.test_docs(), strict=True):
        assert closed.doc_to_text(c_doc) == c_doc["instruction"] == o_doc["instruction"]
        assert len(opened.doc_to_text(o_doc)) > 5 * len(c_doc["instruction"])
    closed.build_all_requests(limit=2)
    assert [inst.arguments[0] for inst in closed.instances] == [
        d["instruction"] for d in list(closed.test_docs())[:2]
    ]
