"""The HTML report's data and file (no browser: tests/test_webpage_browser.py opens it in Chromium)."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path

import pytest

from val_probing.cli import main
from val_probing.results import load_results
from val_probing.results.questions import read_questions
from val_probing.results.task_result import ResultsError
from val_probing.webpage import page_data, render_html, write_html

DATA = Path(__file__).resolve().parent / "data"
SYNTHETIC = DATA / "runs" / "synthetic"
LENGTHS = DATA / "runs" / "lengths"
EMBEDDED = DATA / "runs" / "embedded" / "SmolLM2-135M-Instruct"


def page_json(text: str) -> dict:
    match = re.search(r'<script type="application/json" id="val-data">(.*?)</script>', text, re.S)
    assert match, "no data element"
    return json.loads(match.group(1))


@pytest.fixture(scope="module")
def data() -> dict:
    results = load_results([SYNTHETIC, LENGTHS], n_boot=50)
    return page_data(results, order=["u-model", "flat-model"])


def test_curves_carry_every_bucket_with_its_interval(data: dict) -> None:
    results = {(r.model, r.task, r.context_length): r for r in load_results([SYNTHETIC, LENGTHS], n_boot=50)}
    assert data["models"] == ["u-model", "flat-model"]  # the order given: the first is "before"
    assert len(data["curves"]) == len(results)
    for c in data["curves"]:
        summary = results[(c["model"], c["task"], c["length"])].summary
        assert [b["mean"] for b in c["buckets"]] == [round(b.mean, 4) for b in summary.buckets]
        for b, stat in zip(c["buckets"], summary.buckets, strict=True):
            assert b["lo"] == round(stat.ci[0], 4) and b["hi"] == round(stat.ci[1], 4)
            assert b["lo"] <= b["mean"] <= b["hi"]
        assert c["avg"] == round(summary.avg, 4)


def test_questions_are_stored_once_and_aligned_per_model(data: dict) -> None:
    block = data["questions"]["document/4096"]
    assert sorted(block["answers"]) == ["flat-model", "u-model"]
    rows = block["rows"]
    assert len(rows) == 32 and len({(r[0], r[1], r[4]) for r in rows}) == 32
    flat = {
        (q.set_id, q.position_id): q
        for q in read_questions(next(SYNTHETIC.glob("org__flat-model/samples_val_document_*")))
    }
    for row, answer in zip(rows, block["answers"]["flat-model"], strict=True):
        q = flat[(row[0], row[1])]
        assert row[4:] == [q.key, q.gold] and answer[:2] == [q.answer, round(q.score, 4)]


def test_tables_and_provenance(data: dict) -> None:
    u = next(r for r in data["table1"] if r["model"] == "u-model")
    assert u["cells"]["document"]["above_floor"] is None  # no floor known for these runs
    (eff,) = data["effective"]
    assert (eff["model"], eff["task"]) == ("u-model", "document")
    assert eff["bounds"] and [p["name"] for p in eff["peers"]] == ["RULER", "NoLiMa"]
    prov = {p["file"]: p for p in data["provenance"]}
    assert all(p["backend"] == "vllm" and p["lm_eval_version"] == "0.4.13" for p in prov.values())
    assert any(p["lengths"] == ["1K", "2K"] for p in prov.values())


def test_long_answers_are_cut_and_flagged() -> None:
    results = load_results([EMBEDDED], n_boot=20)
    cut = page_data(results, answer_chars=20)
    answers = [a for block in cut["questions"].values() for a in block["answers"]["SmolLM2-135M-Instruct"]]
    full = [q.answer for f in sorted(EMBEDDED.glob("samples_*.jsonl")) for q in read_questions(f)]
    assert sorted(a[0] for a in answers) == sorted(t[:20] for t in full)
    assert sorted(a[2] for a in answers) == sorted(len(t) > 20 for t in full)
    assert any(a[2] for a in answers)
    for curve in cut["curves"]:  # what each bucket cost, summing to the run's
        total, buckets = curve["cost"]["total"], curve["cost"]["buckets"]
        assert total["questions"] == 32 and total["cached_tokens"] is None
        assert sum(b["prompt_tokens"] for b in buckets.values()) == total["prompt_tokens"] > 32 * 2000
    (results_file,) = EMBEDDED.glob("results_*.json")
    recorded = json.loads(results_file.read_text(encoding="utf-8"))["total_evaluation_time_seconds"]
    assert cut["provenance"][0]["seconds"] == pytest.approx(float(recorded), abs=0.01)


def test_page_is_one_file_with_no_request_and_no_early_script_end(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(EMBEDDED, run)
    samples = next(run.glob("samples_val_code_*.jsonl"))
    lines = samples.read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    hostile = '</script><script>window.pwned=1</script><img src="http://example.invalid/x.png">'
    first["filtered_resps"] = [hostile]
    lines[0] = json.dumps(first)
    samples.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = write_html([run], tmp_path / "report.html")
    assert out == tmp_path / "report.html"
    text = out.read_text(encoding="utf-8")
    assert text.count("</script>") == 2  # the data element and the script: the answer cannot close one
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    page = re.sub(r'(id="val-data">).*?(</script>)', r"\1\2", text, flags=re.S)  # all but the data
    assert not re.search(r"<(link|img|iframe)\b|\bsrc=|@import|url\(|fetch\(|XMLHttpRequest", page)
    data = page_json(text)
    answers = data["questions"]["code/2048"]["answers"]["SmolLM2-135M-Instruct"]
    assert hostile in [a[0] for a in answers]  # kept as data, drawn with textContent


def test_render_escapes_the_title() -> None:
    results = load_results([EMBEDDED], n_boot=20)
    text = render_html(page_data(results, title="<b>x</b>"))
    assert "<title>&lt;b&gt;x&lt;/b&gt;</title>" in text


def test_command_writes_the_page_and_prints_its_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sub" / "r.html"
    assert main(["html", str(SYNTHETIC), str(LENGTHS), "--out", str(out), "--min-avg", "60"]) == 0
    assert str(out) in capsys.readouterr().out
    data = page_json(out.read_text(encoding="utf-8"))
    assert data["models"] == ["flat-model", "u-model"]
    (eff,) = data["effective"]
    assert (eff["min_avg"], eff["max_gap"], eff["effective"]) == (60.0, 20.0, "2K")  # --min-avg is used


def test_bad_output_path_stops_before_loading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert main(["html", str(tmp_path / "no-such-run"), "--out", str(folder)]) == 2
    err = capsys.readouterr().err
    assert str(folder) in err and "no-such-run" not in err and "Traceback" not in err
    assert main(["html", str(tmp_path / "no-such-run"), "--out", str(tmp_path / "r.html")]) == 2
    assert "no-such-run" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


def test_bad_samples_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "samples_val_code_x.jsonl"
    path.write_text('{"doc": {"set_id": 0, "position_id": 5, "n_items": 3}, "ref_score": 1}\n{}\n')
    with pytest.raises(ResultsError, match=r"samples_val_code_x.jsonl:1: doc.position_id 5"):
        read_questions(path)
    path.write_text("[1, 2]\n")
    with pytest.raises(ResultsError, match=r"samples_val_code_x.jsonl:1: missing field 'doc'"):
        read_questions(path)
    good = '{"doc": {"set_id": 0, "position_id": 1, "n_items": 3, "key": "k"}, "ref_score": 0.5}'
    path.write_text(good + "\n" + good[:20])  # a run killed while writing its last line
    (question,) = read_questions(path)
    assert (question.key, question.score, question.depth) == ("k", 0.5, 0.5)
    path.write_text(good[:20] + "\n" + good + "\n")
    with pytest.raises(ResultsError, match=r"samples_val_code_x.jsonl:1: malformed JSON"):
        read_questions(path)


def test_baseline_adds_the_gates_verdict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = EMBEDDED.parent / "baseline.yaml"
    out = write_html([EMBEDDED, SYNTHETIC], tmp_path / "gate.html", baseline=baseline, n_boot=50)
    gate = {block["model"]: block for block in page_json(out.read_text(encoding="utf-8"))["gate"]}
    same = gate["SmolLM2-135M-Instruct"]  # the run the baseline was recorded from
    assert same["passed"] is True and same["verdict"].startswith("PASS") and "avg" in same["table"]
    assert gate["u-model"]["passed"] is None and gate["u-model"]["verdict"].startswith("not compared")
    missing = tmp_path / "no-baseline.yaml"
    assert main(["html", str(EMBEDDED), "--out", str(tmp_path / "x.html"), "--baseline", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err and not (tmp_path / "x.html").exists()


def test_provenance_carries_the_recorded_versions(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(EMBEDDED, run)
    (results,) = run.glob("results_*.json")
    data = json.loads(results.read_text(encoding="utf-8"))
    versions = {"python": "3.11.7", "val-probing": "0.1.0", "vllm": "0.32.0", "torch": "2.13.0+cpu"}
    for config in data["configs"].values():
        config["metadata"]["versions"] = versions
    results.write_text(json.dumps(data), encoding="utf-8")
    (prov,) = page_data(load_results([run], n_boot=20))["provenance"]
    assert prov["tasks"]["code"]["versions"] == versions
    assert (prov["transformers_version"], prov["lm_eval_version"]) == ("5.19.0", "0.4.13")
    assert prov["backend"] == "vllm" and prov["model_args"]["max_model_len"] == 3072
    stamp = dt.datetime.fromtimestamp(float(data["date"]), tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    assert prov["date"] == stamp and prov["lengths"] == ["2K"]


def test_the_page_never_replaces_a_run_file_the_baseline_or_its_samples(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The one output rule, from the command and the Python API: --out naming one of the page's own
    inputs is exit 2 (a ValProbingError) and leaves it as it was."""
    from val_probing.errors import ValProbingError

    shipped = EMBEDDED.parent
    run = tmp_path / "embedded"
    shutil.copytree(shipped, run)
    baseline = run / "baseline.yaml"
    (samples,) = run.glob("baseline.samples.*.jsonl")
    (results,) = run.rglob("results_*.json")
    for target in (baseline, samples, results):
        before = target.read_bytes()
        assert main(["html", str(run), "--baseline", str(baseline), "--out", str(target)]) == 2
        assert "never replaces an input" in capsys.readouterr().err
        assert target.read_bytes() == before
    with pytest.raises(ValProbingError, match="never replaces an input"):
        write_html(run, results)
    assert results.read_bytes() == (shipped / results.relative_to(run)).read_bytes()
    assert main(["html", str(run), "--out", str(run / "report.html")]) == 0  # beside the run is fine
