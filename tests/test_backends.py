"""The VAL tasks through the real ``lm_eval`` CLI on every backend users run: vllm, local-completions
against a ``vllm serve`` started here, and hf. Tiny slices (one set, a few positions, short contexts,
few new tokens) of the embedded SmolLM2-135M; marked slow (they run a real model), still run in CI.
The fast tests at the end cover the serving helpers and the demo's table.

Also checked through the real CLI: the truncation guard fires on local-completions when max_length is
smaller than the prompts; a server that is down gives a clear error after bounded retries, not a hang;
``--use_cache`` answers a re-run from the cache (proved by re-running after the server is stopped).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from val_probing.serving import (
    ServerError,
    cpu_threads_bind,
    free_port,
    serving_cache_dir,
    serving_env,
    vllm_model_args,
    vllm_server,
)

TASKS = ("val_document", "val_code", "val_database")
CONTEXT = 512
MAX_LEN = 1024  # model length for these runs: context + instruction + template + new tokens
METADATA = {
    "source": "built",
    "context_length": CONTEXT,
    "sets": 1,
    "positions": 4,
    "tokenizer": "embedded",
    "pool": "embedded",
}
RUN_TIMEOUT = 600


@dataclass(frozen=True)
class Run:
    returncode: int
    output: str
    out_dir: Path
    wall_s: float

    def check(self) -> Run:
        assert self.returncode == 0, f"lm_eval failed ({self.returncode}):\n{self.output[-6000:]}"
        return self

    def results(self) -> dict:
        files = sorted(self.out_dir.rglob("results_*.json"))
        assert files, f"no results_*.json under {self.out_dir}:\n{self.output[-3000:]}"
        return json.loads(files[-1].read_text())


@pytest.fixture(scope="module")
def model_dir() -> Path:
    from val_probing.embedded import embedded_model_dir

    return embedded_model_dir()


@pytest.fixture(scope="module")
def tasks_path() -> Path:
    from val_probing.lm_eval_tasks import TASKS_DIR

    path = Path(TASKS_DIR)
    assert any(path.glob("*.yaml")), f"no task YAML files in {path}"
    return path


def lm_eval(args: list[str], out_dir: Path, tasks_path: Path, *, metadata: dict | None = None) -> Run:
    """Run the real ``lm_eval`` CLI (a fresh interpreter, the CPU serving environment)."""
    cmd = [
        sys.executable,
        "-m",
        "lm_eval",
        *args,
        "--include_path",
        str(tasks_path),
        "--metadata",
        json.dumps(metadata or METADATA),
        "--apply_chat_template",
        "--gen_kwargs",
        "max_gen_toks=16",
        "--log_samples",
        "--output_path",
        str(out_dir),
    ]
    env = serving_env(os.environ, cache_dir=serving_cache_dir(), cpu=True) | {"OMP_NUM_THREADS": "2"}
    start = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)
    return Run(proc.returncode, proc.stdout + proc.stderr, out_dir, time.monotonic() - start)


def assert_task_results(results: dict, tasks: tuple[str, ...] = TASKS) -> None:
    """Every task reports ref_score, avg, gap and its bucket_NN means, all numbers in [0, 100]."""
    for task in tasks:
        got = results["results"][task]
        buckets = sorted(k for k in got if re.fullmatch(r"bucket_\d{2},none", k))
        assert buckets, f"{task}: no bucket_NN,none keys in {sorted(got)}"
        assert buckets[0] == "bucket_00,none"
        for key in ("ref_score,none", "avg,none", "gap,none", *buckets):
            value = got[key]
            assert isinstance(value, int | float) and not isinstance(value, bool), (task, key, value)
            assert 0.0 <= value <= 100.0, (task, key, value)
        means = [got[k] for k in buckets if not math.isnan(got[k])]
        assert got["gap,none"] == pytest.approx(max(means) - min(means), abs=1e-6)


def task_metrics(results: dict) -> dict[str, dict[str, float]]:
    return {
        task: {k: v for k, v in results["results"][task].items() if isinstance(v, int | float)}
        for task in TASKS
    }


@pytest.mark.slow
def test_vllm_backend_runs_the_group(tmp_path: Path, model_dir: Path, tasks_path: Path) -> None:
    model_args = vllm_model_args(model_dir, max_model_len=MAX_LEN, cpu=True)
    run = lm_eval(
        ["--model", "vllm", "--model_args", model_args, "--tasks", "valprobing", "--batch_size", "auto"],
        tmp_path / "out",
        tasks_path,
    ).check()
    results = run.results()
    assert_task_results(results)
    group = results["results"]["valprobing"]
    avgs = [results["results"][t]["avg,none"] for t in TASKS]
    assert group["avg,none"] == pytest.approx(sum(avgs) / len(avgs), abs=1e-6)
    samples = sorted(run.out_dir.rglob("samples_val_code_*.jsonl"))
    assert samples, "--log_samples wrote no samples for val_code"
    lines = [json.loads(line) for line in samples[-1].read_text().splitlines() if line.strip()]
    assert len(lines) == METADATA["positions"]
    for line in lines:
        assert 0.0 <= line["ref_score"] <= 1.0
        assert {"set_id", "position_id", "n_items", "bucket", "context_tokens", "key", "answer"} <= set(
            line["doc"]
        )


@pytest.mark.slow
def test_hf_backend(tmp_path: Path, model_dir: Path, tasks_path: Path) -> None:
    run = lm_eval(
        [
            "--model",
            "hf",
            "--model_args",
            f"pretrained={model_dir},dtype=float32",
            "--device",
            "cpu",
            "--batch_size",
            "4",
            "--tasks",
            ",".join(TASKS),
        ],
        tmp_path / "out",
        tasks_path,
    ).check()
    assert_task_results(run.results())


# ---------------------------------------------------------------- local-completions against vllm serve


@dataclass(frozen=True)
class ServedRuns:
    """What happened while a ``vllm serve`` was up; the server is stopped when the tests read this."""

    base_url: str
    full: Run
    guard: Run
    chat: Run
    completions_args: str
    cache_prefix: Path


def completions_args(model_dir: Path, completions_url: str, max_length: int) -> str:
    """Token ids rendered locally with the chat template (tokenized_requests=False would send the
    chat messages as JSON text to a completions endpoint)."""
    return (
        f"model={model_dir},base_url={completions_url},tokenizer={model_dir},"
        f"max_length={max_length},num_concurrent=4,max_retries=2,timeout=120"
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, model_dir: Path, tasks_path: Path) -> ServedRuns:
    tmp = tmp_path_factory.mktemp("served")
    cache_prefix = tmp / "cache" / "lm"
    with vllm_server(model_dir, log_path=tmp / "vllm-serve.log", max_model_len=MAX_LEN) as server:
        args = completions_args(model_dir, server.completions_url, MAX_LEN)
        full = lm_eval(
            [
                "--model",
                "local-completions",
                "--model_args",
                args,
                "--tasks",
                ",".join(TASKS),
                "--use_cache",
                str(cache_prefix),
            ],
            tmp / "full",
            tasks_path,
        )
        # max_length below the prompts' length: lm-eval would left-truncate them (cutting needles).
        guard = lm_eval(
            [
                "--model",
                "local-completions",
                "--model_args",
                completions_args(model_dir, server.completions_url, 256),
                "--tasks",
                "val_document",
            ],
            tmp / "guard",
            tasks_path,
        )
        # The chat endpoint: the server renders the same chat template; the guard counts through its
        # /tokenize and takes the window from /v1/models (no max_length: lm-eval sends text).
        chat = lm_eval(
            [
                "--model",
                "local-chat-completions",
                "--model_args",
                f"model={model_dir},base_url={server.chat_url},num_concurrent=4,max_retries=2,timeout=120",
                "--tasks",
                ",".join(TASKS),
            ],
            tmp / "chat",
            tasks_path,
        )
        base_url = server.base_url
    return ServedRuns(base_url, full, guard, chat, args, cache_prefix)


@pytest.mark.slow
def test_local_completions_against_vllm_serve(served: ServedRuns) -> None:
    assert_task_results(served.full.check().results())


@pytest.mark.slow
def test_local_chat_completions_scores_as_local_completions(served: ServedRuns) -> None:
    """The chat endpoint (JsonChatStr prompts, guard on) gives the completions run's numbers."""
    chat = served.chat.check().results()
    assert_task_results(chat)
    assert task_metrics(chat) == task_metrics(served.full.check().results())


@pytest.mark.slow
def test_truncation_guard_fires_on_local_completions(served: ServedRuns) -> None:
    assert served.guard.returncode != 0, "prompts longer than max_length were run (silently truncated)"
    assert "max_length" in served.guard.output, served.guard.output[-3000:]
    assert not list(served.guard.out_dir.rglob("results_*.json")), "a guarded run wrote results"


@pytest.mark.slow
def test_use_cache_resumes_without_recomputing(served: ServedRuns, tmp_path: Path, tasks_path: Path) -> None:
    """The same run with --use_cache after the server is gone: every answer comes from the cache."""
    first = served.full.check().results()
    again = lm_eval(
        [
            "--model",
            "local-completions",
            "--model_args",
            served.completions_args,
            "--tasks",
            ",".join(TASKS),
            "--use_cache",
            str(served.cache_prefix),
        ],
        tmp_path / "again",
        tasks_path,
    ).check()
    assert "Requests remaining: 0" in again.output, again.output[-3000:]
    assert task_metrics(again.results()) == task_metrics(first)


@pytest.mark.slow
def test_server_down_is_a_clear_error_not_a_hang(model_dir: Path, tmp_path: Path, tasks_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    run = lm_eval(
        [
            "--model",
            "local-completions",
            "--model_args",
            completions_args(model_dir, dead, MAX_LEN),
            "--tasks",
            "val_database",
            "--limit",
            "1",
        ],
        tmp_path / "down",
        tasks_path,
    )
    assert run.returncode != 0
    assert "connect" in run.output.lower(), run.output[-3000:]
    assert run.wall_s < 180, f"a dead server took {run.wall_s:.0f} s to report"
    assert not list(run.out_dir.rglob("results_*.json"))


# ------------------------------------------------------- fast: the serving helpers and the demo table


@pytest.mark.parametrize("cores,expected", [(1, "0"), (2, "0-1"), (16, "0-15")])
def test_threads_bind_covers_all_cores(cores: int, expected: str) -> None:
    assert cpu_threads_bind(cores) == expected


def test_serving_env_cpu_settings_and_user_values_win(tmp_path: Path) -> None:
    env = serving_env({"VLLM_CPU_KVCACHE_SPACE": "8", "PATH": "/bin"}, cache_dir=tmp_path, cpu=True)
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "8"  # the user's setting is kept
    assert env["VLLM_TARGET_DEVICE"] == "cpu"
    assert env["VLLM_CPU_OMP_THREADS_BIND"].startswith("0")
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["VLLM_CACHE_ROOT"] == str(tmp_path / "vllm") and env["HF_HOME"] == str(tmp_path / "hf")
    gpu = serving_env({}, cache_dir=tmp_path, cpu=False, offline=False)
    assert not {"VLLM_TARGET_DEVICE", "VLLM_CPU_KVCACHE_SPACE", "HF_HUB_OFFLINE"} & set(gpu)


def test_vllm_model_args() -> None:
    cpu = vllm_model_args("/m", max_model_len=3072, cpu=True)
    assert cpu.split(",") == [
        "pretrained=/m",
        "max_model_len=3072",
        "enable_prefix_caching=True",
        "dtype=float32",
        "enforce_eager=True",
    ]
    gpu = vllm_model_args(
        "org/m", max_model_len=32768, cpu=False, tensor_parallel_size=2, data_parallel_size=4
    )
    assert "dtype" not in gpu and "tensor_parallel_size=2" in gpu and "data_parallel_size=4" in gpu
    with pytest.raises(ValueError, match="model_args"):
        vllm_model_args("/a,b", max_model_len=1, cpu=True)


def _fake_server(monkeypatch: pytest.MonkeyPatch, code: str) -> None:
    monkeypatch.setattr("val_probing.serving.serve_command", lambda *a, **k: [sys.executable, "-c", code])


def test_server_that_dies_reports_its_log(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_server(monkeypatch, "print('ValueError: no model at /nowhere'); raise SystemExit(3)")
    with (
        pytest.raises(ServerError, match=r"exited with code 3(.|\n)*no model at /nowhere"),
        vllm_server("/nowhere", log_path=tmp_path / "serve.log", cpu=True),
    ):
        pytest.fail("yielded a dead server")


def test_server_not_healthy_in_time_is_stopped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    _fake_server(
        monkeypatch, f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    )
    start = time.monotonic()
    with (
        pytest.raises(ServerError, match="not healthy"),
        vllm_server("m", log_path=tmp_path / "serve.log", cpu=True, startup_timeout=3),
    ):
        pytest.fail("yielded an unhealthy server")
    assert time.monotonic() - start < 60
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_demo_summary_table(repo_root: Path) -> None:
    from val_probing.commands.demo import summary_markdown
    from val_probing.results import load_results

    results = load_results([repo_root / "tests" / "data" / "runs" / "synthetic" / "org__u-model"])
    table = summary_markdown(results, title="t", wall_s=125.0)
    rows = [line for line in table.splitlines() if line.startswith("| val_")]
    assert [row.split("|")[1].strip() for row in rows] == list(TASKS)
    n_buckets = len(results[0].summary.buckets)
    header = next(line for line in table.splitlines() if line.startswith("| task"))
    assert header.count("| b") == n_buckets
    first = results[0].summary
    assert f"| {first.avg:.1f} |" in rows[0] and f"| {first.gap:.1f} |" in rows[0]
    mean_avg = sum(r.summary.avg for r in results) / len(results)
    assert f"| all | {mean_avg:.1f} |" in table
    assert "Wall time: 2.1 min." in table


def test_demo_lm_eval_command(tmp_path: Path) -> None:
    from val_probing.commands.demo import demo_request, probe_options
    from val_probing.errors import ValProbingError
    from val_probing.evaluate import lm_eval_argv

    options = probe_options(context_length=2048, sets=2, positions=16, buckets=8, tokenizer="embedded")
    request = demo_request(model_args="pretrained=/m", options=options, out=tmp_path / "o")
    cmd = lm_eval_argv(request, include_path=tmp_path)
    assert cmd[:3] == ["run", "--include_path", str(tmp_path)]
    assert {"--apply_chat_template", "--log_samples"} <= set(cmd)
    assert cmd[cmd.index("--model") + 1] == "vllm" and cmd[cmd.index("--tasks") + 1] == "valprobing"
    sent = json.loads(cmd[cmd.index("--metadata") + 1])
    want = {**METADATA, "context_length": 2048, "sets": 2, "positions": 16, "n_buckets": 8, "seed": 0}
    assert sent == {k: v for k, v in want.items() if k != "pool"}  # the embedded pool is the default
    with pytest.raises(ValProbingError, match="empty"):
        probe_options(context_length=2048, sets=1, positions=4, buckets=8, tokenizer="embedded")
