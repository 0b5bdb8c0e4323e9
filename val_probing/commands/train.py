"""``val-probing train``: IN2 data synthesis (``synthesize``) and the SFT recipe (``run``)."""

from __future__ import annotations

import argparse
import logging
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from val_probing.environment import require_modules
from val_probing.errors import ValProbingError
from val_probing.in2.assemble import PLACEMENTS
from val_probing.training.launch import launch_command

if TYPE_CHECKING:
    from collections.abc import Callable

    from val_probing.in2.qa import QAGenerator

log = logging.getLogger(__name__)

HELP = "IN2 training: synthesize information-intensive data, then fine-tune (FILM-7B recipe)"
EPILOG = """\
examples:
  # offline smoke: deterministic extractive QA, short contexts
  val-probing train synthesize --texts corpus/ --tokenizer embedded --generator local \\
      --n-examples 200 --min-context 1024 --max-context 4096 --out runs/in2-data

  # the paper's pipeline: QA from an open model served by vLLM, contexts 4K-32K, OpenOrca mixed in,
  # texts sharing a 10-gram with the VAL probes dropped
  vllm serve Qwen/Qwen2.5-72B-Instruct --port 8000 &
  val-probing train synthesize --texts corpus/ --tokenizer mistralai/Mistral-7B-Instruct-v0.2 \\
      --generator openai --endpoint http://127.0.0.1:8000/v1 --model Qwen/Qwen2.5-72B-Instruct --structured \\
      --general openorca.jsonl --probes probes/*.jsonl --n-examples 1750000 --out runs/in2-data

  # train (one process), or through accelerate with an FSDP config
  # (configs and recipes are found by shipped name, or pass a path)
  val-probing train run --config in2_tiny_cpu dataset=runs/in2-data max_steps=3
  val-probing train run --config in2_mistral7b dataset=runs/in2-data \\
      --accelerate-config accelerate_fsdp_mistral7b_16x8_cpu_offload \\
      --accelerate-args="--machine_rank 0 --main_process_ip 10.0.0.1"
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="train_command", metavar="STEP")
    sub.required = True
    steps: tuple[tuple[str, str, str, Callable[[argparse.ArgumentParser], None]], ...] = (
        (
            "synthesize",
            "raw texts -> IN2 training dataset (datasets folder + manifest)",
            EPILOG,
            _synthesize_arguments,
        ),
        ("run", "run a shipped recipe (default in2_sft) with a config", EPILOG, _run_arguments),
        (
            "experiment",
            "the IN2 placement experiment (issue 13): data, two arms, training, VAL curves, paired tests",
            EXPERIMENT_EPILOG,
            _experiment_arguments,
        ),
    )
    for name, summary, epilog, fill in steps:
        step = sub.add_parser(
            name, help=summary, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        fill(step)


DEFAULT_ENDPOINT = "http://127.0.0.1:8000/v1"
# flags only --generator openai reads: given with the local generator, they would be silently ignored
OPENAI_ONLY = ("endpoint", "model", "structured", "cache")


def _synthesize_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--texts",
        nargs="+",
        required=True,
        type=Path,
        help=".txt/.md files (one text each), .jsonl files (field 'text' a line) or folders",
    )
    p.add_argument(
        "--tokenizer",
        default="embedded",
        help="tokenizer that counts tokens: HF name or folder, 'embedded' (SmolLM2) or 'whitespace'",
    )
    p.add_argument(
        "--generator",
        choices=("local", "openai"),
        default="local",
        help="'openai': any OpenAI-compatible endpoint; 'local': deterministic extractive stand-in",
    )
    p.add_argument(
        "--endpoint",
        help=f"base URL of the endpoint (default $OPENAI_BASE_URL, else {DEFAULT_ENDPOINT})",
    )
    p.add_argument("--model", help="model name at the endpoint (required with --generator openai)")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable with the API key")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight at once")
    p.add_argument("--max-retries", type=int, default=5, help="retries per request on errors, 429 and 5xx")
    p.add_argument("--attempts", type=int, default=3, help="generations asked per request when rejected")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--max-tokens", type=int, default=512)
    p.add_argument(
        "--structured",
        action="store_true",
        help="ask the server for JSON-schema constrained output (response_format; vLLM, OpenAI)",
    )
    p.add_argument("--cache", type=Path, help="request cache (JSONL; default under the val-probing cache)")
    p.add_argument("--n-examples", type=int, required=True, help="examples in the whole mixture")
    p.add_argument(
        "--mixture",
        help="KIND=RATIO,... (default fine_grained=0.63,integration=0.17,short_context=0.09,general=0.11)",
    )
    p.add_argument("--general", type=Path, help="general instruction JSONL (OpenOrca / Alpaca schema)")
    p.add_argument(
        "--on-missing-general",
        choices=("renormalise", "error"),
        default="renormalise",
        help="without --general: drop its share and renormalise the rest, or stop",
    )
    p.add_argument("--min-context", type=int, default=4096, help="shortest long context (tokens)")
    p.add_argument("--max-context", type=int, default=32768, help="longest long context (tokens)")
    p.add_argument("--slack-tokens", type=int, default=256, help="how far a context may miss its target")
    p.add_argument("--segment-tokens", type=int, default=128, help="minimum tokens per segment")
    p.add_argument(
        "--probes",
        nargs="*",
        type=Path,
        default=[],
        help="VAL probe JSONL files (val-probing build): drop texts sharing a 10-gram with them",
    )
    p.add_argument(
        "--official",
        type=Path,
        help="folder with the official VaLProbing-32K JSONL splits, for the same filter",
    )
    p.add_argument(
        "--template",
        choices=("film", "chat"),
        default="film",
        help="prompt/completion in the FILM [INST] template, or chat messages for the model's template",
    )
    p.add_argument(
        "--placement",
        choices=PLACEMENTS,
        default="uniform",
        help="where long contexts put the needed segment(s): 'uniform' (IN2, anywhere; default) or "
        "'edges' (control: within the first or last 10%% of the context's filler segments)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="output folder (datasets save_to_disk)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(_train=_synthesize)


def _run_arguments(p: argparse.ArgumentParser) -> None:
    from val_probing.training import DEFAULT_RECIPE, configs, recipes

    p.add_argument(
        "--config", required=True, help=f"YAML config: a path or a shipped name ({', '.join(configs())})"
    )
    p.add_argument(
        "--recipe",
        default=DEFAULT_RECIPE,
        help=f"the recipe: a path or a shipped name ({', '.join(recipes())}; default {DEFAULT_RECIPE})",
    )
    p.add_argument(
        "--accelerate-config",
        help="launch through `accelerate launch` with this config (path or shipped name)",
    )
    p.add_argument("--accelerate-args", default="", help="more `accelerate launch` flags, quoted")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override settings of the config")
    p.set_defaults(_train=_run)


EXPERIMENT_EPILOG = """\
Stages (each finished one is kept and skipped on the next run; a changed setting re-runs what depends
on it): model, probes, corpus, data, train_uniform, train_edges, eval_base, eval_uniform, eval_edges,
compare. Results land in OUT/stages/compare/ (summary.md, results.json, curves.png); docs/in2-experiment.md.

examples:
  # the full run (95 min measured on a 2-core CPU), in the background; re-run the same line to continue
  nohup val-probing train experiment --config in2_placement_cpu --out runs/in2-placement \\
      > runs/in2-placement.log 2>&1 &
  val-probing train experiment --config in2_placement_cpu --out runs/in2-placement --status

  # the smoke version (tiny random Llama, a few steps, short contexts; about a minute)
  val-probing train experiment --config in2_placement_smoke --out runs/in2-smoke
"""


def _experiment_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        required=True,
        help="experiment YAML: a path or a shipped name (in2_placement_cpu, in2_placement_smoke)",
    )
    p.add_argument("--out", type=Path, required=True, help="experiment folder (created; reused to continue)")
    p.add_argument("--status", action="store_true", help="print which stages are done, run nothing")
    p.add_argument("--until", metavar="STAGE", help="stop after this stage")
    p.set_defaults(_train=_experiment)


def _experiment(args: argparse.Namespace) -> int:
    from val_probing.files import check_paths
    from val_probing.in2.experiment import load_experiment, run_experiment, stage_status

    check_paths(inputs={"--config": args.config})  # a FIFO is named as one (not "no such config file")
    config, path = load_experiment(args.config)
    check_paths(inputs={"--config": path}, output_folders={"--out": args.out})
    if args.status:
        for name, state in stage_status(config, args.out):
            print(f"{name:14s} {state}")
        return 0
    run = run_experiment(config, args.out, config_file=path, until=args.until)
    print(
        f"results: {run.stage_dir('compare')}/summary.md"
        if "compare" in run.done
        else f"stopped in {run.out}"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    return int(args._train(args))


# ----------------------------------------------------------------------------------------------------------


def _qa_cache(args: argparse.Namespace) -> Path | None:
    """The QA request cache of ``--generator openai`` (None for the local one, which takes none of its
    flags: given, they are refused rather than ignored)."""
    from val_probing.paths import cache_root

    if args.generator == "local":
        given = [f"--{name}" for name in OPENAI_ONLY if getattr(args, name) not in (None, False)]
        if given:
            raise ValProbingError(f"{', '.join(given)}: only read by --generator openai, not local")
        return None
    if not args.model:
        raise ValProbingError("--generator openai needs --model (the model name served at --endpoint)")
    return Path(args.cache or cache_root() / "in2-qa" / (re.sub(r"[^\w.-]+", "_", args.model) + ".jsonl"))


def _generator(args: argparse.Namespace) -> QAGenerator:
    from val_probing.files import check_output_file

    cache = _qa_cache(args)
    if cache is None:
        from val_probing.in2.qa import ExtractiveLocalGenerator

        return ExtractiveLocalGenerator(seed=args.seed)
    require_modules(("httpx", "tenacity"), "--generator openai")
    from val_probing.in2.qa import OpenAIChatGenerator, RequestCache

    check_output_file(cache, "QA cache")  # before any request: an unwritable cache is exit 2
    log.info("QA cache: %s", cache)
    return OpenAIChatGenerator(
        base_url=args.endpoint or os.environ.get("OPENAI_BASE_URL") or DEFAULT_ENDPOINT,
        model=args.model,
        cache=RequestCache(cache),
        api_key=os.environ.get(args.api_key_env),
        temperature=args.temperature,
        max_tokens=args.max_tokens,
        concurrency=args.concurrency,
        max_retries=args.max_retries,
        attempts=args.attempts,
        structured=args.structured,
    )


def _synthesize(args: argparse.Namespace) -> int:
    from val_probing.files import check_paths
    from val_probing.in2.assemble import LengthRange, MixtureRatios
    from val_probing.in2.dataset import SynthesisConfig, check_dataset_out, make_dataset
    from val_probing.tokenizer_names import load_counter

    inputs = {
        "--texts": args.texts,
        "--general": args.general,
        "--probes": args.probes,
        "--official": args.official,
    }
    check_paths(inputs=inputs, outputs={"--cache": _qa_cache(args)}, output_folders={"--out": args.out})
    check_dataset_out(args.out, overwrite=args.overwrite)
    require_modules(("datasets",), "train synthesize")
    generator = _generator(args)  # checks the QA cache path

    config = SynthesisConfig(
        n_examples=args.n_examples,
        ratios=MixtureRatios.parse(args.mixture) if args.mixture else MixtureRatios(),
        length=LengthRange(args.min_context, args.max_context, args.slack_tokens),
        segment_tokens=args.segment_tokens,
        on_missing_general=args.on_missing_general,
        seed=args.seed,
        placement=args.placement,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request otherwise
    synthesis, out = make_dataset(
        args.texts,
        args.out,
        counter=load_counter(args.tokenizer),
        generator=generator,
        config=config,
        template=args.template,
        general=args.general,
        probe_files=args.probes,
        official=args.official,
        overwrite=args.overwrite,
    )
    counts = ", ".join(f"{k} {v}" for k, v in synthesis.manifest["counts"]["produced"].items())
    rejections = synthesis.manifest["generation"]["rejections"] or "none"
    print(f"wrote {len(synthesis)} examples to {out} ({counts}); rejections: {rejections}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from val_probing.files import check_output_dir, check_paths
    from val_probing.in2.recipe_settings import load_config
    from val_probing.training import config_path, recipe_path

    named = {"--config": args.config, "--recipe": args.recipe, "--accelerate-config": args.accelerate_config}
    check_paths(inputs=named)  # a FIFO is named as one (not "no such config file")
    config = config_path(args.config)
    settings = load_config(config, args.overrides)  # fail fast, before any process starts
    check_paths(inputs={"dataset": settings.dataset}, output_folders={"output_dir": settings.output_dir})
    check_output_dir(settings.output_dir, "training output folder (output_dir)")
    require_modules(("torch", "transformers", "datasets", "accelerate", "trl"), "train run")
    accelerate_config = config_path(args.accelerate_config) if args.accelerate_config else None
    cmd = launch_command(
        config, args.overrides, recipe_path(args.recipe), accelerate_config, args.accelerate_args
    )
    log.info("running %s", shlex.join(cmd))
    return subprocess.run(cmd, check=False).returncode
