"""Evaluation runs (``val_probing.evaluate``): the one ``--metadata`` writer read back by its reader,
the exact lm-eval argv of a request, the include-path rule, and the runner: a child's log, its
failure and its timeout, and lm-eval itself run in this process and in a child."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import pytest

from val_probing.adapter.options import TaskSetupError, ValOptions
from val_probing.buckets import fitting_buckets
from val_probing.evaluate import (
    EvalArgumentError,
    EvalFailed,
    EvalRequest,
    EvalTimeout,
    evaluate,
    find_tasks,
    forwarded_argv,
    lm_eval_argv,
    run_child,
    run_lm_eval,
)
from val_probing.probes import get_family
from val_probing.records import FAMILIES

# ------------------------------------------------------------------ ValOptions.to_metadata

ROUND_TRIPS: dict[str, dict[str, object]] = {
    "defaults": {"tokenizer": "embedded"},
    "one length": {"tokenizer": "t", "context_lengths": (2048,)},
    "several lengths": {"tokenizer": "t", "context_lengths": (1024, 4096, 8192)},
    "the experiment's": {
        "tokenizer": "/models/base",
        "context_lengths": (1024,),
        "sets": 4,
        "positions": 32,
        "n_buckets": 8,
        "n_buckets_explicit": True,
        "pool": "embedded",
        "seed": 0,
        "template": "film",
    },
    "pool path, seed": {"tokenizer": "t", "pool": "/data/pool.jsonl", "seed": 7, "sets": 2},
    "film pool, positions": {"tokenizer": "t", "pool": "film", "positions": 12, "n_buckets": 12},
    "explicit default buckets": {"tokenizer": "t", "n_buckets": 16, "n_buckets_explicit": True},
    "checks off, closed book": {"tokenizer": "t", "check_length": False, "closed_book": True},
    "official": {"source": "official"},
    "official, local data": {
        "source": "official",
        "data": Path("/data/ValProbing-32K"),
        "skip_ambiguous": False,
        "template": "film",
        "tokenizer": "mistralai/Mistral-7B-Instruct-v0.2",
    },
    "official, buckets": {"source": "official", "n_buckets": 8, "n_buckets_explicit": True},
}


def _options(family: str, fields: dict[str, object]) -> ValOptions:
    """Options as the reader makes them: an n_buckets not given is the family's fitting default."""
    opts = ValOptions(family, **fields)  # type: ignore[arg-type]
    if opts.n_buckets_explicit:
        return opts
    derived = fitting_buckets(get_family(opts.family).DEFAULT_BUCKETS, None, opts.positions)
    return dataclasses.replace(opts, n_buckets=derived)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("fields", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_to_metadata_is_read_back_as_the_same_options(family: str, fields: dict[str, object]) -> None:
    opts = _options(family, fields)
    meta = opts.to_metadata()
    assert ValOptions.from_metadata(opts.family, meta) == opts
    assert ValOptions.from_metadata(opts.family, json.loads(json.dumps(meta))) == opts  # as sent


@pytest.mark.parametrize("family", FAMILIES)
def test_options_read_from_metadata_write_it_back(family: str) -> None:
    given = {"tokenizer": "t", "max_seq_lengths": [512, 1024], "positions": 8, "template": "film"}
    opts = ValOptions.from_metadata(family, given)  # type: ignore[arg-type]
    assert ValOptions.from_metadata(opts.family, opts.to_metadata()) == opts


def test_to_metadata_writes_only_what_differs_from_the_readers_defaults() -> None:
    assert ValOptions("code", tokenizer="t").to_metadata() == {"source": "built", "tokenizer": "t", "seed": 0}
    assert ValOptions("code", source="official").to_metadata() == {"source": "official"}
    several = ValOptions("code", tokenizer="t", context_lengths=(1024, 2048), positions=32)
    assert several.to_metadata() == {
        "source": "built",
        "context_length": [1024, 2048],
        "tokenizer": "t",
        "positions": 32,
        "seed": 0,  # always: a `seed` in --model_args would otherwise become the pool seed
    }  # no n_buckets: code's 16 divides 32, and each task derives its own


def test_a_bucket_count_that_is_not_the_default_is_written() -> None:
    # ValOptions' own default (16) is not database's (15): the count the options hold is kept
    opts = ValOptions("database", tokenizer="t")
    assert opts.to_metadata()["n_buckets"] == 16
    assert ValOptions.from_metadata("database", opts.to_metadata()).n_buckets == 16


def test_to_metadata_refuses_settings_the_reader_would_refuse() -> None:
    with pytest.raises(TaskSetupError, match=r"sets: not a setting of source=official"):
        ValOptions("code", source="official", sets=2).to_metadata()
    with pytest.raises(TaskSetupError, match=r"data: not a setting of source=built"):
        ValOptions("code", tokenizer="t", data=Path("/d")).to_metadata()


# ------------------------------------------------------------------ the argv of a request


def test_argv_for_vllm_with_the_chat_template() -> None:
    opts = ValOptions("document", tokenizer="embedded", context_lengths=(2048,), sets=2, positions=16)
    request = EvalRequest(
        model="vllm",
        model_args="pretrained=/m,max_model_len=3072",
        tasks=("valprobing",),
        metadata=opts,
        output_path=Path("/out"),
        batch_size="auto",
        log_samples=True,
        apply_chat_template=True,
    )
    meta = json.dumps(opts.to_metadata())
    assert lm_eval_argv(request, include_path=None) == [
        "run",
        "--model", "vllm",
        "--model_args", "pretrained=/m,max_model_len=3072",
        "--tasks", "valprobing",
        "--metadata", meta,
        "--apply_chat_template",
        "--batch_size", "auto",
        "--log_samples",
        "--output_path", "/out",
    ]  # fmt: skip


def test_argv_for_hf_on_cpu_as_the_experiment_runs_it() -> None:
    metadata = {"source": "built", "context_length": 1024, "sets": 4, "positions": 32, "n_buckets": 8}
    request = EvalRequest(
        model="hf",
        model_args={"pretrained": "/runs/x/final", "dtype": "float32"},
        tasks=tuple(f"val_{f}" for f in FAMILIES),
        metadata=metadata,
        output_path=Path("/runs/x/lm_eval"),
        batch_size="4",
        log_samples=True,
        gen_kwargs={"max_gen_toks": 64},
        device="cpu",
    )
    assert lm_eval_argv(request, include_path="/tasks") == [
        "run",
        "--include_path", "/tasks",
        "--model", "hf",
        "--model_args", "pretrained=/runs/x/final,dtype=float32",
        "--tasks", "val_document,val_code,val_database",
        "--metadata", json.dumps(metadata),
        "--gen_kwargs", "max_gen_toks=64",
        "--batch_size", "4",
        "--device", "cpu",
        "--log_samples",
        "--output_path", "/runs/x/lm_eval",
    ]  # fmt: skip


def test_argv_for_a_served_model_with_its_window_and_a_limit() -> None:
    request = EvalRequest(
        model="local-completions",
        model_args="model=m,base_url=http://127.0.0.1:8000/v1/completions,max_length=4096",
        tasks="val_*",
        limit=8,
        extra_args=("--predict_only",),
    )
    assert lm_eval_argv(request, include_path=None) == [
        "run",
        "--model", "local-completions",
        "--model_args", "model=m,base_url=http://127.0.0.1:8000/v1/completions,max_length=4096",
        "--tasks", "val_*",
        "--limit", "8",
        "--predict_only",
    ]  # fmt: skip


def test_argv_chat_template_off_and_no_metadata() -> None:
    argv = lm_eval_argv(EvalRequest(model="hf", tasks=("val_code",)), include_path=None)
    assert argv == ["run", "--model", "hf", "--tasks", "val_code"]


def test_request_arguments_are_checked() -> None:
    with pytest.raises(EvalArgumentError, match="tasks"):
        EvalRequest(model="hf", tasks=())
    with pytest.raises(EvalArgumentError, match="limit"):
        EvalRequest(model="hf", tasks="val_code", limit=0)
    bad = EvalRequest(model="hf", tasks="val_code", model_args={"pretrained": "a,b"})
    with pytest.raises(EvalArgumentError, match=r"model_args pretrained: .*cannot hold"):
        lm_eval_argv(bad, include_path=None)
    own = EvalRequest(model="hf", tasks="val_code", extra_args=("--include_path", "mine"))
    with pytest.raises(EvalArgumentError, match="adds --include_path itself"):
        lm_eval_argv(own, include_path="/tasks")
    assert lm_eval_argv(own, include_path=None)[-2:] == ["--include_path", "mine"]


def test_forwarded_argv_adds_the_include_path_only_when_given() -> None:
    assert forwarded_argv(["--model", "hf"], include_path="/t") == [
        "run",
        "--include_path",
        "/t",
        "--model",
        "hf",
    ]
    assert forwarded_argv(["--model", "hf"], include_path=None) == ["run", "--model", "hf"]
    assert forwarded_argv(["ls", "tasks"], include_path=None) == ["ls", "tasks"]


def test_the_include_path_follows_the_registration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import val_probing.registration as registration
    from val_probing.lm_eval_tasks import TASKS_DIR

    monkeypatch.setattr(registration, "lm_eval_tasks_folder", lambda: tmp_path)
    monkeypatch.setattr(registration, "registration_problem", lambda folder: None)
    assert find_tasks() == (None, None)
    monkeypatch.setattr(registration, "registration_problem", lambda folder: "not registered")
    assert find_tasks() == (TASKS_DIR, "not registered")


# ------------------------------------------------------------------ the runner


def _script(tmp_path: Path, body: str) -> list[str]:
    script = tmp_path / "child.py"
    script.write_text(body)
    return [sys.executable, str(script)]


def test_a_child_writes_everything_to_its_log_and_each_line_to_the_callback(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    body = (
        "import os, sys\nprint('one')\nprint('two\\rtwo done')\nprint(os.environ['VAL_X'], file=sys.stderr)\n"
    )
    seen: list[str] = []
    log = tmp_path / "eval.log"
    run_child(_script(tmp_path, body), log_path=log, env={"VAL_X": "added"}, on_line=seen.append)
    assert seen == ["one", "two", "two done", "added"]
    assert log.read_bytes() == b"one\ntwo\rtwo done\nadded\n"
    out = capfd.readouterr()
    assert out.out == "" and out.err == ""
    run_child(_script(tmp_path, "print('echoed')"), log_path=log, echo=True)
    assert "echoed" in capfd.readouterr().out


def test_a_failed_child_names_its_exit_code_and_its_log(tmp_path: Path) -> None:
    body = (
        "import sys\nfor i in range(100):\n    print(f'step {i}')\n"
        "print('ValueError: bad', file=sys.stderr)\nsys.exit(3)\n"
    )
    log = tmp_path / "eval.log"
    with pytest.raises(EvalFailed) as failed:
        run_child(_script(tmp_path, body), log_path=log)
    err = failed.value
    assert err.code == 3 and err.log_path == log
    message = str(err)
    assert message.startswith(f"lm_eval failed (exit code 3); the last lines of {log}:")
    assert "ValueError: bad" in message and "step 99" in message and "step 10\n" not in message
    assert "step 10\n" in log.read_text()


def test_a_child_past_its_timeout_is_stopped_with_what_it_started(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    body = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "print('started', flush=True)\ntime.sleep(60)\n"
    )
    log = tmp_path / "eval.log"
    start = time.monotonic()
    with pytest.raises(
        EvalTimeout, match=rf"ran past 2 s and was stopped; the last lines of {log}:\n  started"
    ):
        run_child(_script(tmp_path, body), log_path=log, timeout_s=2)
    assert time.monotonic() - start < 30
    pid = int(pid_file.read_text())
    for _ in range(50):  # the grandchild was killed with its group; give init a moment to reap it
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the grandchild {pid} outlived the timeout")


def test_an_in_process_run_takes_no_timeout() -> None:
    with pytest.raises(ValueError, match="cannot be stopped"):
        run_lm_eval(["run", "--help"], in_process=True, timeout_s=5)
    with pytest.raises(ValueError, match="only captured into a log_path"):
        run_lm_eval(["run", "--help"], in_process=True, on_line=print)


# ------------------------------------------------------------------ lm-eval itself

SLICE = ValOptions(
    "code",
    tokenizer="embedded",
    context_lengths=(300,),
    sets=2,
    positions=4,
    n_buckets=2,
    n_buckets_explicit=True,
)


def _request(out: Path, **fields: object) -> EvalRequest:
    return EvalRequest(
        model="dummy",
        tasks=("val_code",),
        metadata=SLICE,
        output_path=out,
        log_samples=True,
        **fields,  # type: ignore[arg-type]
    )


def test_an_in_process_run_writes_its_output_to_the_log_and_returns_its_results(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("lm_eval")
    monkeypatch.delenv("VAL_EVAL_TEST", raising=False)
    lines: list[str] = []
    log = tmp_path / "eval.log"
    run = evaluate(
        _request(tmp_path / "out"),
        log_path=log,
        in_process=True,
        env={"VAL_EVAL_TEST": "1", "HF_HUB_OFFLINE": "1"},
        on_line=lines.append,
    )
    assert "VAL_EVAL_TEST" not in os.environ  # the additions are gone again
    assert run.command[0] == "lm_eval" and run.argv[0] == "run" and run.log_path == log
    (results,) = run.results
    data = json.loads(results.read_text())
    assert "avg,none" in data["results"]["val_code"]
    assert list(results.parent.glob("samples_val_code_*.jsonl"))
    written = log.read_text()
    assert "Selected Tasks" in written and "val_code" in written  # lm-eval's log lines and its table
    assert any("Selected Tasks" in line for line in lines)
    printed = capfd.readouterr()
    assert "Selected Tasks" not in printed.out + printed.err
    import logging

    logging.getLogger("lm_eval").info("after the run")  # lm-eval's handler is back on stderr
    assert "after the run" not in log.read_text()


def test_an_in_process_val_error_is_one_line_with_the_log(tmp_path: Path) -> None:
    pytest.importorskip("lm_eval")
    request = EvalRequest(
        model="dummy", tasks=("val_code",), metadata={"tokenizer": "embedded", "context_lenght": 300}
    )
    log = tmp_path / "eval.log"
    with pytest.raises(EvalFailed) as failed:
        evaluate(request, log_path=log, in_process=True, env={"HF_HUB_OFFLINE": "1"})
    err = failed.value
    assert err.code == 2 and err.reason is not None and "context_lenght" in err.reason
    assert str(err).startswith(f"lm_eval failed (exit code 2; log: {log}): unknown VAL metadata option")
    assert "unknown VAL metadata option 'context_lenght'" in log.read_text()


def test_a_child_lm_eval_run_fails_with_its_exit_code_and_the_val_error(tmp_path: Path) -> None:
    pytest.importorskip("lm_eval")
    request = EvalRequest(
        model="dummy", tasks=("val_code",), metadata={"tokenizer": "embedded", "context_lenght": 300}
    )
    log = tmp_path / "eval.log"
    with pytest.raises(EvalFailed) as failed:
        evaluate(request, log_path=log, env={"HF_HUB_OFFLINE": "1"}, timeout_s=300)
    assert failed.value.code == 2 and failed.value.log_path == log
    assert "lm_eval: error: unknown VAL metadata option 'context_lenght'" in str(failed.value)
