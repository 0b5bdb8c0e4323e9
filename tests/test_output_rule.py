"""Issue 25 (part B): nothing a user points val-probing at is destroyed by an output.

One rule (``val_probing.outputs``), every command: an output that is an input (a symbolic or hard link
of one too) or another output, an output file that is one of a run's own files, an output folder that
holds an input, is refused before the work (exit 2, naming both). Devices and FIFOs are written in
place, symbolic links followed (dangling ones too), sockets refused: none is replaced by the atomic
rename. ``--overwrite`` removes only a folder val-probing wrote. Names over the file system's limit and
special-file inputs end in one line. The CLI runs in-process.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from val_probing.cli import main
from val_probing.records import read_probes

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "tests" / "data" / "runs" / "synthetic" / "org__u-model"
AS_ROOT = os.geteuid() == 0


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("VAL_PROBING_CACHE", str(cache))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    return cache


def _build(out: Path | str, *extra: str) -> int:
    args = ["build", "--task", "code", "--length", "300", "--tokenizer", "whitespace", "--sets", "1"]
    return main([*args, "--positions", "2", "--out", str(out), *extra])


def _pool(path: Path) -> Path:
    """A database pool in the authors' schema, 60 entities with distinct labels and descriptions."""
    rows = [{"id": f"Q{i}", "label": f"label {i}", "dcpt": f"entity number {i}"} for i in range(60)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def run_copy(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    return run


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line_error(capsys: pytest.CaptureFixture, *needles: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


# --------------------------------------------------------------------------------------------------
# An output never replaces an input


def test_build_out_that_is_the_pool(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pool = _pool(tmp_path / "pool.jsonl")
    before = pool.read_bytes()
    base = ["build", "--task", "database", "--length", "400", "--tokenizer", "whitespace", "--sets", "1"]
    assert main([*base, "--pool", str(pool), "--out", str(pool)]) == 2
    _one_line_error(capsys, f"--out {pool} is the input --pool {pool}")
    os.link(pool, tmp_path / "hard.jsonl")  # a hard link: another name, the same file
    (tmp_path / "soft.jsonl").symlink_to(pool)
    for other in ("hard.jsonl", "soft.jsonl"):
        assert main([*base, "--pool", str(pool), "--out", str(tmp_path / other)]) == 2
        _one_line_error(capsys, "is the input --pool")
    assert pool.read_bytes() == before
    assert not (tmp_path / "cache").exists()  # refused before any work


def test_check_markdown_that_is_the_baseline(
    tmp_path: Path, run_copy: Path, capsys: pytest.CaptureFixture
) -> None:
    baseline = tmp_path / "baseline.yaml"
    assert main(["baseline", str(run_copy), "--out", str(baseline)]) == 0
    before = baseline.read_bytes()
    capsys.readouterr()
    assert main(["check", str(run_copy), "--baseline", str(baseline), "--markdown", str(baseline)]) == 2
    _one_line_error(capsys, f"--markdown {baseline} is the input --baseline {baseline}")
    assert baseline.read_bytes() == before
    assert main(["check", str(run_copy), "--baseline", str(baseline), "--junit", str(run_copy)]) == 2
    _one_line_error(capsys, "is the input RUN_DIR")


def test_baseline_out_into_the_run(run_copy: Path, capsys: pytest.CaptureFixture) -> None:
    before = _snapshot(run_copy)
    for victim in sorted(run_copy.iterdir()):  # the results file and every samples file
        assert main(["baseline", str(run_copy), "--out", str(victim)]) == 2
        _one_line_error(capsys, f"--out {victim} is a file of the input RUN_DIR {run_copy}")
    (results,) = run_copy.glob("results_*.json")
    assert main(["baseline", str(results), "--out", str(results)]) == 2
    _one_line_error(capsys, "is the input RUN_DIR")
    assert _snapshot(run_copy) == before
    # beside the run's files, another name is fine, and so is running the same command again
    for _ in range(2):
        assert main(["baseline", str(run_copy), "--out", str(run_copy / "baseline.yaml")]) == 0
        assert main(["report", str(run_copy), "--csv", str(run_copy / "table1.csv")]) == 0


def test_two_outputs_naming_one_file(run_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    baseline = tmp_path / "baseline.yaml"
    assert main(["baseline", str(run_copy), "--out", str(baseline)]) == 0
    capsys.readouterr()
    same = tmp_path / "x"
    args = ["check", str(run_copy), "--baseline", str(baseline), "--markdown", str(same)]
    assert main([*args, "--junit", str(same)]) == 2
    _one_line_error(capsys, f"--markdown {same} and --junit {same} are one file")
    assert main(["report", str(run_copy), "--csv", str(same), "--markdown", f"{tmp_path}/./x"]) == 2
    _one_line_error(capsys, "are one file")
    assert not same.exists()


def test_report_and_plot_outputs_inside_their_runs(run_copy: Path, capsys: pytest.CaptureFixture) -> None:
    (results,) = run_copy.glob("results_*.json")
    before = _snapshot(run_copy)
    assert main(["report", str(run_copy), "--csv", str(results)]) == 2
    _one_line_error(capsys, "is a file of the input RUN_DIR")
    assert main(["plot", str(run_copy), "--out", str(run_copy.parent)]) == 2  # a folder holding the run
    _one_line_error(capsys, f"--out {run_copy.parent} holds the input RUN_DIR {run_copy}")
    assert _snapshot(run_copy) == before


# --------------------------------------------------------------------------------------------------
# Special files and symbolic links are never replaced


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def _read_in_background(path: Path) -> tuple[threading.Thread, list[bytes]]:
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(path.read_bytes()), daemon=True)
    reader.start()
    return reader, got


@pytest.mark.timeout(60)
def test_a_fifo_output_is_written_in_place(fifo: Path, tmp_path: Path) -> None:
    reader, got = _read_in_background(fifo)
    assert _build(fifo) == 0
    reader.join(10)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still a FIFO, not a regular file
    assert _build(tmp_path / "plain.jsonl") == 0
    assert got == [(tmp_path / "plain.jsonl").read_bytes()]


@pytest.mark.skipif(not AS_ROOT, reason="making a device node needs root (CI runs as root)")
def test_a_device_output_is_written_in_place_never_replaced(tmp_path: Path) -> None:
    """As root, ``--out /dev/null`` once replaced the machine's /dev/null: a null device of our own."""
    null = tmp_path / "null"
    os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    assert _build(null) == 0
    assert stat.S_ISCHR(os.lstat(null).st_mode) and os.lstat(null).st_rdev == os.makedev(1, 3)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_socket_output_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        assert _build(path) == 2
    _one_line_error(capsys, f"{path}: cannot write the probes file: it is a socket")
    assert stat.S_ISSOCK(os.lstat(path).st_mode)


@pytest.mark.parametrize("dangling", [False, True])
def test_a_symlinked_output_writes_its_target(tmp_path: Path, dangling: bool) -> None:
    target = tmp_path / "target.jsonl"
    if not dangling:
        target.write_text("old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target.name)
    assert _build(link) == 0
    assert link.is_symlink() and os.readlink(link) == target.name  # the link is kept
    assert len(read_probes(target)) == 2


def test_a_symlinked_output_folder_is_followed_or_refused(
    tmp_path: Path, run_copy: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "figures").mkdir()
    (tmp_path / "fig-link").symlink_to("figures")
    assert main(["plot", str(run_copy), "--out", str(tmp_path / "fig-link"), "--format", "svg"]) == 0
    assert (tmp_path / "fig-link").is_symlink() and (tmp_path / "figures" / "position_curves.svg").is_file()
    (tmp_path / "dangling").symlink_to("nowhere")
    assert main(["plot", str(run_copy), "--out", str(tmp_path / "dangling")]) == 2
    _one_line_error(capsys, "a dangling symbolic link")
    assert (tmp_path / "dangling").is_symlink()


# --------------------------------------------------------------------------------------------------
# Names too long, special-file inputs


@pytest.mark.parametrize("size", [300, 250])  # 250: fits, but not with the temporary file's suffix
def test_file_names_over_the_limit_end_in_one_line(
    size: int, tmp_path: Path, run_copy: Path, capsys: pytest.CaptureFixture
) -> None:
    long = tmp_path / ("a" * size)
    baseline = tmp_path / "baseline.yaml"
    assert main(["baseline", str(run_copy), "--out", str(baseline)]) == 0
    capsys.readouterr()
    commands = [
        ["build", "--task", "code", "--length", "300", "--tokenizer", "whitespace", "--out", str(long)],
        ["report", str(run_copy), "--csv", str(long)],
        *([["plot", str(run_copy), "--out", str(long / "figures")]] if size > 255 else []),
        ["baseline", str(run_copy), "--out", str(long)],
        ["check", str(run_copy), "--baseline", str(baseline), "--junit", str(long)],
        ["train", "synthesize", "--texts", str(run_copy), "--n-examples", "1", "--out", str(long)],
    ]
    for args in commands:
        assert main(args) == 2, args
        _one_line_error(capsys, "the file system allows")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["baseline.samples.e17b6669b276.jsonl",
                                                         "baseline.yaml", "run"]  # fmt: skip


@pytest.fixture
def null_device(tmp_path: Path) -> Iterator[Path]:
    if AS_ROOT:
        path = tmp_path / "null"
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        yield path
    else:
        yield Path("/dev/null")  # read only: a normal user cannot make a device node


@pytest.mark.timeout(60)
def test_fifo_and_device_inputs_are_named_as_what_they_are(
    fifo: Path, null_device: Path, run_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A FIFO as --baseline once hung the gate (read waits for a writer); a device read as "no such file"."""
    probes = tmp_path / "probes.jsonl"
    assert _build(probes) == 0
    capsys.readouterr()
    build = ["build", "--task", "database", "--length", "300", "--tokenizer", "whitespace"]
    synthesize = ["train", "synthesize", "--n-examples", "1"]
    for special, kind in ((fifo, "a FIFO (named pipe)"), (null_device, "a character device")):
        for args, flag in [
            (["check", str(run_copy), "--baseline", str(special)], "--baseline"),
            (["report", str(special)], "RUN_DIR"),
            ([*build, "--pool", str(special), "--out", str(tmp_path / "o.jsonl")], "--pool"),
            (["score", "--task", "code", "--data", str(probes), "--outputs", str(special)], "--outputs"),
            (["score", "--task", "code", "--data", str(special), "--outputs", str(probes)], "--data"),
            (["train", "run", "--config", str(special)], "--config"),
            (["train", "experiment", "--config", str(special), "--out", str(tmp_path / "x")], "--config"),
            ([*synthesize, "--texts", str(special), "--out", str(tmp_path / "x")], "--texts"),
        ]:
            assert main(args) == 2, args
            _one_line_error(capsys, f"{flag} {special}: it is {kind}")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


# --------------------------------------------------------------------------------------------------
# train synthesize: --overwrite removes only what val-probing wrote


def _corpus(folder: Path) -> Path:
    import random

    from test_training_data import make_corpus

    folder.mkdir(parents=True)
    for text in make_corpus(6, 8, random.Random(0)):
        (folder / f"{text.text_id}.txt").write_text(text.text)
    return folder


def _synthesize(corpus: Path, out: Path | str, *extra: str) -> int:
    args = ["train", "synthesize", "--texts", str(corpus), "--tokenizer", "whitespace", "--n-examples", "3"]
    sizes = ["--min-context", "200", "--max-context", "400", "--slack-tokens", "100"]
    sizes += ["--segment-tokens", "30"]
    return main([*args, *sizes, "--out", str(out), *extra])


def test_synthesize_never_removes_its_corpus_or_a_users_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = _corpus(tmp_path / "corpus")
    before = _snapshot(corpus)
    assert _synthesize(corpus, corpus, "--overwrite") == 2
    _one_line_error(capsys, f"--out {corpus} is the input --texts {corpus}")
    assert _synthesize(corpus / "t0.txt", corpus, "--overwrite") == 2  # a folder holding a text
    _one_line_error(capsys, f"--out {corpus} holds the input --texts {corpus / 't0.txt'}")
    assert _snapshot(corpus) == before

    user = tmp_path / "userdir"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    assert _synthesize(corpus, user, "--overwrite") == 2
    _one_line_error(capsys, f"{user}: no val_probing_manifest.json", "--overwrite removes only a folder")
    assert (user / "notes.txt").read_text() == "mine"

    data = tmp_path / "data"
    assert _synthesize(corpus, data) == 0
    assert _synthesize(corpus, data, "--overwrite") == 0  # a dataset val-probing wrote: replaced
    (data / "mine.txt").write_text("added by hand")
    assert _synthesize(corpus, data, "--overwrite") == 2
    _one_line_error(capsys, "holds files val-probing did not write (mine.txt)")
    assert (data / "mine.txt").read_text() == "added by hand"
    (data / "mine.txt").unlink()

    monkeypatch.chdir(data)
    assert _synthesize(corpus, ".", "--overwrite") == 2  # once a traceback (Path('.').with_name)
    _one_line_error(capsys, ".: the current folder")
    assert (data / "dataset_info.json").is_file()


def test_a_users_folder_named_like_the_old_build_folder_is_kept(tmp_path: Path) -> None:
    """``--out data`` once removed ``data.build`` beside it, whoever made it."""
    corpus = _corpus(tmp_path / "corpus")
    (tmp_path / "data.build").mkdir()
    (tmp_path / "data.build" / "keep.txt").write_text("mine")
    assert _synthesize(corpus, tmp_path / "data") == 0
    assert (tmp_path / "data.build" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "data", "data.build"]


def test_qa_cache_inside_the_output_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    corpus = _corpus(tmp_path / "corpus")
    out = tmp_path / "data"
    qa = ["--generator", "openai", "--model", "m", "--endpoint", "http://127.0.0.1:9/v1"]
    assert _synthesize(corpus, out, *qa, "--cache", str(out / "qa.jsonl")) == 2
    _one_line_error(capsys, f"--out {out} holds the output --cache {out / 'qa.jsonl'}")


def test_train_run_output_dir_that_holds_the_dataset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "runs" / "data"
    data.mkdir(parents=True)
    overrides = [f"dataset={data}", f"output_dir={tmp_path / 'runs'}"]
    assert main(["train", "run", "--config", "in2_tiny_cpu", *overrides]) == 2
    _one_line_error(capsys, f"output_dir {tmp_path / 'runs'} holds the input dataset {data}")
