"""``val-probing demo``: quiet status lines from the engine's output, the log file, a failure's tail,
the output folder checked first, and ONE real run (slow) that prints at most ~40 lines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from val_probing.cli import main
from val_probing.commands.demo import task_line
from val_probing.evaluate import EvalFailed, move_run, run_child
from val_probing.progress import LogWatcher, failure_tail, split_output

# What lm-eval 0.4.13 and vLLM print during a demo run (shortened), in order.
ENGINE_OUTPUT = [
    "2026-12-01:16:19:33 INFO     [_cli.run:392] Selected Tasks: ['valprobing']",
    "2026-12-01:16:19:34 INFO     [evaluator:239] Initializing vllm model, with arguments: {...}",
    "INFO 12-01 16:19:50 [core.py:93] Initializing a V1 LLM engine (v0.32.0) with config: ...",
    "2026-12-01:16:20:30 INFO     [api.task:312] Building contexts for val_document on rank 0...",
    "100%|██████████| 32/32 [00:00<00:00, 48524.12it/s]",
    "2026-12-01:16:20:31 INFO     [api.task:312] Building contexts for val_code on rank 0...",
    "2026-12-01:16:20:31 INFO     [api.task:312] Building contexts for val_database on rank 0...",
    "2026-12-01:16:20:32 INFO     [evaluator:589] Running generate_until requests",
    "Running generate_until requests:   0%|          | 0/96 [00:00<?, ?it/s]",
    "Rendering prompts: 100%|██████████| 96/96 [00:00<00:00, 1156.06it/s]",
    "Adding requests: 100%|██████████| 96/96 [00:00<00:00, 812.50it/s]",
    "Processed prompts:  10%|█         | 10/96 [00:20<02:50, ...]",
    "Processed prompts:  52%|█████▏    | 50/96 [01:10<01:00, ...]",
    "Processed prompts:  53%|█████▎    | 51/96 [01:11<00:59, ...]",
    "Processed prompts:  96%|█████████▋| 93/96 [02:10<00:05, ...]",
    "Processed prompts: 100%|██████████| 96/96 [02:23<00:00, ...]",
    "Running generate_until requests: 100%|██████████| 96/96 [02:23<00:00,  1.50s/it]",
    "2026-12-01:16:23:00 INFO     [loggers.evaluation_tracker:247] Saving results aggregated",
]


def test_log_watcher_turns_the_engine_output_into_a_few_status_lines() -> None:
    watcher = LogWatcher()
    status = [msg for i, line in enumerate(ENGINE_OUTPUT) for msg in watcher.feed(line, now=10.0 * i)]
    assert status == [
        "  starting vllm (model load, ~1 min on CPU)",
        "  val_document: requests built (30 s)",
        "  val_code: requests built (50 s)",
        "  val_database: requests built (60 s)",
        "  engine ready after 70 s; generating",
        "  generated 50/96 prompts (52%, 50 s)",
        "  generated 93/96 prompts (96%, 70 s)",
        "  generated 96/96 prompts (100%, 80 s)",
        "  saving results and samples",
    ]


def test_split_output_cuts_at_newlines_and_carriage_returns() -> None:
    lines, rest = split_output("a\r\nProcessed prompts:  5%\rProcessed prompts: 10%\nhalf")
    assert lines == ["a", "Processed prompts:  5%", "Processed prompts: 10%"]
    assert rest == "half"


def test_failure_tail_leaves_out_progress_bars() -> None:
    lines = [f"line {i}" for i in range(40)] + ["Processed prompts:  52%|█| 50/96 [..]", "Error: boom"]
    assert failure_tail(lines, n=3) == ["line 38", "line 39", "Error: boom"]


def test_task_line_formats_the_scores(repo_root: Path) -> None:
    from val_probing.results import load_results

    (code,) = [r for r in load_results(repo_root / "tests/data/runs/embedded", n_boot=50) if r.task == "code"]
    line = task_line(code)
    lo, hi = code.summary.avg_ci
    assert line == (
        f"  val_code: avg {code.summary.avg:.1f} (95% CI {lo:.1f}-{hi:.1f}), gap {code.summary.gap:.1f}, "
        "32 questions"
    )


def _script(tmp_path: Path, body: str) -> list[str]:
    script = tmp_path / "fake_lm_eval.py"
    script.write_text(body)
    return [sys.executable, str(script)]


def test_run_child_writes_everything_to_the_log_and_the_watcher_prints_only_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = "import sys\n" + "".join(f"print({line!r})\n" for line in ENGINE_OUTPUT)
    body += "print('engine noise', file=sys.stderr)\n"
    log = tmp_path / "lm_eval.log"
    watcher = LogWatcher()
    run_child(_script(tmp_path, body), log_path=log, on_line=lambda line: print(*watcher.feed(line, 0.0)))
    out = capsys.readouterr()
    assert "engine noise" not in out.out + out.err and "Building contexts" not in out.out
    assert "  val_code: requests built" in out.out and "generated 96/96 prompts (100%" in out.out
    written = log.read_text()
    assert all(line in written for line in ENGINE_OUTPUT) and "engine noise" in written


def test_run_child_names_the_log_tail_on_failure(tmp_path: Path) -> None:
    body = (
        "import sys\nfor i in range(100):\n    print(f'step {i}')\n"
        "print('ValueError: bad', file=sys.stderr)\nsys.exit(3)\n"
    )
    log = tmp_path / "lm_eval.log"
    with pytest.raises(EvalFailed) as failed:
        run_child(_script(tmp_path, body), log_path=log)
    assert failed.value.code == 3
    err = str(failed.value)
    assert f"the last lines of {log}" in err and "ValueError: bad" in err and "step 99" in err
    assert "step 10\n" not in err  # only the tail
    assert "step 10\n" in log.read_text()


def test_run_child_streams_with_verbose(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    body = "print('engine noise')\n"
    run_child(_script(tmp_path, body), log_path=tmp_path / "x.log", echo=True)
    assert "engine noise" in capfd.readouterr().out


def test_demo_checks_the_output_folder_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    assert main(["demo", "--out", str(a_file)]) == 2
    err = capsys.readouterr().err
    assert f"{a_file}: cannot write the output folder: it is a file" in err
    assert "[demo 1/5]" not in err


@pytest.mark.slow
def test_demo_end_to_end_is_quiet_and_writes_the_figure(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "val_probing.cli", "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    printed = (proc.stdout + proc.stderr).splitlines()
    assert len(printed) <= 45, "\n".join(printed)
    (run_dir,) = {p.parent for p in out.rglob("results_*.json")}
    assert run_dir == out / "SmolLM2-135M-Instruct"  # as the README says, not the model's whole path
    figure = run_dir / "position_curves.png"
    page = run_dir / "report.html"
    assert page.stat().st_size > 10_000 and f"report:  {page}" in proc.stdout
    assert figure.read_bytes().startswith(b"\x89PNG")
    assert (run_dir / "summary.md").is_file() and (out / "lm_eval.log").stat().st_size > 10_000
    assert f"figure:  {figure}" in proc.stdout and f"log:     {out / 'lm_eval.log'}" in proc.stdout
    assert "| val_document |" in proc.stdout and "Processed prompts" not in proc.stdout


def test_the_run_moves_to_a_folder_named_after_the_model(tmp_path: Path) -> None:
    lm_eval_dir = tmp_path / "__root__.cache__val-probing__models__SmolLM2-135M-Instruct"
    lm_eval_dir.mkdir()
    new, old = "2026-12-01T16-23-00.1", "2026-11-30T10-00-00.1"
    for stamp in (new, old):
        (lm_eval_dir / f"results_{stamp}.json").write_text("{}")
        for task in ("val_code", "val_document"):
            (lm_eval_dir / f"samples_{task}_{stamp}.jsonl").write_text("")
    target = tmp_path / "SmolLM2-135M-Instruct"
    (moved,) = move_run([lm_eval_dir / f"results_{new}.json"], target)
    assert moved == target / f"results_{new}.json"
    assert sorted(p.name for p in target.iterdir()) == [
        f"results_{new}.json",
        f"samples_val_code_{new}.jsonl",
        f"samples_val_document_{new}.jsonl",
    ]
    assert sorted(p.name for p in lm_eval_dir.iterdir()) == sorted(
        [f"results_{old}.json", f"samples_val_code_{old}.jsonl", f"samples_val_document_{old}.jsonl"]
    )  # an earlier run is left where it was
    (again,) = move_run([moved], target)  # already in place: nothing moves
    assert again == moved and moved.is_file()
    (last,) = move_run([lm_eval_dir / f"results_{old}.json"], target)
    assert not lm_eval_dir.exists() and last.is_file()  # the emptied folder is removed


def test_demo_counts_must_be_positive_integers(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from val_probing.commands.demo import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(["--sets", "3"]).sets == 3
    for bad in ("0", "x"):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(["--positions", bad])
        assert exit_info.value.code == 2
        assert (
            f"--positions: expected an integer >= 1, got {bad if bad == '0' else repr(bad)}"
            in capsys.readouterr().err
        )
