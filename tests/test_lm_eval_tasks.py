"""The VAL lm-eval tasks, run through the real ``lm_eval`` CLI (subprocesses) and through their hooks.

The end-to-end runs use a tiny slice (contexts of ~500 SmolLM2 tokens, 2 sets, 8 positions, 4
buckets). One run uses a scripted "depth-limited oracle" model registered in lm-eval: it answers
from the prompt alone, and only when the needle is among the first half of the items, so the right
position curve (buckets 0-1 perfect, 2-3 zero) proves that positions travel through lm-eval intact.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("lm_eval")

from val_probing.adapter.aggregation import (
    aggregate_avg,
    aggregate_bucket,
    aggregate_gap,
    metric_list,
    process_results,
)
from val_probing.adapter.docs import render_prompt
from val_probing.adapter.guard import ModelLimit, PromptTooLong, check_prompts_fit, model_limit
from val_probing.adapter.options import TaskSetupError, ValOptions
from val_probing.adapter.order import order_examples, spread_order
from val_probing.buckets import ScoredSample, summarize
from val_probing.evaluate import EvalArgumentError, forwarded_argv
from val_probing.lm_eval_tasks import TASKS_DIR
from val_probing.records import Family, ProbeExample

PY = sys.executable
SLICE = {"tokenizer": "embedded", "context_length": 500, "sets": 2, "positions": 8, "n_buckets": 4}
FAMILIES = ("document", "code", "database")

ORACLE_SCRIPT = '''
import sys
from lm_eval.__main__ import cli_evaluate
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from val_probing.probes import get_family

FAMILY_OF = {"sentence contains": "document", "code snip": "code", "label and description": "database"}


@register_model("val_depth_oracle")
class DepthOracle(LM):
    """Answers from the prompt alone when the needle is in the first half of the items, else nothing."""

    def __init__(self, **kwargs):
        super().__init__()

    def generate_until(self, requests):
        out = []
        for req in requests:
            context, instruction = req.args[0].rsplit("\\n\\n", 1)
            family = next(f for marker, f in FAMILY_OF.items() if marker in instruction)
            shallow = 2 * req.doc["position_id"] < req.doc["n_items"]
            out.append(get_family(family).oracle(context, instruction) if shallow else "")
        return out

    def loglikelihood(self, requests):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests):
        raise NotImplementedError


sys.argv = ["lm_eval", *sys.argv[1:]]
cli_evaluate()
'''


def _env() -> dict[str, str]:
    # Hub-offline: lm-eval's dummy model looks up a hub tokenizer, 45 s of retries without a network.
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }


def _run(args: list[str], timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=_env(), check=False)


def _results(out: Path) -> tuple[Path, dict[str, Any]]:
    (path,) = out.rglob("results_*.json")
    return path, json.loads(path.read_text())


def _samples(results_path: Path, task: str) -> list[dict[str, Any]]:
    (path,) = results_path.parent.glob(f"samples_{task}_*.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def oracle_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("oracle")
    script = tmp / "oracle_lm_eval.py"
    script.write_text(ORACLE_SCRIPT)
    proc = _run(
        [
            PY,
            str(script),
            "--model",
            "val_depth_oracle",
            "--include_path",
            TASKS_DIR,
            "--tasks",
            "valprobing",
            "--metadata",
            json.dumps(SLICE),
            "--log_samples",
            "--output_path",
            str(tmp / "out"),
        ]
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return tmp / "out"


def test_results_carry_the_position_curve(oracle_run: Path) -> None:
    _path, data = _results(oracle_run)
    for family in FAMILIES:
        res = data["results"][f"val_{family}"]
        assert res["bucket_00,none"] == pytest.approx(100.0)
        assert res["bucket_01,none"] == pytest.approx(100.0)
        assert res["bucket_02,none"] == pytest.approx(0.0)
        assert res["bucket_03,none"] == pytest.approx(0.0)
        assert "bucket_04,none" not in res
        assert res["avg,none"] == pytest.approx(50.0)
        assert res["gap,none"] == pytest.approx(100.0)
        assert res["ref_score,none"] == pytest.approx(0.5)  # a fraction, like lm-eval's acc
        # lm-eval's standard error of the mean of 16 scores, half 1 and half 0 (ddof=1)
        assert res["ref_score_stderr,none"] == pytest.approx((0.25 * 16 / 15) ** 0.5 / 16**0.5)
        meta = data["configs"][f"val_{family}"]["metadata"]
        assert meta["source"] == "built"
        assert meta["context_length"] == [500]
        assert meta["n_buckets"] == 4
        assert meta["pool"] == "embedded"
        assert len(meta["probe_hash"]) == 16
        assert meta["probe_version"]
    group = data["results"]["valprobing"]
    assert group["avg,none"] == pytest.approx(50.0)
    assert group["gap,none"] == pytest.approx(100.0)


def test_samples_carry_positions_and_scores(oracle_run: Path) -> None:
    path, _data = _results(oracle_run)
    for family in FAMILIES:
        samples = _samples(path, f"val_{family}")
        assert len(samples) == 16  # 2 sets x 8 positions
        assert {(s["doc"]["set_id"], s["doc"]["position_id"]) for s in samples} == {
            (s["doc"]["set_id"], s["doc"]["position_id"]) for s in samples
        }
        for s in samples:
            doc = s["doc"]
            for name in ("n_items", "context_tokens", "needle_token_offset", "key", "answer"):
                assert name in doc
            assert doc["context_length"] == 500
            assert doc["context_tokens"] <= 500
            assert doc["bucket"] == doc["position_id"] * 4 // doc["n_items"]
            assert 0 <= doc["needle_token_offset"] < doc["context_tokens"]
            assert s["ref_score"] == (1.0 if doc["bucket"] < 2 else 0.0)
            assert s["avg"] == [doc["set_id"], doc["position_id"], doc["n_items"], s["ref_score"], 500]
        assert {s["doc"]["set_id"] for s in samples} == {0, 1}
        assert len({s["doc"]["position_id"] for s in samples if s["doc"]["set_id"] == 0}) == 8


def test_results_loader_reads_the_run(oracle_run: Path) -> None:
    """The results/plot/gate side recomputes the same numbers from the samples."""
    from val_probing.results import load_results_file

    path, data = _results(oracle_run)
    loaded = {r.task: r for r in load_results_file(path, n_boot=10)}
    assert set(loaded) == set(FAMILIES)
    for family, result in loaded.items():
        assert result.summary.avg == pytest.approx(data["results"][f"val_{family}"]["avg,none"])
        assert result.context_length == 500
        assert result.metadata["probe_hash"] == data["configs"][f"val_{family}"]["metadata"]["probe_hash"]


def test_limit_spreads_over_depths_and_the_glob_selects_the_three_tasks(tmp_path: Path) -> None:
    proc = _run(
        [
            PY,
            "-m",
            "lm_eval",
            "--model",
            "dummy",
            "--include_path",
            TASKS_DIR,
            "--tasks",
            "val_*",
            "--metadata",
            json.dumps(SLICE),
            "--limit",
            "4",
            "--log_samples",
            "--output_path",
            str(tmp_path),
        ]
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    path, data = _results(tmp_path)
    assert set(data["results"]) == {f"val_{family}" for family in FAMILIES}  # not the group
    for family in FAMILIES:
        samples = _samples(path, f"val_{family}")
        assert sorted(s["doc"]["bucket"] for s in samples) == [0, 1, 2, 3]
        assert len({s["doc"]["set_id"] for s in samples}) == 2
        assert {f"bucket_{b:02d},none" for b in range(4)} <= set(data["results"][f"val_{family}"])


def test_unknown_metadata_option_is_a_clear_error() -> None:
    proc = _run(
        [
            PY,
            "-m",
            "val_probing.cli",
            "eval",
            "--model",
            "dummy",
            "--tasks",
            "val_code",
            "--metadata",
            json.dumps({**SLICE, "context_lenght": 300}),
        ]
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "unknown VAL metadata option 'context_lenght'" in proc.stderr
    assert "did you mean 'context_length'" in proc.stderr
    assert "Traceback" not in proc.stderr


def _hf_eval(model_dir: Path, out: Path, model_args: str, *extra: str) -> subprocess.CompletedProcess[str]:
    meta = {k: v for k, v in SLICE.items() if k != "tokenizer"}
    return _run(
        [
            PY,
            "-m",
            "val_probing.cli",
            "eval",
            "--model",
            "hf",
            "--model_args",
            f"pretrained={model_dir}{model_args}",
            "--device",
            "cpu",
            "--tasks",
            "val_document",
            "--metadata",
            json.dumps(meta | {"context_length": 300}),
            "--output_path",
            str(out),
            *extra,
        ]
    )


def test_guard_refuses_prompts_the_model_would_truncate(tiny_llama_dir: Path, tmp_path: Path) -> None:
    # Contexts of <= 300 tokens fit in 400, but prompt + 128 new tokens does not.
    proc = _hf_eval(tiny_llama_dir, tmp_path, ",max_length=400", "--limit", "2")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "val_document: the longest prompt has" in proc.stderr
    assert "max_gen_toks=128" in proc.stderr
    assert "the model's limit is 400 (model_args max_length)" in proc.stderr
    assert not list(tmp_path.rglob("results_*.json"))


def test_guard_refuses_a_context_length_over_the_limit(tiny_llama_dir: Path) -> None:
    meta = {k: v for k, v in SLICE.items() if k != "tokenizer"} | {"pretrained": str(tiny_llama_dir)}
    with pytest.raises(PromptTooLong, match=r"context_length \[500\] is not below the model's limit 256"):
        _task("document", meta | {"max_length": 256})
    with pytest.raises(PromptTooLong, match=r"\[300, 500\] is not below .* 300 \(model_args max_model_len\)"):
        _task("document", meta | {"context_length": [300, 500], "max_model_len": 300})


@pytest.mark.slow
def test_hf_model_end_to_end(tiny_llama_dir: Path, tmp_path: Path) -> None:
    proc = _hf_eval(tiny_llama_dir, tmp_path, "", "--limit", "4", "--apply_chat_template", "--log_samples")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "longest prompt" in proc.stderr  # the guard ran against the model's 8192 positions
    path, data = _results(tmp_path)
    res = data["results"]["val_document"]
    assert {"ref_score,none", "avg,none", "gap,none", "bucket_00,none"} <= set(res)
    samples = _samples(path, "val_document")
    assert len(samples) == 4
    assert all(0.0 <= s["ref_score"] <= 1.0 for s in samples)
    prompt = samples[0]["arguments"]["gen_args_0"]["arg_0"]
    assert "<|im_start|>" in prompt  # the model's chat template was applied


# ------------------------------------------------------------------------------------ command line


def test_tasks_path_prints_the_yaml_folder() -> None:
    proc = _run([PY, "-m", "val_probing.cli", "tasks-path"], timeout=120)
    assert proc.returncode == 0
    folder = Path(proc.stdout.strip())
    assert folder == Path(TASKS_DIR)
    names = {p.name for p in folder.glob("*.yaml")}
    assert {"val_document.yaml", "val_code.yaml", "val_database.yaml", "valprobing.yaml"} <= names


def test_eval_forwards_arguments_with_the_include_path() -> None:
    assert forwarded_argv(["--model", "hf", "--tasks", "valprobing"], include_path="/t") == [
        "run",
        "--include_path",
        "/t",
        "--model",
        "hf",
        "--tasks",
        "valprobing",
    ]
    assert forwarded_argv(["ls", "tasks"], include_path="/t") == ["ls", "--include_path", "/t", "tasks"]
    assert forwarded_argv([], include_path="/t") == ["run", "--include_path", "/t", "--help"]
    with pytest.raises(EvalArgumentError, match="adds --include_path itself"):
        forwarded_argv(["--include_path", "mine"], include_path="/t")


def test_eval_help_shows_examples_and_lm_eval_options() -> None:
    proc = _run([PY, "-m", "val_probing.cli", "eval", "--help"], timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--tasks valprobing" in proc.stdout  # our examples
    assert "--include_path" in proc.stdout  # lm_eval's own help


# ------------------------------------------------------------------------------------ hooks


def test_spread_order_is_a_permutation_whose_prefixes_cover_the_range() -> None:
    for n in (1, 2, 7, 33, 100):
        for groups in (1, 3, 4):
            depths = [(i // groups) / (n // groups + 1) for i in range(n)]
            order = spread_order(depths, [i % groups for i in range(n)])
            assert sorted(order) == list(range(n))
    first = spread_order([p / 800 for p in range(800)], [0] * 800)[:16]
    assert sorted(i // 50 for i in first) == list(range(16))  # one per paper bucket


def _example(set_id: int, position_id: int, n_items: int = 32) -> ProbeExample:
    return ProbeExample(
        family="document",
        set_id=set_id,
        position_id=position_id,
        n_items=n_items,
        needle_token_offset=position_id,
        context_tokens=n_items,
        tokenizer="whitespace",
        context=f"context {set_id}",
        instruction="q",
        key="k",
        answer="a",
        row=set_id * n_items + position_id,
    )


def test_order_examples_spreads_depths_and_sets() -> None:
    examples = [_example(s, p) for s in range(4) for p in range(32)]
    random.Random(0).shuffle(examples)
    ordered = order_examples(examples, [None] * len(examples))
    assert sorted(ordered, key=lambda e: e.row) == sorted(examples, key=lambda e: e.row)
    first = ordered[:8]
    assert sorted(e.position_id * 8 // 32 for e in first) == list(range(8))
    assert {e.set_id for e in first} == {0, 1, 2, 3}
    assert order_examples(list(reversed(examples)), [None] * len(examples)) == ordered  # deterministic
    # two context lengths: both appear early
    twice = order_examples(examples + examples, [1000] * len(examples) + [2000] * len(examples))
    assert len(twice) == 2 * len(examples)


def test_options_defaults_and_errors() -> None:
    opts = ValOptions.from_metadata("database", {"pretrained": "m", "dtype": "float32", "version": 1})
    assert (opts.source, opts.context_lengths, opts.n_buckets, opts.tokenizer) == ("built", (4096,), 15, "m")
    assert ValOptions.from_metadata("code", {"tokenizer": "t", "positions": 6}).n_buckets == 6
    assert ValOptions.from_metadata("code", {"tokenizer": "t", "context_length": [1, 2]}).context_lengths == (
        1,
        2,
    )
    with pytest.raises(TaskSetupError, match="did you mean 'positions'") as err:
        ValOptions.from_metadata("code", {"tokenizer": "t", "postions": 8})
    assert "n_buckets" in str(err.value)  # the valid options are listed
    with pytest.raises(TaskSetupError, match="only for source=built"):
        ValOptions.from_metadata("code", {"source": "official", "context_length": 4096})
    with pytest.raises(TaskSetupError, match="tokenizer"):
        ValOptions.from_metadata("code", {})
    with pytest.raises(TaskSetupError, match="source"):
        ValOptions.from_metadata("code", {"tokenizer": "t", "source": "hub"})
    with pytest.raises(TaskSetupError, match="template"):
        ValOptions.from_metadata("code", {"tokenizer": "t", "template": "chatml"})


def test_official_source_without_data_fails_clearly_offline() -> None:
    # A subprocess: huggingface_hub reads HF_HUB_OFFLINE when it is imported.
    code = (
        "from val_probing.adapter.docs import load_probe_set\n"
        "from val_probing.adapter.options import ValOptions\n"
        "load_probe_set(ValOptions.from_metadata('document', {'source': 'official'}))\n"
    )
    proc = subprocess.run(
        [PY, "-c", code], capture_output=True, text=True, timeout=300, env=_env(), check=False
    )
    assert proc.returncode != 0
    assert "TaskSetupError: val_document: " in proc.stderr
    assert """--metadata '{"source": "official", "data": "DIR"}'""" in proc.stderr  # says what to do


def test_official_source_reads_local_data(tmp_path: Path) -> None:
    from val_probing.adapter.docs import load_probe_set
    from val_probing.files import write_jsonl
    from val_probing.official import to_official_row

    examples = [
        ProbeExample(
            family="code",
            set_id=0,
            position_id=p,
            n_items=4,
            needle_token_offset=0,
            context_tokens=1,
            tokenizer="whitespace",
            context="\n".join(f"def f{i}:\n    x = {i}" for i in range(4)),
            instruction=f'In above context, which function contains the code snip "x = {p}" ?',
            key=f"x = {p}",
            answer=f"f{p}",
        )
        for p in range(4)
    ]
    write_jsonl(tmp_path / "code_backward_32k.jsonl", [to_official_row(e) for e in examples])
    opts = ValOptions.from_metadata("code", {"source": "official", "data": str(tmp_path), "n_buckets": 2})
    probes = load_probe_set(opts)
    assert sorted(d["position_id"] for d in probes.docs) == [0, 1, 2, 3]
    assert all(d["context_length"] is None and d["source"] == "official" for d in probes.docs)
    assert len(probes.contexts) == 1
    assert opts.record()["context_length"] is None


def test_process_results_and_aggregations_match_summarize() -> None:
    rng = random.Random(3)
    docs = [
        {"family": "document", "set_id": s, "context_index": s, "position_id": p, "n_items": 20}
        | {"n_buckets": 5, "answer": "the cat sat on the mat", "description": None}
        for s in range(3)
        for p in range(20)
    ]
    preds = [rng.choice(["the cat sat", "nothing", "the cat sat on the mat"]) for _ in docs]
    per_sample = [process_results(d, [p]) for d, p in zip(docs, preds, strict=True)]
    expected = summarize(
        [
            ScoredSample(d["set_id"], d["position_id"], 20, "", m["ref_score"])
            for d, m in zip(docs, per_sample, strict=True)
        ],
        n_buckets=5,
        n_boot=1,
    )
    assert {m for m in metric_list(5)[3:] for m in [m["metric"]]} == {f"bucket_{b:02d}" for b in range(5)}
    assert aggregate_avg([m["avg"] for m in per_sample], n_buckets=5) == pytest.approx(expected.avg)
    assert aggregate_gap([m["gap"] for m in per_sample], n_buckets=5) == pytest.approx(expected.gap)
    for b in range(5):
        got = aggregate_bucket([m[f"bucket_{b:02d}"] for m in per_sample], n_buckets=5, index=b)
        assert got == pytest.approx(expected.buckets[b].mean)
    assert aggregate_bucket([(0, 0, 20, 1.0)], n_buckets=5, index=3) is None
    assert process_results(docs[0], [""])["ref_score"] == 0.0


def test_model_limit_sources(tiny_llama_dir: Path) -> None:
    assert model_limit({"max_length": 1000, "pretrained": "x"}) == ModelLimit(1000, "model_args max_length")
    assert model_limit({"max_model_len": "4096"}) == ModelLimit(4096, "model_args max_model_len")
    assert model_limit({"base_url": "http://h/v1/completions"}).tokens == 2048  # type: ignore[union-attr]
    assert model_limit({"pretrained": str(tiny_llama_dir)}).tokens == 8192  # type: ignore[union-attr]
    assert model_limit({"tokenizer": "embedded"}) is None


def test_check_prompts_fit_counts_chat_messages(smollm2_tokenizer_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(smollm2_tokenizer_dir))
    plain = "word " * 100
    n_plain = len(tok(plain)["input_ids"])
    limit = ModelLimit(n_plain + 10, "test")
    assert check_prompts_fit("t", [plain], tok, limit, max_gen_toks=10) == n_plain
    with pytest.raises(PromptTooLong, match=rf"longest prompt has {n_plain} tokens"):
        check_prompts_fit("t", [plain], tok, limit, max_gen_toks=11)
    chat = json.dumps([{"role": "user", "content": plain}])  # what lm-eval hands chat APIs
    with pytest.raises(PromptTooLong, match="limit is"):  # the template's tokens count too
        check_prompts_fit("t", [chat], tok, limit, max_gen_toks=10)


def test_prompt_templates() -> None:
    assert render_prompt("plain", "CTX", "Q?") == "CTX\n\nQ?"
    film = render_prompt("film", "CTX", "Q?")
    assert film.startswith("[INST] Below is a context and an instruction.")
    assert film.endswith("### Context:\nCTX\n\n### Instruction:\nQ? [/INST]")


def _task(family: str, meta: dict[str, Any]) -> Any:
    from lm_eval.tasks._yaml_loader import load_yaml

    from val_probing.lm_eval_adapter import ValTask

    cfg = load_yaml(Path(TASKS_DIR) / f"val_{family}.yaml")
    cfg["metadata"] = cfg.get("metadata", {}) | meta
    return ValTask(config=cfg)


def test_task_in_process_prompts_metadata_and_film_guard() -> None:
    task = _task("code", SLICE | {"template": "film", "max_length": 4096})
    docs = list(task.test_docs())
    assert len(docs) == 16
    prompt = task.doc_to_text(docs[0])
    assert prompt.startswith("[INST] Below is a context") and docs[0]["instruction"] in prompt
    assert task.config.metadata["template"] == "film"
    assert task.config.metadata["family"] == "code"
    assert task.config.generation_kwargs["max_gen_toks"] == 128
    assert task.config.generation_kwargs["do_sample"] is False
    with pytest.raises(TaskSetupError, match="drop --apply_chat_template"):
        task.build_all_requests(apply_chat_template=True, limit=2)
    task.build_all_requests(limit=2)  # plain prompts of ~530 tokens + 128 fit in 4096
    assert len(task.instances) == 2


def test_guard_counts_the_chat_template(tiny_llama_dir: Path) -> None:
    """A limit the plain prompts fit is too small once the model's chat template wraps them."""
    from transformers import AutoTokenizer

    from val_probing.adapter.guard import longest_prompt

    tok = AutoTokenizer.from_pretrained(str(tiny_llama_dir))
    meta = {k: v for k, v in SLICE.items() if k != "tokenizer"} | {"pretrained": str(tiny_llama_dir)}
    probe = _task("document", meta)
    _i, plain = longest_prompt(tok, [probe.doc_to_text(d) for d in probe.test_docs()])

    def chat_template(history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return tok.apply_chat_template(history, tokenize=False, add_generation_prompt=add_generation_prompt)

    task = _task("document", meta | {"max_length": plain + 128})
    task.build_all_requests()  # plain prompts fit exactly
    with pytest.raises(PromptTooLong, match=rf"the model's limit is {plain + 128} \(model_args max_length\)"):
        task.build_all_requests(apply_chat_template=True, chat_template=chat_template)


def test_several_context_lengths_are_separate_contexts() -> None:
    from val_probing.adapter.docs import load_probe_set

    meta = SLICE | {"context_length": [300, 500], "positions": 4}
    probes = load_probe_set(ValOptions.from_metadata("database", meta))
    docs = probes.docs
    assert len(docs) == 2 * 2 * 4 and len(probes.contexts) == 4
    assert {d["context_length"] for d in docs} == {300, 500}
    by_context = {(d["context_length"], d["set_id"]): d["context_index"] for d in docs}
    assert len(set(by_context.values())) == 4  # set ids repeat across lengths, contexts do not
    assert all(d["context_tokens"] <= d["context_length"] for d in docs)
    assert {(d["context_length"], d["set_id"]) for d in docs[:8]} == set(by_context)  # --limit 8 sees all
    single = load_probe_set(
        ValOptions.from_metadata("database", SLICE | {"context_length": 300, "positions": 4})
    )
    assert probes.probe_hash != single.probe_hash


def test_check_prompts_fit_shares_a_context_and_stays_exact_at_the_limit(smollm2_tokenizer_dir: Path) -> None:
    from transformers import AutoTokenizer

    from val_probing.adapter.guard import approx_lengths

    tok = AutoTokenizer.from_pretrained(str(smollm2_tokenizer_dir))
    context = "\n".join(f"Line {i} says something about item number {i * 7}." for i in range(200))
    prompts = [f"{context}\n\nWhich line mentions {k * 7}{'?' * k}" for k in range(12)]
    exact = [len(ids) for ids in tok(prompts)["input_ids"]]
    approx = approx_lengths(tok, prompts, [0] * len(prompts))  # one shared context
    assert all(abs(a - e) <= 2 for a, e in zip(approx, exact, strict=True))
    top = max(exact)
    assert check_prompts_fit("t", prompts, tok, ModelLimit(top + 10, "x"), 10, [0] * 12) == top
    with pytest.raises(PromptTooLong, match=rf"longest prompt has {top} tokens"):
        check_prompts_fit("t", prompts, tok, ModelLimit(top + 9, "x"), 10, [0] * 12)
    far = check_prompts_fit("t", prompts, tok, ModelLimit(top + 500, "x"), 10, [0] * 12)
    assert abs(far - top) <= 2  # far from the limit an estimate is enough


def test_max_seq_lengths_is_an_alias_of_context_length() -> None:
    opts = ValOptions.from_metadata("code", {"max_seq_lengths": [4096, 8192], "tokenizer": "embedded"})
    assert opts.context_lengths == (4096, 8192)
    same = ValOptions.from_metadata("code", {"max_seq_lengths": 768, "context_length": 768, "tokenizer": "x"})
    assert same.context_lengths == (768,)
    with pytest.raises(TaskSetupError, match=r"max_seq_lengths .* disagree"):
        ValOptions.from_metadata(
            "code", {"max_seq_lengths": [4096], "context_length": 8192, "tokenizer": "x"}
        )
    with pytest.raises(TaskSetupError, match="only for source=built"):
        ValOptions.from_metadata("code", {"source": "official", "max_seq_lengths": [4096]})


def test_default_buckets_adapt_to_short_contexts_and_explicit_ones_do_not() -> None:
    from val_probing.adapter.docs import load_probe_set
    from val_probing.buckets import fitting_buckets

    assert fitting_buckets(16, min_items=14, positions=None) == 14
    assert fitting_buckets(16, min_items=14, positions=12) == 12
    assert fitting_buckets(16, min_items=40, positions=10) == 10
    assert fitting_buckets(15, min_items=40, positions=14) == 14
    assert fitting_buckets(16, min_items=9, positions=9) == 9
    # 768 tokens of SmolLM2's tokenizer hold 14 functions: the default 16 buckets become 14
    probes = load_probe_set(
        ValOptions.from_metadata("code", {"context_length": 768, "tokenizer": "embedded"})
    )
    assert probes.n_buckets == 14 == min(d["n_items"] for d in probes.docs)
    assert {d["bucket"] for d in probes.docs} == set(range(14))
    explicit = ValOptions.from_metadata(
        "code", {"context_length": 768, "tokenizer": "embedded", "n_buckets": 16}
    )
    with pytest.raises(TaskSetupError, match="n_buckets=16 is more than the needle positions"):
        load_probe_set(explicit)


@pytest.mark.parametrize(
    ("family", "meta"),
    [
        ("code", {"context_length": 768}),  # 14 functions fit: fewer than the default 16
        ("document", {"context_length": 1024, "positions": 12}),  # a divisor of 12
        ("database", {"context_length": 1024, "positions": 10, "sets": 3}),
    ],
)
def test_score_and_the_adapter_choose_the_same_buckets_on_built_probes(
    family: Family, meta: dict[str, object]
) -> None:
    from val_probing.adapter.docs import load_probe_set
    from val_probing.build import ProbeSpec, cached_probes
    from val_probing.score import default_buckets

    opts = ValOptions.from_metadata(family, {**meta, "tokenizer": "embedded"})
    probes = load_probe_set(opts)
    rows, _digest = cached_probes(
        ProbeSpec(
            family=family,
            length=opts.context_lengths[0],
            tokenizer="embedded",
            pool=opts.pool,
            seed=opts.seed,
            sets=opts.sets,
            positions=opts.positions,
        )
    )
    assert [d["position_id"] for d in sorted(probes.docs, key=lambda d: (d["set_id"], d["position_id"]))] == [
        r.position_id for r in sorted(rows, key=lambda r: (r.set_id, r.position_id))
    ]
    assert default_buckets(family, rows) == probes.n_buckets


def test_per_length_metrics_aggregate_their_own_length() -> None:
    docs = [
        {"family": "code", "context_index": c, "position_id": p, "n_items": 4, "n_buckets": 2}
        | {"context_length": length, "answer": "f", "description": None}
        for c, length in ((0, 1024), (1, 2048))
        for p in range(4)
    ]
    # right everywhere at 1K, only at the start at 2K
    preds = ["f" if d["context_length"] == 1024 or d["position_id"] < 2 else "" for d in docs]
    per_sample = [process_results(d, [p], lengths=(1024, 2048)) for d, p in zip(docs, preds, strict=True)]
    names = {m["metric"] for m in metric_list(2, (1024, 2048))}
    assert {"avg_1024", "gap_1024", "avg_2048", "gap_2048"} <= names
    assert all({"avg_1024", "avg_2048"} <= set(m) for m in per_sample)
    assert aggregate_avg([m["avg_1024"] for m in per_sample], n_buckets=2, length=1024) == 100.0
    assert aggregate_gap([m["gap_1024"] for m in per_sample], n_buckets=2, length=1024) == 0.0
    assert aggregate_avg([m["avg_2048"] for m in per_sample], n_buckets=2, length=2048) == 50.0
    assert aggregate_gap([m["gap_2048"] for m in per_sample], n_buckets=2, length=2048) == 100.0
    assert aggregate_avg([m["avg"] for m in per_sample], n_buckets=2) == 75.0  # pooled
    assert "avg_1024" not in process_results(docs[0], ["f"])  # one length: no per-length metrics
