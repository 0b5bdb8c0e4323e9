"""Hostile but realistic inputs, replayed (issue 11): damaged caches, unwritable outputs, a junk QA
endpoint, tokenizer paths, binary corpus files, leftovers of killed runs.

Each case asserts the exit code, the message, and that nothing was left behind. The CLI runs
in-process (``val_probing.cli.main``).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fake_openai import FakeOpenAI
from val_probing.build import ProbeSpec, cached_probes
from val_probing.cli import main
from val_probing.files import (
    FOLDER_MANIFEST,
    CacheInvalid,
    check_folder_manifest,
    remove_orphans,
    write_folder_manifest,
)
from val_probing.records import read_probes


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("VAL_PROBING_CACHE", str(cache))
    return cache


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    return int(proc.stdout)


def _build(out: Path, *extra: str) -> int:
    args = ["build", "--task", "code", "--length", "300", "--tokenizer", "whitespace", "--sets", "2"]
    return main([*args, "--positions", "4", "--out", str(out), *extra])


def _cache_file(cache: Path) -> Path:
    (entry,) = (cache / "probes").glob("*.jsonl")
    return entry


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp"))


# --------------------------------------------------------------------------------------------------
# The probe cache


def _damage_empty(path: Path) -> None:
    path.write_text("")


def _damage_cut_rows(path: Path) -> None:  # the header survives, rows are lost
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:4]))


def _damage_no_header(path: Path) -> None:  # rows that parse, as the old format wrote them
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[1:6]))


def _damage_edit_row(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    row = json.loads(lines[2])
    row["answer"] = "tampered"
    lines[2] = json.dumps(row, sort_keys=True) + "\n"
    path.write_text("".join(lines))


def _damage_other_key(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    header = json.loads(lines[0])
    header["key"] = "0123456789abcdef"
    path.write_text(json.dumps(header) + "\n" + "".join(lines[1:]))


@pytest.mark.parametrize(
    "damage", [_damage_empty, _damage_cut_rows, _damage_no_header, _damage_edit_row, _damage_other_key]
)
def test_damaged_probe_cache_is_rebuilt_with_one_warning(
    damage, tmp_path: Path, _private_cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert _build(tmp_path / "first.jsonl") == 0
    entry = _cache_file(_private_cache)
    damage(entry)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert _build(tmp_path / "second.jsonl") == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(entry) in warnings[0] and "rebuilding" in warnings[0]
    assert (tmp_path / "second.jsonl").read_bytes() == (tmp_path / "first.jsonl").read_bytes()
    assert len(read_probes(tmp_path / "second.jsonl")) == 8
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # the rebuilt entry is whole again: read without a warning
        assert _build(tmp_path / "third.jsonl") == 0
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
    assert _leftovers(tmp_path) == []


def test_library_readers_get_every_row_from_a_cut_entry(_private_cache: Path) -> None:
    """lm_eval's task reads the same cache through ``cached_probes``: a 3-line entry is rebuilt."""
    spec = ProbeSpec("document", 300, "whitespace", sets=2, positions=8)
    first, digest = cached_probes(spec)
    entry = _cache_file(_private_cache)
    entry.write_text("".join(entry.read_text().splitlines(keepends=True)[:3]))
    again, digest_again = cached_probes(spec)
    assert digest_again == digest and again == first and len(again) == 16


def test_lm_eval_docs_come_whole_from_a_cut_entry(_private_cache: Path) -> None:
    """The lm-eval task's docs (``adapter.docs.load_probe_set``) after the entry is cut to 3 lines."""
    from val_probing.adapter.docs import load_probe_set
    from val_probing.adapter.options import ValOptions

    opts = ValOptions(family="code", context_lengths=(300,), tokenizer="whitespace", sets=2, positions=8)
    first = load_probe_set(opts)
    entry = _cache_file(_private_cache)
    entry.write_text("".join(entry.read_text().splitlines(keepends=True)[:3]))
    again = load_probe_set(opts)
    assert len(again.docs) == len(first.docs) == 16 and again.probe_hash == first.probe_hash
    assert again.docs == first.docs


# --------------------------------------------------------------------------------------------------
# Output paths and the cache root


def test_build_out_is_a_folder(tmp_path: Path, _private_cache: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "probes"
    out.mkdir()
    assert _build(out) == 2
    err = capsys.readouterr().err
    assert f"{out}: cannot write the probes file: it is a folder" in err and "Traceback" not in err
    assert list(out.iterdir()) == [] and not _private_cache.exists()  # checked before any work


def test_build_out_under_a_file(tmp_path: Path, _private_cache: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    assert _build(blocker / "probes.jsonl") == 2
    assert f"{blocker} is not a folder" in capsys.readouterr().err
    assert blocker.read_text() == "x" and not _private_cache.exists()


def test_build_out_read_only(tmp_path: Path, capsys: pytest.CaptureFixture, read_only) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "probes.jsonl").write_text("old\n")
    with read_only(folder / "probes.jsonl"):
        assert _build(folder / "probes.jsonl") == 2
        assert "read-only" in capsys.readouterr().err
    assert (folder / "probes.jsonl").read_text() == "old\n"
    with read_only(folder):
        assert _build(folder / "new.jsonl") == 2
        assert f"{folder} is not writable" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == ["probes.jsonl"]


def test_unwritable_cache_root_is_exit_2_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("VAL_PROBING_CACHE", str(blocker / "cache"))
    out = tmp_path / "probes.jsonl"
    assert _build(out) == 2
    err = capsys.readouterr().err
    assert str(blocker / "cache" / "probes") in err and "--no-cache" in err and "Traceback" not in err
    assert not out.exists()
    assert _build(out, "--no-cache") == 0  # the way out the message names
    assert len(read_probes(out)) == 8


def test_finished_build_whose_cache_write_fails_still_writes_out(
    tmp_path: Path, _private_cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert _build(tmp_path / "first.jsonl") == 0
    entry = _cache_file(_private_cache)
    entry.unlink()
    entry.mkdir()  # the cache write will fail (a folder where the file goes)
    with caplog.at_level(logging.WARNING):
        assert _build(tmp_path / "second.jsonl") == 0
    assert (tmp_path / "second.jsonl").read_bytes() == (tmp_path / "first.jsonl").read_bytes()
    assert any(str(entry) in r.getMessage() and "not cached" in r.getMessage() for r in caplog.records)
    assert _leftovers(_private_cache) == []


# --------------------------------------------------------------------------------------------------
# Leftovers of killed runs


def test_orphan_temporary_files_are_removed_on_the_next_run(tmp_path: Path, _private_cache: Path) -> None:
    assert _build(tmp_path / "first.jsonl") == 0
    probes = _private_cache / "probes"
    dead, alive = _dead_pid(), os.getpid()
    orphan = probes / f".code-300-0123456789abcdef.jsonl.{dead}.tmp"
    orphan.write_bytes(b"x" * 1000)
    in_flight = probes / f".code-300-fedcba9876543210.jsonl.{alive}.tmp"  # a running build's file
    in_flight.write_bytes(b"y")
    out_orphan = tmp_path / f".second.jsonl.{dead}.tmp"
    out_orphan.write_bytes(b"z")
    unrelated = tmp_path / f".someone-elses.{dead}.tmp"  # not ours to remove outside the cache
    unrelated.write_bytes(b"u")
    assert _build(tmp_path / "second.jsonl") == 0  # a cache hit cleans up too
    assert not orphan.exists() and in_flight.exists()
    assert not out_orphan.exists() and unrelated.exists()


def test_remove_orphans_takes_folders_and_only_dead_pids(tmp_path: Path) -> None:
    dead = _dead_pid()
    (tmp_path / f".model.{dead}.tmp").mkdir()
    (tmp_path / f".model.{dead}.tmp" / "weights").write_bytes(b"w")
    (tmp_path / f".keep.{os.getpid()}.tmp").write_bytes(b"k")
    (tmp_path / "model.tmp").write_bytes(b"not the pattern")
    removed = remove_orphans(tmp_path)
    assert [p.name for p in removed] == [f".model.{dead}.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".keep.{os.getpid()}.tmp", "model.tmp"]


# --------------------------------------------------------------------------------------------------
# Folder manifests (the converted embedded model)


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"a": 1}')
    (folder / "sub" / "weights.bin").write_bytes(b"w" * 100)
    write_folder_manifest(folder, "model v1")
    return folder


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda f: (f / "sub" / "weights.bin").write_bytes(b"w" * 50), "size differs"),
        (lambda f: (f / "sub" / "weights.bin").write_bytes(b"x" * 100), "content differs"),
        (lambda f: (f / "config.json").unlink(), "missing config.json"),
        (lambda f: (f / FOLDER_MANIFEST).unlink(), "no val_probing_manifest.json"),
        (lambda f: (f / FOLDER_MANIFEST).write_text("{"), "unreadable"),
    ],
)
def test_folder_manifest_catches_cut_replaced_and_missing_files(tmp_path: Path, damage, reason: str) -> None:
    folder = _folder(tmp_path)
    check_folder_manifest(folder, "model v1")
    with pytest.raises(CacheInvalid, match="made for 'model v1'"):
        check_folder_manifest(folder, "model v2")
    damage(folder)
    with pytest.raises(CacheInvalid, match=reason):
        check_folder_manifest(folder, "model v1")


@pytest.mark.slow  # two conversions of the tokenizer from the GGUF file
def test_damaged_embedded_tokenizer_folder_is_converted_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from val_probing.embedded import embedded_tokenizer_dir

    folder = embedded_tokenizer_dir(tmp_path / "models")
    assert (folder / FOLDER_MANIFEST).is_file()
    good = (folder / "tokenizer.json").read_bytes()
    (folder / "tokenizer.json").write_bytes(good[: len(good) // 2])  # cut
    with caplog.at_level(logging.WARNING):
        assert embedded_tokenizer_dir(tmp_path / "models") == folder
    assert any(str(folder / "tokenizer.json") in r.getMessage() for r in caplog.records)
    assert (folder / "tokenizer.json").read_bytes() == good
    assert _leftovers(tmp_path) == []


# --------------------------------------------------------------------------------------------------
# IN2 synthesis: the QA endpoint, the corpus, the outputs


_GOOD_QA = json.dumps({"question": "What did entry {n} record?", "answer": "A storm, told in other words."})
_WORDS = [
    "harbor",
    "lighthouse",
    "keeper",
    "copper",
    "storm",
    "winter",
    "dock",
    "bell",
    "ink",
    "entry",
    "ship",
    "rope",
    "tide",
    "island",
]


def _corpus(folder: Path, n_texts: int = 4) -> Path:
    import random

    rng = random.Random(0)
    folder.mkdir(parents=True)
    for t in range(n_texts):
        paragraphs = [
            " ".join(rng.choice(_WORDS) for _ in range(30))
            + ". "
            + " ".join(rng.choice(_WORDS) for _ in range(12))
            + "."
            for _ in range(12)
        ]
        (folder / f"t{t}.txt").write_text("\n\n".join(paragraphs), encoding="utf-8")
    return folder


def _synthesize(corpus: Path, out: Path, *extra: str) -> int:
    args = ["train", "synthesize", "--texts", str(corpus), "--tokenizer", "whitespace", "--n-examples", "4"]
    sizes = [
        "--min-context",
        "200",
        "--max-context",
        "400",
        "--slack-tokens",
        "100",
        "--segment-tokens",
        "30",
    ]
    return main([*args, *sizes, "--out", str(out), *extra])


def test_qa_cache_junk_endpoint_then_a_good_one(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    corpus = _corpus(tmp_path / "corpus")
    cache = tmp_path / "qa.jsonl"
    openai = ["--generator", "openai", "--model", "m", "--attempts", "1", "--cache", str(cache)]
    with FakeOpenAI([], then="I cannot help with that.") as junk:
        code = _synthesize(corpus, tmp_path / "out", *openai, "--endpoint", junk.url)
        assert junk.requests
    assert code == 2 and not (tmp_path / "out").exists()
    capsys.readouterr()
    with FakeOpenAI([], then=_GOOD_QA) as good:
        assert _synthesize(corpus, tmp_path / "out", *openai, "--endpoint", good.url) == 0
        asked = len(good.requests)
    assert asked > 0  # the good endpoint is asked, not served the junk of the first run
    assert "wrote 4 examples" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["generation"]["rejections"] == {}
    rows = [json.loads(line) for line in cache.read_text().splitlines()]
    assert {row["rejected"] for row in rows} == {"unparsable", None}  # the junk is kept as rejections


def test_unreachable_endpoint_names_the_cache_only_when_it_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    corpus = _corpus(tmp_path / "corpus")
    cache = tmp_path / "qa.jsonl"
    openai = ["--generator", "openai", "--model", "m", "--max-retries", "0", "--cache", str(cache)]
    assert _synthesize(corpus, tmp_path / "out", *openai, "--endpoint", "http://127.0.0.1:9/v1") == 2
    err = capsys.readouterr().err
    assert "gave up after 1 tries" in err and str(cache) not in err and "Traceback" not in err
    assert not cache.exists() and not (tmp_path / "out").exists()


def test_binary_and_unread_corpus_files_are_named_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    corpus = _corpus(tmp_path / "corpus")
    (corpus / "blob.txt").write_bytes(b"\xff\xfe\x00binary\x80")
    (corpus / "notes.csv").write_text("a,b\n")
    (corpus / "README").write_text("no suffix\n")
    with caplog.at_level(logging.INFO):
        assert _synthesize(corpus, tmp_path / "out", "--generator", "local") == 0
    messages = [r.getMessage() for r in caplog.records]
    assert any(str(corpus / "blob.txt") in m and "not UTF-8" in m for m in messages)
    assert any("2 file(s) not read" in m and str(corpus / "notes.csv") in m for m in messages)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())["sources"]["corpus"]
    assert manifest["texts"] == 4 and manifest["undecodable"] == {
        "count": 1,
        "files": [str(corpus / "blob.txt")],
    }
    assert manifest["not_read"]["count"] == 2 and str(corpus / "README") in manifest["not_read"]["files"]


def test_only_binary_texts_is_exit_2_naming_them(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "blob.txt").write_bytes(b"\x80\x81\x82")
    assert _synthesize(corpus, tmp_path / "out", "--generator", "local") == 2
    err = capsys.readouterr().err
    assert "no raw texts found" in err and str(corpus / "blob.txt") in err and "Traceback" not in err


def test_synthesize_outputs_are_checked_before_the_work(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    corpus = _corpus(tmp_path / "corpus")
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    assert _synthesize(corpus, blocker, "--generator", "local") == 2  # --out is a file
    assert f"{blocker}: cannot write the dataset folder: it is a file" in capsys.readouterr().err
    assert _synthesize(corpus, blocker / "out", "--generator", "local") == 2  # under a file
    assert f"{blocker} is not a folder" in capsys.readouterr().err
    (tmp_path / "exists").mkdir()
    assert _synthesize(corpus, tmp_path / "exists", "--generator", "local") == 2
    assert "pass --overwrite" in capsys.readouterr().err
    with FakeOpenAI([], then=_GOOD_QA) as server:
        qa = ["--generator", "openai", "--model", "m", "--endpoint", server.url]
        assert _synthesize(corpus, tmp_path / "out", *qa, "--cache", str(blocker / "qa.jsonl")) == 2
        assert f"{blocker / 'qa.jsonl'}: cannot write the QA cache" in capsys.readouterr().err
        assert not server.requests
    assert blocker.read_text() == "x" and not (tmp_path / "out").exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_output_folder_the_checks_cannot_foresee_is_exit_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """/proc passes os.access (as root too) but nothing can be made in it: the output check tries, so
    every command stops before the work with exit 2 naming the path, and no traceback."""
    out = Path("/proc/val-probing-test/out")
    assert _synthesize(_corpus(tmp_path / "corpus"), out, "--generator", "local") == 2
    assert f"{out}: cannot write the dataset folder: /proc:" in capsys.readouterr().err
    for args, what in [
        (["train", "experiment", "--config", "in2_placement_smoke", "--out", str(out)], "experiment folder"),
        (["train", "run", "--config", "in2_tiny_cpu", "dataset=x", f"output_dir={out}"], "training output"),
        (["plot", str(tmp_path), "--out", str(out)], "output folder"),
    ]:
        assert main(args) == 2
        assert f"{out}: cannot write the {what}" in capsys.readouterr().err
    assert not list(Path("/proc").glob(".val-probing-check-*"))


def test_synthesize_with_an_unwritable_cache_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("VAL_PROBING_CACHE", str(blocker / "cache"))
    corpus = _corpus(tmp_path / "corpus")
    with FakeOpenAI([], then=_GOOD_QA) as server:
        qa = ["--generator", "openai", "--model", "org/m", "--endpoint", server.url]
        assert _synthesize(corpus, tmp_path / "out", *qa) == 2
        assert not server.requests
    err = capsys.readouterr().err
    assert str(blocker / "cache" / "in2-qa" / "org_m.jsonl") in err and "Traceback" not in err


def test_train_run_output_dir_is_checked_before_launch(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    overrides = [f"dataset={tmp_path / 'data'}", f"output_dir={blocker / 'run'}"]
    code = main(["train", "run", "--config", "in2_tiny_cpu", *overrides])
    assert code == 2
    err = capsys.readouterr().err
    assert f"{blocker / 'run'}: cannot write the training output folder" in err and "Traceback" not in err


# --------------------------------------------------------------------------------------------------
# Tokenizer paths


@pytest.mark.parametrize(
    ("tokenizer", "message"),
    [
        ("/nonexistent", "the path /nonexistent does not exist"),
        ("./no/such/folder", "the path no/such/folder does not exist"),
        ("~/no-such-tokenizer-folder", "does not exist"),
        ("a/b/c", "the path a/b/c does not exist"),
    ],
)
def test_tokenizer_path_that_does_not_exist(
    tokenizer: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "probes.jsonl"
    args = ["build", "--task", "code", "--length", "300", "--tokenizer", tokenizer, "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Repo id" not in err and "Traceback" not in err
    assert not out.exists()


def test_tokenizer_given_as_a_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    file = tmp_path / "tokenizer.json"
    file.write_text("{}")
    args = [
        "build",
        "--task",
        "code",
        "--length",
        "300",
        "--tokenizer",
        str(file),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(args) == 2
    assert f"{file} is a file; pass the folder" in capsys.readouterr().err


def test_embedded_tokenizer_with_an_unwritable_cache_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("VAL_PROBING_CACHE", str(blocker / "cache"))
    out = tmp_path / "probes.jsonl"
    args = ["build", "--task", "code", "--length", "300", "--tokenizer", "embedded", "--no-cache"]
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{blocker / 'cache' / 'models'}: cannot write the model cache folder" in err
    assert "VAL_PROBING_CACHE" in err and "Traceback" not in err and not out.exists()


# --------------------------------------------------------------------------------------------------
# score: its inputs (it writes nothing but stdout)


def test_score_inputs_that_are_folders_or_binary(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    probes = tmp_path / "probes.jsonl"
    assert _build(probes) == 0
    capsys.readouterr()
    base = ["score", "--task", "code", "--data", str(probes)]
    folder = tmp_path / "outputs"
    folder.mkdir()
    assert main([*base, "--outputs", str(folder)]) == 2
    assert f"{folder}: is a folder" in capsys.readouterr().err
    binary = tmp_path / "outputs.jsonl"
    binary.write_bytes(b"\x80\x81\n")
    assert main([*base, "--outputs", str(binary)]) == 2
    assert f"{binary}: not UTF-8" in capsys.readouterr().err
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps({"text": "f"}) + "\n" for _ in read_probes(probes)))
    assert main([*base, "--outputs", str(answers), "--skip-list", str(folder)]) == 2
    err = capsys.readouterr().err
    assert str(folder) in err and "Traceback" not in err


def test_folder_manifest_hashes_only_files_touched_since(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import val_probing.files.verified as verified

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"w" * 100)
    os.utime(folder / "weights.bin", ns=(1_000_000_000, 1_000_000_000))  # written long before
    write_folder_manifest(folder, "k")
    hashed: list[Path] = []
    real = verified.file_sha256
    monkeypatch.setattr(verified, "file_sha256", lambda p: hashed.append(p) or real(p))
    check_folder_manifest(folder, "k")
    assert hashed == []  # size and time as recorded: not read again
    (folder / "weights.bin").write_bytes(b"x" * 100)  # same size, new time: hashed, caught
    with pytest.raises(CacheInvalid, match="content differs"):
        check_folder_manifest(folder, "k")
    assert hashed == [folder / "weights.bin"]


# --------------------------------------------------------------------------------------------------
# Issue 25: the last tracebacks, and flags that were silently ignored

_RUN = Path(__file__).resolve().parent / "data" / "runs" / "synthetic" / "org__u-model"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_nan_thresholds_are_refused_before_the_work(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`plot --min-avg nan` once wrote its figures, then ended in a traceback."""
    for args in (["report", str(_RUN)], ["plot", str(_RUN), "--out", str(tmp_path / "figs")]):
        for flag in ("--min-avg", "--max-gap"):
            with pytest.raises(SystemExit) as exit_:
                main([*args, f"{flag}={value}"])
            assert exit_.value.code == 2
            err = capsys.readouterr().err
            assert f"argument {flag}: expected a finite number, got {value}" in err and "Traceback" not in err
    assert not (tmp_path / "figs").exists()


def test_openai_generator_without_httpx_names_the_extra(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)  # as if not installed: its import fails
    corpus = _corpus(tmp_path / "corpus")
    qa = ["--generator", "openai", "--model", "m", "--cache", str(tmp_path / "qa.jsonl")]
    assert _synthesize(corpus, tmp_path / "out", *qa) == 2
    err = capsys.readouterr().err
    assert "--generator openai needs httpx, not installed: pip install 'val-probing[train]'" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "flags",
    [["--endpoint", "http://127.0.0.1:9/v1"], ["--model", "m"], ["--structured"], ["--cache", "qa.jsonl"]],
)
def test_local_generator_refuses_the_openai_flags(
    flags: list[str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`--generator local` once ran, ignoring them: the user believed a model wrote the QA."""
    corpus = _corpus(tmp_path / "corpus")
    assert _synthesize(corpus, tmp_path / "out", "--generator", "local", *flags) == 2
    err = capsys.readouterr().err
    assert f"{flags[0]}: only read by --generator openai, not local" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------------
# The Python API given wrong types


def test_results_frame_and_summarize_name_the_argument() -> None:
    from val_probing.buckets import summarize
    from val_probing.results import load_results, results_frame

    with pytest.raises(TypeError, match=r"results: expected a sequence of TaskResult .* got NoneType"):
        results_frame(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"got the path 'runs/x': pass load_results\('runs/x'\)"):
        results_frame("runs/x")  # type: ignore[arg-type]
    (first, *_) = load_results([_RUN])
    with pytest.raises(TypeError, match="got one TaskResult: pass \\[result\\]"):
        results_frame(first)  # type: ignore[arg-type]
    samples = list(first.samples)
    as_tuples = [(s.set_id, s.position_id, s.score) for s in samples]
    with pytest.raises(
        TypeError, match=r"samples: expected an iterable of ScoredSample.* got tuple at index 0"
    ):
        summarize(as_tuples, n_buckets=2)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"samples: expected .* got dict"):
        summarize({"a": samples}, n_buckets=2)  # type: ignore[arg-type]
    assert summarize(samples, n_buckets=2).n_buckets == 2  # the right type still works


def test_plot_position_curves_takes_a_str_as_one_task_and_refuses_unknown_ones() -> None:
    from val_probing.plots import plot_depth_heatmap, plot_position_curves
    from val_probing.results import load_results

    results = load_results([_RUN])
    fig = plot_position_curves(results, tasks="document")  # once 8 empty panels: d, o, c, u, ...
    (panel,) = fig.axes
    assert panel.get_title().startswith("Document") and panel.get_lines()
    with pytest.raises(ValueError, match="tasks: unknown task 'documents'; known: document, code, database"):
        plot_position_curves(results, tasks=["documents"])
    with pytest.raises(ValueError, match="task: unknown task 'Code'"):
        plot_depth_heatmap(results, "Code")
    with pytest.raises(TypeError, match="results: expected a sequence of TaskResult"):
        plot_position_curves("runs/x")  # type: ignore[arg-type]


def test_the_cli_and_the_local_generator_work_without_the_train_extras(tmp_path: Path) -> None:
    """tenacity (the [train] extra) was imported by every `val-probing` command: without it even
    `val-probing --help` ended in a ModuleNotFoundError traceback."""
    corpus = _corpus(tmp_path / "corpus")
    script = (
        "import sys; sys.modules['tenacity'] = sys.modules['httpx'] = None\n"
        "from val_probing.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    args = ["train", "synthesize", "--texts", str(corpus), "--tokenizer", "whitespace", "--n-examples", "2"]
    args += ["--min-context", "200", "--max-context", "400", "--slack-tokens", "100"]
    env = {**os.environ, "VAL_PROBING_CACHE": str(tmp_path / "cache")}

    def cli(*more: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-c", script, *args, "--segment-tokens", "30", *more]
        return subprocess.run(command, env=env, capture_output=True, text=True)

    local = cli("--out", str(tmp_path / "out"))
    assert local.returncode == 0, local.stderr[-2000:]
    openai = cli("--generator", "openai", "--model", "m", "--out", str(tmp_path / "out2"))
    assert openai.returncode == 2 and "Traceback" not in openai.stderr
    needs = "--generator openai needs httpx, tenacity, not installed: pip install 'val-probing[train]'"
    assert needs in openai.stderr
