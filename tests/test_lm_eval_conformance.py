"""The ways lm-eval users run a model, each giving the right numbers or a clear refusal (issue 20).

Chat-completions backends against a local fake of ``vllm serve`` (``/v1/models``, ``/tokenize``,
``/v1/chat/completions`` answering like an oracle from the prompt), the request cache across probe
builds, ``--num_fewshot``, fractional ``--limit``, truncation settings, the served window and the
versions every task records. The real ``vllm serve`` chat endpoint is in tests/test_backends.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("lm_eval")

from lm_eval.models.api_models import JsonChatStr

from test_lm_eval_tasks import _results, _samples, _task
from val_probing.adapter.guard import ModelLimit, PromptTooLong, check_prompts_fit
from val_probing.adapter.options import TaskSetupError
from val_probing.adapter.served import Server, served_window, server_counts
from val_probing.environment import package_versions
from val_probing.lm_eval_adapter import ValTask
from val_probing.lm_eval_tasks import TASKS_DIR
from val_probing.probes import get_family

PY = sys.executable
SLICE = {"tokenizer": "embedded", "context_length": 500, "sets": 2, "positions": 8, "n_buckets": 4}
FAMILY_OF = {"sentence contains": "document", "code snip": "code", "label and description": "database"}


class FakeVLLM:
    """A local stand-in for ``vllm serve``: ``GET /v1/models`` (with ``max_model_len``), ``POST
    /tokenize`` (the SmolLM2 chat template, plus ``extra_tokens``: a server whose template is longer
    than the local one) and ``POST /v1/chat/completions`` answering each probe from its prompt alone."""

    def __init__(self, max_model_len: int = 8192, extra_tokens: int = 0, tokenize: bool = True) -> None:
        from val_probing.adapter.guard import hf_tokenizer

        self.tokenizer = hf_tokenizer("embedded")
        self.max_model_len = max_model_len
        self.extra_tokens = extra_tokens
        self.tokenize = tokenize
        self.paths: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                owner.paths.append(self.path)
                if self.path == "/v1/models":
                    self._send(200, {"data": [{"id": "fake", "max_model_len": owner.max_model_len}]})
                else:
                    self._send(404, {"error": "no such route"})

            def do_POST(self) -> None:
                owner.paths.append(self.path)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/tokenize" and owner.tokenize:
                    text = owner.tokenizer.apply_chat_template(
                        body["messages"], tokenize=False, add_generation_prompt=True
                    )
                    count = len(owner.tokenizer(text)["input_ids"]) + owner.extra_tokens
                    self._send(200, {"count": count, "max_model_len": owner.max_model_len})
                elif self.path == "/v1/chat/completions":
                    context, instruction = body["messages"][-1]["content"].rsplit("\n\n", 1)
                    family = next(f for marker, f in FAMILY_OF.items() if marker in instruction)
                    answer = get_family(family).oracle(context, instruction)
                    choice = {"index": 0, "message": {"role": "assistant", "content": answer}}
                    self._send(200, {"choices": [choice]})
                else:
                    self._send(404, {"error": "no such route"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.root = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeVLLM:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake() -> Iterator[FakeVLLM]:
    with FakeVLLM() as server:
        yield server


def _env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        **extra,
    }


def _run(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env or _env(), check=False)


def _lm_eval(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return _run([PY, "-m", "lm_eval", "--include_path", TASKS_DIR, *args], env)


LM_EVAL_CLI = str(Path(PY).with_name("lm_eval"))  # the console script users run


def _chat(prompt: str) -> JsonChatStr:
    return JsonChatStr(json.dumps([{"role": "user", "content": prompt}]))


# ------------------------------------------------------------------------------ chat backends


def test_local_chat_completions_runs_with_the_guard_on(fake: FakeVLLM, tmp_path: Path) -> None:
    """The chat backend hands the task JsonChatStr prompts: counted (by the server), run, scored."""
    url = f"{fake.root}/v1/chat/completions"
    proc = _lm_eval(
        "--model",
        "local-chat-completions",
        "--model_args",
        f"model=fake,base_url={url},num_concurrent=1,max_retries=1",
        "--apply_chat_template",
        "--tasks",
        "val_code",
        "--metadata",
        json.dumps(SLICE),
        "--log_samples",
        "--output_path",
        str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr
    assert "/v1/models" in fake.paths and "/tokenize" in fake.paths  # asked before generating
    path, data = _results(tmp_path)
    res = data["results"]["val_code"]
    assert res["ref_score,none"] == 1.0 and res["avg,none"] == 100.0
    assert {f"bucket_{b:02d},none" for b in range(4)} <= set(res)
    assert len(_samples(path, "val_code")) == 16


def test_chat_prompts_are_counted_on_the_rendered_chat(smollm2_tokenizer_dir: Path) -> None:
    """JsonChatStr (a NamedTuple, not a str) and message lists are rendered with the chat template."""
    from val_probing.adapter.guard import backend_text, chat_messages, hf_tokenizer

    tok = hf_tokenizer("embedded")
    text = "word " * 200
    messages = [{"role": "user", "content": text}]
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert chat_messages(_chat(text)) == messages
    assert chat_messages(messages) == messages
    assert chat_messages(text) is None
    assert backend_text(tok, _chat(text)) == backend_text(tok, messages) == rendered
    n = len(tok(rendered)["input_ids"])
    assert check_prompts_fit("t", [_chat(text)], tok, ModelLimit(n + 128, "x"), 128) == n
    with pytest.raises(PromptTooLong, match=rf"the longest prompt has {n} tokens"):
        check_prompts_fit("t", [_chat(text)], tok, ModelLimit(n + 127, "x"), 128)


def test_the_servers_count_decides_for_chat_prompts() -> None:
    """A server whose template adds 300 tokens: the local count fits, the server's does not."""
    from val_probing.adapter.guard import hf_tokenizer

    tok = hf_tokenizer("embedded")
    prompts = [_chat("word " * 200), _chat("word " * 100)]
    with FakeVLLM(extra_tokens=300) as fake:
        server = Server(fake.root, "fake", chat=True)
        counts = server_counts(server, [json.loads(p.prompt) for p in prompts])
        assert counts is not None and counts[0] > counts[1] > 300
        local = check_prompts_fit("t", prompts, tok, ModelLimit(4096, "x"), 128)
        assert local == counts[0] - 300
        with pytest.raises(PromptTooLong, match=rf"has {counts[0]} tokens.*limit is {local + 200}"):
            check_prompts_fit("t", prompts, tok, ModelLimit(local + 200, "x"), 128, server=server)
    with FakeVLLM(extra_tokens=300, tokenize=False) as fake:  # no /tokenize: the local template
        server = Server(fake.root, "fake", chat=True)
        assert server_counts(server, [[{"role": "user", "content": "x"}]]) is None
        assert check_prompts_fit("t", prompts, tok, ModelLimit(local + 200, "x"), 128, server=server) == local


# ------------------------------------------------------------------------------ served window


def test_served_window_refuses_what_the_server_cannot_take() -> None:
    """A server started with a smaller --max-model-len than asked for: refused before generation."""
    with FakeVLLM(max_model_len=450) as fake:
        server = Server.of({"base_url": f"{fake.root}/v1/completions", "model": "fake"})
        assert server is not None and served_window(server) == 450
        meta = SLICE | {"base_url": f"{fake.root}/v1/completions", "model": "fake", "max_length": 4096}
        with pytest.raises(PromptTooLong, match=r"not below the model's limit 450 \(the server's max_model"):
            _task("code", meta)
    with FakeVLLM(max_model_len=600) as fake:  # the window fits the context, not context + 128 new tokens
        task = _task("code", SLICE | {"base_url": f"{fake.root}/v1/chat/completions", "model": "fake"})
        assert task.limit == ModelLimit(600, f"the server's max_model_len at {fake.root}/v1/models")
        with pytest.raises(PromptTooLong, match=r"limit is 600 \(the server's max_model_len"):
            task.build_all_requests(limit=4)


def test_no_server_or_no_window_keeps_the_model_args_limit() -> None:
    assert Server.of({"pretrained": "x"}) is None
    dead = Server("http://127.0.0.1:9", None, chat=False)  # nothing listens on the discard port
    assert served_window(dead) is None and server_counts(dead, ["x"]) is None


# ------------------------------------------------------------------------------ truncation


def test_a_prompt_that_would_be_truncated_names_the_truncation_side() -> None:
    task = _task("code", SLICE | {"max_length": 600, "truncation_side": "middle"})
    with pytest.raises(PromptTooLong, match=r"limit is 600 .*truncation_side=middle: the needles with it"):
        task.build_all_requests(limit=4)


# ------------------------------------------------------------------------------ request cache


def test_cache_requests_never_hands_back_another_builds_prompts(tmp_path: Path) -> None:
    """Two context lengths with --cache_requests true: the second run gets its own prompts."""
    env = _env(LM_HARNESS_CACHE_PATH=str(tmp_path / "cache"))
    outs = {}
    for length in (500, 600):
        out = tmp_path / f"out{length}"
        meta = json.dumps(SLICE | {"context_length": length})
        args = ["--model", "dummy", "--tasks", "val_code", "--metadata", meta, "--cache_requests", "true"]
        proc = _lm_eval(*args, "--log_samples", "--output_path", str(out), env=env)
        assert proc.returncode == 0, proc.stderr[-4000:]
        outs[length] = out
    assert len(list((tmp_path / "cache").iterdir())) == 2  # one request-cache entry per probe build
    for length, out in outs.items():
        path, data = _results(out)
        assert data["configs"]["val_code"]["metadata"]["context_length"] == [length]
        for sample in _samples(path, "val_code"):
            assert sample["doc"]["context_length"] == length
            assert sample["doc"]["instruction"] in sample["arguments"]["gen_args_0"]["arg_0"]
            assert sample["doc"]["context_tokens"] <= length


def test_cached_requests_are_verified_on_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache entry under the same key but of other probes (a key collision, an old entry) is refused."""
    import lm_eval.caching.cache as cache

    monkeypatch.setattr(cache, "PATH", str(tmp_path))
    first = _task("code", SLICE)
    first.build_all_requests(cache_requests=True)
    other = _task("code", SLICE | {"seed": 1})
    assert other.request_fingerprint != first.request_fingerprint
    monkeypatch.setattr(ValTask, "request_fingerprint", first.request_fingerprint)
    with pytest.raises(TaskSetupError, match=r"holds prompts of other probes .*--cache_requests refresh"):
        other.build_all_requests(cache_requests=True)
    other.build_all_requests(cache_requests=True, rewrite_requests_cache=True)  # the remedy works
    other.build_all_requests(cache_requests=True)


# ------------------------------------------------------------------------------ few-shot, limit


def test_num_fewshot_is_refused_and_zero_is_fine(tmp_path: Path) -> None:
    task = _task("code", SLICE)
    task.set_config("num_fewshot", 0)
    with pytest.raises(TaskSetupError, match="--num_fewshot 1: VAL probing is zero-shot"):
        task.set_config("num_fewshot", 1)
    args = ["--model", "dummy", "--tasks", "val_code", "--metadata", json.dumps(SLICE), "--num_fewshot", "1"]
    proc = _run([PY, "-m", "val_probing.cli", "eval", *args, "--output_path", str(tmp_path)])
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "VAL probing is zero-shot" in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.rglob("results_*.json"))


def test_fractional_limit_gives_the_fields_of_the_same_count(tmp_path: Path) -> None:
    results = {}
    for limit in ("0.5", "8"):
        out = tmp_path / limit
        meta = json.dumps(SLICE)
        args = ["--model", "dummy", "--tasks", "val_code", "--metadata", meta, "--limit", limit]
        proc = _lm_eval(*args, "--output_path", str(out))
        assert proc.returncode == 0, proc.stderr[-4000:]
        results[limit] = _results(out)[1]["results"]["val_code"]
    assert results["0.5"]["sample_len"] == results["8"]["sample_len"] == 8
    assert {k: v for k, v in results["0.5"].items() if k != "alias"} == {
        k: v for k, v in results["8"].items() if k != "alias"
    }
    assert all(results["0.5"][f"bucket_{b:02d},none"] is not None for b in range(4))


# ------------------------------------------------------------------------------ versions (issue 19)


def test_every_task_records_the_package_versions_without_changing_its_probes() -> None:
    task = _task("code", SLICE)
    task.download()
    meta = task.config.metadata
    assert meta["versions"] == package_versions() and meta["versions"]["lm-eval"]
    again = _task("code", SLICE | {"versions": {"lm-eval": "0.0.0"}})  # read back from a results file
    assert again.probes.probe_hash == task.probes.probe_hash
    assert again.request_fingerprint == task.request_fingerprint


# ------------------------------------------------------------------------------ errors inside lm_eval


def test_a_val_error_inside_the_lm_eval_cli_is_one_line_and_exit_2() -> None:
    """The README's dummy-model case without a tokenizer: lm-eval's traceback was all users saw."""
    proc = _run([LM_EVAL_CLI, "--model", "dummy", "--tasks", "val_code", "--limit", "2"])
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if "error" in ln.lower()]
    assert line.startswith("lm_eval: error: VAL tasks with source=built size their contexts")
    assert "VAL_PROBING_TRACEBACK=1" in line


def test_the_exit_hook_finds_our_error_in_a_chain_and_leaves_others_alone() -> None:
    from val_probing.adapter import exit_hook

    try:
        try:
            raise TaskSetupError("ours")
        except TaskSetupError as err:
            raise RuntimeError("lm-eval's wrapper") from err
    except RuntimeError as outer:
        found = exit_hook._ours(outer)
    assert isinstance(found, TaskSetupError) and str(found) == "ours"
    assert exit_hook._ours(ValueError("theirs")) is None
    before = sys.excepthook
    exit_hook.install()  # pytest is not the lm_eval command: nothing is installed
    assert sys.excepthook is before


# ------------------------------------------------------------------------------ lm-eval's task checks


@pytest.fixture(scope="module")
def loaded_tasks() -> dict[str, Any]:
    """The three tasks as lm-eval loads them by name (its TaskManager, the registered stubs)."""
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_defaults=True, metadata=dict(SLICE))
    tasks: dict[str, Any] = manager.load(["val_document", "val_code", "val_database"])["tasks"]
    return tasks


@pytest.mark.parametrize("name", ["val_document", "val_code", "val_database"])
def test_what_lm_evals_test_tasks_checks(loaded_tasks: dict[str, Any], name: str) -> None:
    """lm-eval's tests/test_tasks.py, on our tasks: docs, doc_to_text, doc_to_target, requests, metrics."""
    task = loaded_tasks[name]
    assert task.has_test_docs() and not task.has_training_docs() and not task.has_validation_docs()
    docs = list(task.test_docs())
    assert len(docs) == 16
    for doc in docs[:4]:
        text, target = task.doc_to_text(doc), task.doc_to_target(doc)
        assert isinstance(text, str) and text and text == text.rstrip()  # target_delimiter "" follows
        assert isinstance(target, str) and target == doc["answer"]
        assert doc["instruction"] in text
    task.build_all_requests(limit=4)
    assert len(task.instances) == 4
    for inst in task.instances:
        assert inst.request_type == "generate_until"
        assert inst.arguments[1]["max_gen_toks"] == 128 and inst.arguments[1]["do_sample"] is False
    metric_names = {m["metric"] for m in task.config.metric_list}
    scored = task.process_results(docs[0], [task.doc_to_target(docs[0])])
    assert set(scored) == metric_names and scored["ref_score"] == 1.0
    assert set(task.aggregation()) == metric_names == set(task.higher_is_better())


def test_lm_eval_validate_finds_every_task() -> None:
    """``lm_eval validate`` (lm-eval 0.4.13 checks names only; it takes no glob: ``'val_*'`` is "not found"
    for every task family, lm-eval's own included)."""
    proc = _run([LM_EVAL_CLI, "validate", "--tasks", "val_document,val_code,val_database,valprobing"])
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "All tasks found and valid" in proc.stdout


# ------------------------------------------------------------------------------ reasoning models


def test_reasoning_models_score_only_the_final_answer(caplog: pytest.LogCaptureFixture) -> None:
    """An answer that never left the trace scores 0 (echoing the needle while thinking is no answer)
    and is counted in the run and in its bucket; the 128-token budget with thinking on is warned."""
    plain = _task("document", SLICE)
    task = _task("document", SLICE | {"think_end_token": "</think>", "enable_thinking": True})
    docs = list(task.test_docs())
    doc = next(d for d in docs if d["bucket"] == 2)
    gold = doc["answer"]
    cut = f"<think>The context says {gold} and then"  # the budget ran out inside the trace
    assert plain.process_results(doc, [cut])["ref_score"] > 0.5  # what scoring the trace gave
    unfinished = task.process_results(doc, [cut])
    assert unfinished["ref_score"] == 0.0 and unfinished["unfinished"] == 1
    assert unfinished["unfinished_02"] == 1 and unfinished["unfinished_00"] == 0
    for response in (gold, f"<think>hmm</think>\n{gold}"):  # stripped by lm-eval, or not (completions)
        finished = task.process_results(doc, [response])
        assert finished["ref_score"] == 1.0 and finished["unfinished"] == 0
    names = {m["metric"] for m in task.config.metric_list}
    assert {"unfinished", "unfinished_00", "unfinished_03"} <= names
    assert not any(m["metric"].startswith("unfinished") for m in plain.config.metric_list)
    counts = [task.process_results(d, [cut])["unfinished_02"] for d in docs]
    assert task.aggregation()["unfinished_02"](counts) == sum(d["bucket"] == 2 for d in docs) == 4
    with caplog.at_level("WARNING"):
        task.build_all_requests(limit=2)
    assert "max_gen_toks=128" in caplog.text and "--gen_kwargs max_gen_toks=" in caplog.text
