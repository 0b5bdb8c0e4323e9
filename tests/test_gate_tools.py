"""`val-probing calibrate` and `val-probing plan` from the CLI, on the shipped run and simulated runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_gate import draw_run, write_run
from val_probing import gate
from val_probing.cli import main


def test_calibrate_two_runs_reports_flip_rates_and_the_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = write_run(tmp_path / "a", draw_run(seed=1))
    same = write_run(tmp_path / "same", draw_run(seed=1))
    assert main(["calibrate", str(a), str(same)]) == 0
    out = capsys.readouterr().out
    assert "0.0%" in out and "PASS" in out
    # an independent rerun of the same model: many flips, and the gate's verdict
    rerun = write_run(tmp_path / "rerun", draw_run(seed=2))
    code = main(["calibrate", str(a), str(rerun)])
    out = capsys.readouterr().out
    result = gate.calibrate(gate.read_run(a), gate.read_run(rerun))
    (middle,) = [r for r in result.rates if r.task == "code" and r.region == "middle"]
    assert middle.questions == 4 * 200 and 0.2 < middle.rate < 0.7  # 0/1 at p 0.6-0.7 redrawn
    assert f"{middle.rate:.1%}" in out and code == (0 if result.result.passed else 1)


def test_calibrate_on_the_shipped_run_and_without_samples(
    repo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shipped = repo_root / "tests" / "data" / "runs" / "embedded"
    assert main(["calibrate", str(shipped), str(shipped)]) == 0
    out = capsys.readouterr().out
    assert "document  middle" in out and "16" in out and "PASS" in out
    bare = write_run(tmp_path / "bare", draw_run(seed=1), samples=False)
    assert main(["calibrate", str(bare), str(bare)]) == 2
    assert "needs per-sample scores" in capsys.readouterr().err


def test_plan_from_the_shipped_baseline_prints_rates_and_the_smallest_slice(
    repo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = repo_root / "tests" / "data" / "runs" / "embedded" / "baseline.yaml"
    argv = ["plan", "--baseline", str(baseline), "--drop", "30", "--region", "all", "--draws", "10"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "at 2 x 16, 8 buckets (4 per bucket)" in out
    assert all(f"| {r} |" in out for r in ("start", "middle", "end", "all"))
    assert "=> " in out and "val-probing demo --sets" in out


def test_plan_from_a_layout_and_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["plan", "--sets", "2", "--positions", "16", "--buckets", "8", "--drop", "40", "--draws", "10"]
    assert main(argv) == 0
    assert "idealised U-curve" in capsys.readouterr().out
    assert main(["plan", "--draws", "1"]) == 2
    assert "--draws" in capsys.readouterr().err
    assert main(["plan", "--sets", "2", "--positions", "4", "--buckets", "8", "--draws", "10"]) == 2
    assert "cannot fill 8 buckets" in capsys.readouterr().err


def test_plan_detection_rises_with_the_slice() -> None:
    from val_probing.gate.simulate import Layout, detection, u_curve

    small = detection(Layout(2, 16, 8), u_curve, "middle", 20, 30, seed=1).outcome.rate
    big = detection(Layout(4, 64, 8), u_curve, "middle", 20, 30, seed=1).outcome.rate
    assert big >= 0.9 and big > small


def test_a_baseline_with_a_region_without_buckets_is_unusable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = write_run(tmp_path / "run", draw_run(seed=1))
    out = tmp_path / "b.yaml"
    assert main(["baseline", str(run), "--out", str(out), "--region-start", "0.01"]) == 0
    assert main(["check", str(run), "--baseline", str(out)]) == 2
    assert "regions: start holds no bucket at 16 buckets" in capsys.readouterr().err
    assert main(["baseline", str(run), "--out", str(out), "--region-start", "2"]) == 2
    assert "--region-start: expected a depth" in capsys.readouterr().err


def test_a_fifo_given_to_plan_or_calibrate_is_named_not_read(tmp_path: Path) -> None:
    """A FIFO would block the read forever (plan hung): refused before the work, said as what it is."""
    import os
    import subprocess
    import sys

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for args in (["plan", "--baseline", str(fifo)], ["calibrate", str(fifo), str(fifo)]):
        done = subprocess.run(
            [sys.executable, "-m", "val_probing.cli", *args], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 2, done.stderr
        assert f"{fifo}: it is a FIFO" in done.stderr and "Traceback" not in done.stderr
