"""The IN2 SFT recipe on CPU: config checks, completion-only labels, a real loss decrease, a checkpoint that
reloads and generates, over-long examples refused, the FSDP configs, and the `val-probing train` command."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from val_probing.errors import ValProbingError
from val_probing.in2.recipe_settings import OverLengthError, check_lengths, load_config, verify_prepared

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "training" / "configs"
TINY_CONFIG = CONFIGS / "in2_tiny_cpu.yaml"
# Everything is local: without these, lm_eval spends minutes in hub time-outs on an offline machine.
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def _load_recipe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("in2_sft", ROOT / "training" / "recipes" / "in2_sft.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


recipe = _load_recipe()


def _synthesize(out: Path, template: str, n: int = 8) -> Path:
    """A small IN2 set at ~256-token contexts with the real (SmolLM2) tokenizer and the local generator."""
    from test_training_data import make_corpus
    from val_probing.embedded import embedded_tokenizer_dir
    from val_probing.in2.assemble import LengthRange, MixtureRatios
    from val_probing.in2.dataset import SynthesisConfig, save_dataset, synthesize
    from val_probing.in2.qa import ExtractiveLocalGenerator
    from val_probing.token_counters import HFTokenCounter

    counter = HFTokenCounter.load(str(embedded_tokenizer_dir()))
    config = SynthesisConfig(
        n_examples=n,
        ratios=MixtureRatios(fine_grained=0.75, integration=0.25, short_context=0.0, general=0.0),
        length=LengthRange(192, 256, slack_tokens=48),
        segment_tokens=48,
        integration_segments=(2, 2),
    )
    corpus = make_corpus(12, 8, random.Random(0), sentences=2)
    syn = synthesize(corpus, counter, ExtractiveLocalGenerator(), config, random.Random(0))
    return save_dataset(out, syn, template)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def film_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _synthesize(tmp_path_factory.mktemp("in2") / "film", "film")


def _config(model: Path, data: Path, out: Path, *extra: str) -> Any:
    return load_config(TINY_CONFIG, [f"model={model}", f"dataset={data}", f"output_dir={out}", *extra])


# ---------------------------------------------------------------------------------------------- config


def test_paper_config_has_the_papers_settings() -> None:
    cfg = load_config(CONFIGS / "in2_mistral7b.yaml", ["dataset=/data/in2"])
    assert cfg.model == "mistralai/Mistral-7B-Instruct-v0.2"
    assert (cfg.global_batch_size, cfg.learning_rate, cfg.lr_scheduler_type) == (128, 1e-6, "cosine")
    assert (cfg.warmup_ratio, cfg.num_train_epochs, cfg.max_steps) == (0.03, 1, None)
    assert cfg.gradient_accumulation(world_size=128) == 1  # 16 nodes x 8 GPUs
    assert cfg.gradient_accumulation(world_size=8) == 16
    assert not cfg.use_liger_kernel and cfg.attn_implementation is None


def test_config_errors_name_the_file_and_key(tmp_path: Path) -> None:
    with pytest.raises(ValProbingError, match=r"in2_mistral7b\.yaml: set dataset"):
        load_config(CONFIGS / "in2_mistral7b.yaml")
    with pytest.raises(ValProbingError, match=r"unknown setting.*lerning_rate"):
        load_config(CONFIGS / "in2_mistral7b.yaml", ["dataset=x", "lerning_rate=1"])
    cfg = load_config(CONFIGS / "in2_mistral7b.yaml", ["dataset=x", "gradient_accumulation_steps=4"])
    with pytest.raises(ValProbingError, match=r"= 32, not global_batch_size=128"):
        cfg.gradient_accumulation(world_size=8)
    assert (
        load_config(CONFIGS / "in2_tiny_cpu.yaml", ["dataset=x", "learning_rate=1e-3"]).learning_rate == 1e-3
    )
    with pytest.raises(ValProbingError, match=r"in2_tiny_cpu\.yaml: max_steps: expected int, got 'ten'"):
        load_config(CONFIGS / "in2_tiny_cpu.yaml", ["dataset=x", "max_steps=ten"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ValProbingError, match=r"bad\.yaml: malformed YAML"):
        load_config(bad)


def test_over_long_examples_are_listed_and_refused() -> None:
    assert check_lengths([10, 30, 20], 30) == 30
    with pytest.raises(
        OverLengthError, match=r"2 of 4 examples exceed max_length_limit=25.*#1 \(30 tokens\), #3"
    ):
        check_lengths([10, 30, 20, 26], 25)
    with pytest.raises(ValProbingError, match="dropped"):
        verify_prepared([5, 6], [5, 6, 7])
    with pytest.raises(ValProbingError, match=r"first: #1, 5 vs 6"):
        verify_prepared([5, 5], [5, 6])


# What `accelerate launch` hands each process of the recipe: FSDP settings travel as environment variables.
_PRINT_ENV = (
    "import json, os\n"
    "env = {k: v for k, v in os.environ.items() if k.startswith(('FSDP_', 'ACCELERATE_'))}\n"
    "print('ENV=' + json.dumps(env))\n"
)
# Parameter initialisation across ranks needs a GPU: accelerate refuses these two on a CPU.
_GPU_ONLY = ("FSDP_SYNC_MODULE_STATES", "FSDP_CPU_RAM_EFFICIENT_LOADING")


def _launched_env(config: Path, tmp_path: Path) -> dict[str, str]:
    """The environment the real `accelerate launch` gives the recipe under ``config``, on one process."""
    script = tmp_path / "print_env.py"
    script.write_text(_PRINT_ENV, encoding="utf-8")
    cmd = [sys.executable, "-m", "accelerate.commands.accelerate_cli", "launch", "--config_file", str(config)]
    cmd += ["--num_machines", "1", "--num_processes", "1", "--machine_rank", "0", str(script)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, **OFFLINE})
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("ENV=")]
    assert len(lines) == 1, proc.stdout[-2000:]
    env: dict[str, str] = json.loads(lines[0].removeprefix("ENV="))
    return env


@pytest.mark.parametrize(
    ("name", "offload"),
    [
        ("accelerate_fsdp_mistral7b_16x8.yaml", False),
        ("accelerate_fsdp_mistral7b_16x8_cpu_offload.yaml", True),
    ],
)
def test_fsdp_configs_build_the_expected_plugin(
    name: str, offload: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through accelerate's public surface only: its launcher, the FSDP_* environment, the plugin class."""
    import yaml
    from accelerate.utils import FullyShardedDataParallelPlugin
    from torch.distributed.fsdp import ShardingStrategy

    path = CONFIGS / name
    sizes = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert (sizes["distributed_type"], sizes["num_machines"], sizes["num_processes"]) == ("FSDP", 16, 128)
    env = _launched_env(path, tmp_path)
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    assert all(env[key] == "true" for key in _GPU_ONLY)  # the 7B run loads with cpu_ram_efficient_loading
    for key, value in env.items():
        monkeypatch.setenv(key, "false" if key in _GPU_ONLY else value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.sharding_strategy == ShardingStrategy.FULL_SHARD
    assert plugin.auto_wrap_policy.__name__ == "transformer_auto_wrap_policy"
    assert plugin.transformer_cls_names_to_wrap == ["MistralDecoderLayer"]
    assert bool(plugin.cpu_offload.offload_params) is offload
    assert plugin.activation_checkpointing is True
    assert "accelerate launch --config_file training/configs/" + name in path.read_text()


# ---------------------------------------------------------------------------------------------- CPU training


def test_labels_are_masked_on_the_prompt_and_nowhere_else(
    tiny_llama_dir: Path, film_data: Path, tmp_path: Path
) -> None:
    trainer, lengths = recipe.build_trainer(_config(tiny_llama_dir, film_data, tmp_path / "run"))
    tok = trainer.processing_class
    assert trainer.args.max_length == max(lengths) and max(lengths) > 200
    rows = [trainer.train_dataset[i] for i in range(4)]
    batch = trainer.data_collator(rows)
    raw = __import__("datasets").load_from_disk(str(film_data))
    for j in range(4):
        n = lengths[j]
        n_prompt = len(tok(text=raw[j]["prompt"])["input_ids"])
        ids, labels = batch["input_ids"][j].tolist(), batch["labels"][j].tolist()
        assert labels[:n_prompt] == [-100] * n_prompt
        assert labels[n_prompt:n] == ids[n_prompt:n] and -100 not in labels[n_prompt:n]
        assert ids[n - 1] == tok.eos_token_id  # the answer ends with EOS, and EOS is learned
        assert tok.decode(ids[n_prompt : n - 1]).strip() == raw[j]["completion"].strip()
        assert labels[n:] == [-100] * (len(labels) - n)  # padding
        assert batch["attention_mask"][j].tolist()[n:] == [0] * (len(labels) - n)


def test_chat_template_data_is_masked_the_same_way(tiny_llama_dir: Path, tmp_path: Path) -> None:
    data = _synthesize(tmp_path / "chat", "chat", n=4)
    trainer, lengths = recipe.build_trainer(_config(tiny_llama_dir, data, tmp_path / "run"))
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    tok = trainer.processing_class
    for j in range(2):
        labels = batch["labels"][j].tolist()[: lengths[j]]
        first = next(i for i, label in enumerate(labels) if label != -100)
        assert "<|im_start|>assistant" in tok.decode(batch["input_ids"][j][:first])
        assert -100 not in labels[first:]


def test_rope_theta_override_reaches_the_model(tiny_llama_dir: Path, film_data: Path, tmp_path: Path) -> None:
    trainer, _ = recipe.build_trainer(_config(tiny_llama_dir, film_data, tmp_path / "run", "rope_theta=1e6"))
    inv_freq = trainer.model.model.rotary_emb.inv_freq
    head_dim = trainer.model.config.hidden_size // trainer.model.config.num_attention_heads
    assert inv_freq[1].item() == pytest.approx(1e6 ** (-2 / head_dim))  # base 1e6, not the model's 1e4


def test_over_long_examples_stop_the_run(tiny_llama_dir: Path, film_data: Path, tmp_path: Path) -> None:
    with pytest.raises(OverLengthError, match=r"examples exceed max_length_limit=200 tokens: #"):
        recipe.main(
            [
                "--config",
                str(TINY_CONFIG),
                f"model={tiny_llama_dir}",
                f"dataset={film_data}",
                f"output_dir={tmp_path / 'run'}",
                "max_length_limit=200",
            ]
        )
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def trained(tiny_llama_dir: Path, film_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twenty steps at a raised learning rate on a fixed set of 2 examples (~35 s on 2 cores)."""
    out = tmp_path_factory.mktemp("trained")
    recipe.main(
        ["--config", str(TINY_CONFIG), f"model={tiny_llama_dir}", f"dataset={film_data}", f"output_dir={out}",
         "limit=2", "global_batch_size=2", "per_device_train_batch_size=2", "max_steps=20",
         "learning_rate=5e-3", "warmup_ratio=0", "lr_scheduler_type=constant"]
    )  # fmt: skip
    return out


def test_loss_goes_down(trained: Path) -> None:
    summary = json.loads((trained / "train_summary.json").read_text())
    losses = [entry["loss"] for entry in summary["log_history"] if "loss" in entry]
    assert summary["global_step"] == 20 and len(losses) == 20
    assert sum(losses[-3:]) / 3 < losses[0] - 3.0, losses  # a real decrease (10.8 -> ~4), not noise
    assert summary["n_examples"] == 2 and summary["max_length"] > 192  # whole ~256-token contexts, uncut


def test_checkpoint_reloads_and_generates(trained: Path, film_data: Path) -> None:
    import torch
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM, AutoTokenizer

    final = trained / "final"
    model = AutoModelForCausalLM.from_pretrained(final)
    tok = AutoTokenizer.from_pretrained(final)
    row = load_from_disk(str(film_data))[0]
    inputs = tok(row["prompt"], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]
    # the memorised training answer is now more likely than before training
    answer_ids = tok(text=row["prompt"] + row["completion"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        loss = model(input_ids=answer_ids, labels=answer_ids).loss.item()
    assert loss < 9.0


def test_checkpoint_runs_through_the_val_tasks(trained: Path, tmp_path: Path) -> None:
    """The trained checkpoint, as any user would evaluate it: lm_eval --model hf on a tiny VAL slice."""
    from val_probing.lm_eval_tasks import TASKS_DIR

    metadata = {"source": "built", "context_length": 256, "sets": 1, "positions": 4, "pool": "embedded",
                "template": "film"}  # fmt: skip
    cmd = [sys.executable, "-m", "lm_eval", "--model", "hf",
           "--model_args", f"pretrained={trained / 'final'},dtype=float32", "--device", "cpu",
           "--include_path", TASKS_DIR, "--tasks", "val_document", "--metadata", json.dumps(metadata),
           "--gen_kwargs", "max_gen_toks=8", "--log_samples",
           "--output_path", str(tmp_path / "out")]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "2", **OFFLINE})  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    results = json.loads(next((tmp_path / "out").rglob("results_*.json")).read_text())
    got = results["results"]["val_document"]
    assert all(0.0 <= got[k] <= 100.0 for k in ("ref_score,none", "avg,none", "gap,none"))
    assert results["configs"]["val_document"]["metadata"]["template"] == "film"
    with next((tmp_path / "out").rglob("samples_val_document_*.jsonl")).open() as handle:
        docs = [json.loads(line)["doc"] for line in handle]
    assert len(docs) == 4 and len({d["position_id"] for d in docs}) == 4  # four depths of one context
    assert all(0 <= d["needle_token_offset"] <= d["context_tokens"] <= 256 for d in docs)


# ---------------------------------------------------------------------------------------------- command


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "val_probing.cli", "train", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        env={**os.environ, **OFFLINE},
    )


def test_train_synthesize_command(tmp_path: Path) -> None:
    from test_training_data import make_corpus
    from val_probing.records import ProbeExample, write_probes

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    texts = make_corpus(20, 10, random.Random(1))
    for text in texts:
        (corpus / f"{text.text_id}.txt").write_text(text.text)
    leaked = " ".join(texts[3].text.split()[:12])
    probe = ProbeExample("document", 0, 0, 1, 0, 12, "whitespace", leaked, "Which sentence?", "k", "a")
    write_probes(tmp_path / "probes.jsonl", [probe])
    general = tmp_path / "orca.jsonl"
    general.write_text(
        "".join(json.dumps({"question": f"Q{i}?", "response": f"A{i}"}) + "\n" for i in range(5))
    )
    out = tmp_path / "data"
    args = ["synthesize", "--texts", str(corpus), "--tokenizer", "whitespace", "--generator", "local",
            "--n-examples", "10", "--min-context", "300", "--max-context", "600", "--segment-tokens", "64",
            "--probes", str(tmp_path / "probes.jsonl"), "--general", str(general),
            "--out", str(out)]  # fmt: skip
    done = _cli(*args)
    assert done.returncode == 0, done.stderr
    assert "wrote 10 examples" in done.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["sources"]["texts"] == [str(corpus)] and manifest["counts"]["produced"]["general"] == 1
    assert manifest["contamination"]["dropped_ids"] == [str(corpus / "text3.txt")]
    assert not any(leaked in prompt for prompt in _prompts(out))  # not even as a filler
    again = _cli(*args)
    assert again.returncode == 2 and "exists: pass --overwrite" in again.stderr
    too_long = _cli(
        *args[:-2], "--max-context", "100000", "--min-context", "90000", "--out", str(tmp_path / "x")
    )
    assert too_long.returncode == 2 and "could not fill" in too_long.stderr
    assert not (tmp_path / "x").exists()


def _prompts(data: Path) -> list[str]:
    from datasets import load_from_disk

    return list(load_from_disk(str(data))["prompt"])


def test_load_recipe_gives_the_recipe_main_to_run_in_this_process(tmp_path: Path) -> None:
    from val_probing.training import recipe_path
    from val_probing.training.launch import load_recipe, recipe_argv

    recipe = load_recipe(recipe_path())
    assert callable(recipe.main) and recipe.__file__ == str(recipe_path())
    assert recipe_argv(Path("c.yaml"), ["seed=1"]) == ["--config", "c.yaml", "seed=1"]
    no_main = tmp_path / "no_main.py"
    no_main.write_text("x = 1\n")
    with pytest.raises(ValProbingError, match=r"no_main.py: the recipe has no main\(argv\)"):
        load_recipe(no_main)
    with pytest.raises(ValProbingError, match="cannot load the recipe"):
        load_recipe(tmp_path / "notes.txt")


def test_train_run_command_checks_the_config_first(tmp_path: Path) -> None:
    done = _cli("run", "--config", str(CONFIGS / "in2_mistral7b.yaml"))
    assert done.returncode == 2 and "set dataset" in done.stderr
    from val_probing.training import config_path
    from val_probing.training import recipe_path as find_recipe
    from val_probing.training.launch import launch_command

    recipe_path = find_recipe()
    assert recipe_path.resolve() == ROOT / "training" / "recipes" / "in2_sft.py"
    assert config_path("in2_tiny_cpu").resolve() == CONFIGS / "in2_tiny_cpu.yaml"
    cmd = launch_command(
        CONFIGS / "in2_mistral7b.yaml",
        ["dataset=d"],
        recipe_path,
        CONFIGS / "accelerate_fsdp_mistral7b_16x8.yaml",
        "--machine_rank 3 --main_process_ip 10.0.0.1",
    )
    assert cmd[1:5] == [
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(CONFIGS / "accelerate_fsdp_mistral7b_16x8.yaml"),
    ]
    assert cmd[5:9] == ["--machine_rank", "3", "--main_process_ip", "10.0.0.1"]
    assert cmd[9:] == [str(recipe_path), "--config", str(CONFIGS / "in2_mistral7b.yaml"), "dataset=d"]
    with pytest.raises(ValProbingError, match=r"no such recipe file.*shipped: in2_sft"):
        find_recipe(str(tmp_path / "nope.py"))
    assert launch_command(CONFIGS / "in2_tiny_cpu.yaml", ["seed=1"], recipe_path) == [
        sys.executable, str(recipe_path), "--config", str(CONFIGS / "in2_tiny_cpu.yaml"), "seed=1",
    ]  # fmt: skip
    helped = _cli("synthesize", "--help")
    assert helped.returncode == 0 and "--generator openai --endpoint" in helped.stdout


# ---------------------------------------------------------------------------------------------- slow


@pytest.mark.slow
def test_smollm2_trains_a_few_steps_through_the_cli(tmp_path: Path) -> None:
    data = _synthesize(tmp_path / "data", "film", n=4)
    out = tmp_path / "run"
    done = _cli(
        "run",
        "--config",
        str(TINY_CONFIG),
        f"dataset={data}",
        "model=embedded",
        f"output_dir={out}",
        "max_steps=2",
        "global_batch_size=1",
        "per_device_train_batch_size=1",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "train_summary.json").read_text())
    losses = [entry["loss"] for entry in summary["log_history"] if "loss" in entry]
    assert summary["global_step"] == 2 and all(0 < loss < 20 for loss in losses)
    assert (out / "final" / "model.safetensors").is_file()
    assert not list(data.glob("cache-*.arrow"))  # the dataset folder is only read


def test_training_leaves_the_input_dataset_as_it_was(trained: Path, film_data: Path) -> None:
    """datasets caches a map beside its input: the recipe once left cache-*.arrow files (10x the data,
    more each run) in the user's dataset folder. Now they live under output_dir/dataset-cache."""
    from val_probing.files import check_removable
    from val_probing.in2.dataset.save import DATASET_KEY

    assert not list(film_data.glob("cache-*.arrow"))
    check_removable(film_data, DATASET_KEY)  # exactly the files `synthesize` wrote, nothing added
    assert list((trained / "dataset-cache").glob("*.arrow"))


@pytest.mark.parametrize(
    "overrides",
    [["max_steps=0", "num_train_epochs=0"], ["max_steps=-1", "num_train_epochs=0"], ["max_steps=0"]],
)
def test_a_run_that_would_train_nothing_is_refused(
    overrides: list[str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """max_steps=0 once exited 0 and saved the base model as final/, as if trained."""
    from val_probing.cli import main

    data = tmp_path / "data"
    data.mkdir()
    args = ["train", "run", "--config", "in2_tiny_cpu", f"dataset={data}", f"output_dir={tmp_path / 'run'}"]
    assert main([*args, *overrides]) == 2
    err = capsys.readouterr().err
    assert "a run of no step would save the base model as final/" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_train_run_without_trl_names_the_extra(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from val_probing.cli import main

    monkeypatch.setitem(sys.modules, "trl", None)  # as if not installed: its import fails
    args = ["train", "run", "--config", "in2_tiny_cpu", f"dataset={tmp_path}", f"output_dir={tmp_path / 'r'}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "train run needs trl, not installed: pip install 'val-probing[train]'" in err
    assert "Traceback" not in err and not (tmp_path / "r").exists()
