"""Hostile inputs to the CI gate, replayed: each asserts the exit code, the message, and that nothing
was left behind (no orphan samples file, no temporary file, no PASS printed before a failure).

Runs are written in lm-eval's layout by tests/test_gate.py's helpers (4 sets x 400 positions).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from test_gate import draw_run, write_run
from val_probing.cli import main


def files(folder: Path) -> set[str]:
    """Every file under ``folder`` (hidden temporaries included), relative."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def fill_disk_for(monkeypatch: pytest.MonkeyPatch, target: Path) -> None:
    """Every atomic write whose final rename lands on ``target`` fails as a full disk would."""
    real_replace = Path.replace

    def replace(self: Path, to: str | Path) -> Path:
        if Path(to) == target:
            raise OSError(28, "No space left on device")
        return real_replace(self, to)

    monkeypatch.setattr(Path, "replace", replace)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_run(tmp_path_factory.mktemp("run") / "run", draw_run(seed=1))


@pytest.fixture
def baseline(run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "ci" / "baseline.yaml"
    assert main(["baseline", str(run), "--out", str(out)]) == 0
    return out


def samples_of(baseline: Path) -> Path:
    return baseline.parent / yaml.safe_load(baseline.read_text())["samples"]


def check(run: Path, baseline: Path, *extra: str) -> int:
    return main(["check", str(run), "--baseline", str(baseline), *extra])


# ------------------------------------------------------------------------- the baseline is one unit


def test_out_an_existing_folder_is_exit_2_and_writes_nothing(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "dir").mkdir()
    before = files(tmp_path)
    assert main(["baseline", str(run), "--out", str(tmp_path / "dir")]) == 2
    err = capsys.readouterr().err
    assert "dir: cannot write the baseline YAML: it is a folder" in err
    assert files(tmp_path) == before  # no orphan dir.samples.*.jsonl


def test_out_below_a_file_is_exit_2_and_writes_nothing(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "plain").write_text("x")
    assert main(["baseline", str(run), "--out", str(tmp_path / "plain" / "b.yaml")]) == 2
    assert "plain is not a folder" in capsys.readouterr().err
    assert files(tmp_path) == {"plain"}


def test_out_in_a_read_only_folder_is_exit_2(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], read_only
) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    with read_only(folder):
        assert main(["baseline", str(run), "--out", str(folder / "b.yaml")]) == 2
        assert "is not writable" in capsys.readouterr().err
        assert files(folder) == set()


def test_the_samples_file_is_content_addressed_and_replaced_with_the_yaml(run: Path, baseline: Path) -> None:
    first = samples_of(baseline)
    assert first.name.startswith("baseline.samples.") and first.suffix == ".jsonl"
    other = write_run(baseline.parent.parent / "other", draw_run(seed=2))
    assert main(["baseline", str(other), "--out", str(baseline)]) == 0
    second = samples_of(baseline)
    assert second != first and not first.exists()  # the old pair's samples went with the old YAML
    assert files(baseline.parent) == {"baseline.yaml", second.name}


def test_a_failed_yaml_write_leaves_the_old_pair_and_no_new_file(
    run: Path, baseline: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A crash between the two writes: the old YAML still names the old samples, which still exist."""
    before = {name: (baseline.parent / name).read_bytes() for name in files(baseline.parent)}
    other = write_run(baseline.parent.parent / "other", draw_run(seed=2))
    fill_disk_for(monkeypatch, baseline)
    assert main(["baseline", str(other), "--out", str(baseline)]) == 2
    assert f"{baseline}: cannot write" in capsys.readouterr().err
    monkeypatch.undo()
    after = {name: (baseline.parent / name).read_bytes() for name in files(baseline.parent)}
    assert after == before
    assert check(run, baseline) == 0  # the old pair, whole


def test_samples_of_another_baseline_under_the_recorded_name_is_exit_2(
    run: Path, baseline: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The mixed pair of the issue (new samples beside the old YAML) is caught, never a PASS."""
    other_yaml = baseline.parent.parent / "other" / "b.yaml"
    other = write_run(baseline.parent.parent / "other-run", draw_run(seed=2))
    assert main(["baseline", str(other), "--out", str(other_yaml)]) == 0
    shutil.copyfile(samples_of(other_yaml), samples_of(baseline))
    capsys.readouterr()
    assert check(run, baseline) == 2
    captured = capsys.readouterr()
    assert "does not match its baseline" in captured.err and "sha256" in captured.err
    assert "PASS" not in captured.out


def test_a_format_1_baseline_is_refused_with_the_command_to_re_create_it(
    run: Path, baseline: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline.write_text(baseline.read_text().replace("format: 3", "format: 1"))
    assert check(run, baseline) == 2
    assert "format-1 baseline" in (err := capsys.readouterr().err) and "val-probing baseline" in err


# ------------------------------------------------------------------------------ strict baseline YAML


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("tolerances:\n", "tolerence:\n", "unknown key 'tolerence' (did you mean 'tolerances'?)"),
        ("statistics:\n", "statistcs:\n", "unknown key 'statistcs' (did you mean 'statistics'?)"),
        ("  code:\n", "  code:\n    tolerence: {bucket: 5}\n", "tasks.code: unknown key 'tolerence'"),
        ("  bucket: 10.0\n", "  buket: 10.0\n", "tolerances: unknown key 'buket' (did you mean 'bucket'?)"),
        ("  alpha: 0.05\n", "  alpha: abc\n", "statistics.alpha: expected float, got 'abc'"),
        ("  resamples: 4000\n", "  resamples: many\n", "statistics.resamples: expected int, got 'many'"),
        ("  min_questions: 16\n", "  min_questions: 2.5\n", "min_questions: expected int, got 2.5"),
        ("  fail_low_power: false\n", "  fail_low_power: 3\n", "fail_low_power: expected bool, got 3"),
        ("      probe_hash:", "      probe_hsh:", "unknown key 'probe_hsh' (did you mean 'probe_hash'?)"),
        ("  document:\n", "  documnet:\n", "tasks: unknown key 'documnet' (did you mean 'document'?)"),
        ("    n_samples: 1600\n", "    n_samples: lots\n", "document.n_samples: expected int, got 'lots'"),
        ("model: model\n", "model: model\nmodel: other\n", "key 'model' appears twice"),
    ],
)  # fmt: skip
def test_a_bad_baseline_key_or_value_is_exit_2_naming_it(
    run: Path, baseline: Path, old: str, new: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = baseline.read_text()
    assert old in text
    baseline.write_text(text.replace(old, new, 1))
    before = files(baseline.parent)
    assert check(run, baseline) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err
    assert captured.out == ""  # nothing compared, no verdict
    assert files(baseline.parent) == before


def test_a_task_dropped_from_the_yaml_is_a_task_mismatch(
    run: Path, baseline: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = yaml.safe_load(baseline.read_text())
    del data["tasks"]["database"]
    baseline.write_text(yaml.safe_dump(data, sort_keys=False))
    assert check(run, baseline) == 2
    err = capsys.readouterr().err
    assert (
        "task mismatch: the YAML has tasks document, code but the samples file has document, code, database"
        in err
    )
    assert "n_samples" not in err


def test_a_task_renamed_to_another_family_is_a_task_mismatch(
    run: Path, baseline: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = yaml.safe_load(baseline.read_text())
    data["tasks"] = {"database" if k == "code" else k: v for k, v in data["tasks"].items() if k != "database"}
    baseline.write_text(yaml.safe_dump(data, sort_keys=False))
    assert check(run, baseline) == 2
    err = capsys.readouterr().err
    assert "task mismatch" in err and "n_samples" not in err


# ---------------------------------------------------------------------------------- check's outputs


@pytest.mark.parametrize("option", ["--markdown", "--junit"])
def test_an_output_that_is_a_folder_is_exit_2_before_the_check(
    run: Path, baseline: Path, tmp_path: Path, option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "out").mkdir()
    before = files(tmp_path)
    assert check(run, baseline, option, str(tmp_path / "out")) == 2
    captured = capsys.readouterr()
    assert "out: cannot write the" in captured.err and "it is a folder" in captured.err
    assert "PASS" not in captured.out and captured.out == ""
    assert files(tmp_path) == before


@pytest.mark.parametrize("option", ["--markdown", "--junit"])
def test_an_output_onto_the_baselines_samples_file_is_exit_2_and_leaves_it(
    run: Path, baseline: Path, option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    samples = samples_of(baseline)
    before = samples.read_bytes()
    assert check(run, baseline, option, str(samples)) == 2
    captured = capsys.readouterr()
    assert samples.name in captured.err and "PASS" not in captured.out
    assert samples.read_bytes() == before
    assert check(run, baseline) == 0  # the pair still verifies


def test_a_step_summary_that_cannot_be_written_is_exit_2(
    run: Path,
    baseline: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path))
    assert check(run, baseline) == 2
    captured = capsys.readouterr()
    assert "GITHUB_STEP_SUMMARY" in captured.err and captured.out == ""


def test_a_read_only_junit_folder_is_exit_2(
    run: Path, baseline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], read_only
) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    with read_only(folder):
        assert check(run, baseline, "--junit", str(folder / "gate.xml")) == 2
        assert "is not writable" in capsys.readouterr().err


def test_a_write_that_fails_during_the_check_is_exit_2_naming_it_and_prints_no_verdict(
    run: Path,
    baseline: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    junit = tmp_path / "gate.xml"
    fill_disk_for(monkeypatch, junit)
    assert check(run, baseline, "--junit", str(junit), "--markdown", str(tmp_path / "gate.md")) == 2
    captured = capsys.readouterr()
    assert f"{junit}: cannot write the output: No space left on device" in captured.err
    assert "PASS" not in captured.out  # never PASS then a failing exit status
    assert {f for f in files(tmp_path) if not f.startswith("ci/")} == {"gate.md"}  # no temporary left


# ----------------------------------------------------------------------------------- the run's side


def test_an_empty_samples_file_is_reported_as_such(
    run: Path, baseline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    samples = next(broken.rglob("samples_val_code_*.jsonl"))
    samples.write_text("")
    assert check(broken, baseline) == 2
    err = capsys.readouterr().err
    assert f"{samples}: no samples" in err and "tasks missing" not in err


def test_every_samples_file_empty_is_reported_as_such(
    run: Path, baseline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    for samples in broken.rglob("samples_val_*.jsonl"):
        samples.write_text("")
    assert check(broken, baseline) == 2
    assert "no samples" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--avg-tolerance", "-1", "--avg-tolerance: expected a number >= 0, got -1.0"),
        ("--alpha", "3", "--alpha: expected a number with 0 < alpha < 1, got 3.0"),
        ("--min-questions", "0", "--min-questions: expected an integer >= 1, got 0"),
    ],
)
def test_a_bad_baseline_option_is_exit_2_naming_it_and_writes_nothing(
    run: Path, tmp_path: Path, option: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["baseline", str(run), "--out", str(tmp_path / "b.yaml"), option, value]) == 2
    assert message in capsys.readouterr().err
    assert files(tmp_path) == set()


# ------------------------------------------------ recorded scores, environment, a run that disagrees


def test_a_hand_edited_expected_score_is_exit_2_naming_the_field(
    run: Path, baseline: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = baseline.read_text()
    start = text.index("  document:\n")
    at = text.index("    avg: ", start)
    end = text.index("\n", at)
    baseline.write_text(text[:at] + "    avg: 99" + text[end:])
    assert check(run, baseline) == 2
    err = capsys.readouterr().err
    assert "tasks.document.avg: 99, but its samples give" in err and "re-create the baseline" in err


def test_a_format_2_baseline_is_refused_with_the_command_to_re_create_it(
    run: Path, baseline: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline.write_text(baseline.read_text().replace("format: 3", "format: 2"))
    assert check(run, baseline) == 2
    err = capsys.readouterr().err
    assert "format-2 baseline" in err and f"val-probing baseline RUN_DIR --out {baseline}" in err


def _edit_results(run_dir: Path, out: Path, edit: object) -> Path:
    shutil.copytree(run_dir, out)
    (results,) = out.rglob("results_*.json")
    data = json.loads(results.read_text())
    edit(data)  # type: ignore[operator]
    results.write_text(json.dumps(data))
    return out


def test_environment_is_recorded_and_every_difference_named(
    run: Path, baseline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recorded = yaml.safe_load(baseline.read_text())["environment"]
    assert recorded["backend"] == "vllm" and recorded["versions.vllm"] is None

    def change(data: dict) -> None:
        data["config"]["model_args"] = "pretrained=org/model,dtype=bfloat16,enable_prefix_caching=True"
        data["transformers_version"] = "9.9.9"
        data["configs"]["val_code"]["metadata"]["versions"] = {"vllm": "0.32.0", "torch": "2.13.0"}

    other = _edit_results(run, tmp_path / "other", change)
    assert check(other, baseline) == 0
    out = capsys.readouterr().out
    for name in (
        "dtype: baseline unknown, run bfloat16",
        "prefix_caching: baseline unknown, run true",
        "transformers: baseline unknown, run 9.9.9",
        "versions.vllm: baseline unknown, run 0.32.0",
    ):
        assert name in out, out
    assert check(other, baseline, "--strict-environment") == 2
    assert "environment differs" in capsys.readouterr().err
    assert check(run, baseline, "--strict-environment") == 0  # the same environment


def test_a_run_whose_results_file_disagrees_with_its_samples_is_named(
    run: Path, baseline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def edit(data: dict) -> None:
        data["results"]["val_code"]["avg,none"] = 12.5

    other = _edit_results(run, tmp_path / "other", edit)
    assert check(other, baseline) == 0  # the samples are what is checked
    out = capsys.readouterr().out
    assert "disagrees with its own samples for code: avg 12.50 in the file" in out
