"""``val-probing demo``: the whole pipeline offline, on the embedded model, through lm-eval and vLLM."""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from val_probing.errors import ValProbingError
from val_probing.records import FAMILIES, write_text_atomic

if TYPE_CHECKING:
    from val_probing.results import TaskResult

log = logging.getLogger(__name__)

HELP = "run all three VAL tasks on the embedded SmolLM2-135M through lm-eval + vLLM, offline, and summarize"

EPILOG = """\
Steps: convert the embedded model once (cached), build the probes offline (embedded pool, the
model's tokenizer), run val_document, val_code and val_database with
`lm_eval --model vllm --apply_chat_template --log_samples` (prefix caching on: every question of a
set shares its context), then print avg, gap and per-bucket scores and write them as summary.md
next to lm-eval's results. About 5 minutes on 2 CPU cores with the defaults.

examples:
  val-probing demo                                   # ./results/demo, 2K-token contexts
  val-probing demo --out runs/demo-4k --context-length 4096 --sets 4 --positions 32
  val-probing demo --model ./my-model                # any local HF folder with a chat template

The same run by hand (what the demo executes; see docs/serving.md for the settings):
  lm_eval --model vllm \\
      --model_args pretrained=DIR,max_model_len=3072,dtype=float32,enforce_eager=True \\
      --tasks valprobing --include_path $(val-probing tasks-path) --apply_chat_template \\
      --metadata '{"source": "built", "context_length": 2048, "sets": 2, "positions": 16, \\
                   "tokenizer": "embedded", "pool": "embedded", "n_buckets": 8}' \\
      --batch_size auto --log_samples --output_path results/demo
"""

GROUP = "valprobing"
# Room for the instruction, the chat template and 128 new tokens on top of the context.
PROMPT_HEADROOM = 1024


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=Path("results/demo"), help="output folder (default: %(default)s)"
    )
    parser.add_argument(
        "--context-length", type=_positive, default=2048, help="context tokens per set (default: %(default)s)"
    )
    parser.add_argument("--sets", type=_positive, default=2, help="contexts per task (default: %(default)s)")
    parser.add_argument(
        "--positions", type=_positive, default=16, help="needle positions per set (default: %(default)s)"
    )
    parser.add_argument(
        "--buckets",
        type=_positive,
        default=8,
        help="position buckets; keep positions a multiple so none is empty (default: %(default)s)",
    )
    parser.add_argument(
        "--model", type=Path, default=None, help="a local HF model folder (default: the embedded SmolLM2)"
    )
    parser.add_argument("--limit", type=_positive, default=None, help=argparse.SUPPRESS)


# ---------------------------------------------------------------- pure parts


def probe_metadata(
    *, context_length: int, sets: int, positions: int, buckets: int, tokenizer: str
) -> dict[str, object]:
    """The tasks' ``--metadata``: build probes offline from the embedded pool."""
    if buckets > positions:
        raise ValProbingError(
            f"--buckets {buckets} is more than --positions {positions}: some would be empty"
        )
    return {
        "source": "built",
        "context_length": context_length,
        "sets": sets,
        "positions": positions,
        "tokenizer": tokenizer,
        "pool": "embedded",
        "n_buckets": buckets,
    }


def lm_eval_command(
    *,
    model_args: str,
    tasks_path: Path,
    metadata: dict[str, object],
    out: Path,
    limit: int | None = None,
) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "lm_eval",
        "--model",
        "vllm",
        "--model_args",
        model_args,
        "--tasks",
        GROUP,
        "--include_path",
        str(tasks_path),
        "--metadata",
        json.dumps(metadata),
        "--apply_chat_template",
        "--batch_size",
        "auto",
        "--log_samples",
        "--output_path",
        str(out),
    ]
    return cmd + (["--limit", str(limit)] if limit else [])


def _fmt(value: float) -> str:
    return "n/a" if value != value else f"{value:.1f}"  # NaN != NaN


def summary_markdown(rows: Sequence[TaskResult], *, title: str, wall_s: float | None = None) -> str:
    """A Markdown table: one row per task with avg (95% CI), gap and every bucket mean (all x100)."""
    if not rows:
        raise ValProbingError("no task results to summarize")
    n_buckets = max(len(r.summary.buckets) for r in rows)
    head = ["task", "avg", "95% CI", "gap", *(f"b{i:02d}" for i in range(n_buckets))]
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        by_index = {b.index: b.mean for b in r.summary.buckets}
        lo, hi = r.summary.avg_ci
        cells = [
            f"val_{r.task}",
            _fmt(r.summary.avg),
            f"{_fmt(lo)}-{_fmt(hi)}",
            _fmt(r.summary.gap),
            *(_fmt(by_index[i]) if i in by_index else "-" for i in range(n_buckets)),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if len(rows) > 1:
        mean_avg = sum(r.summary.avg for r in rows) / len(rows)
        mean_gap = sum(r.summary.gap for r in rows) / len(rows)
        lines.append(f"| all | {_fmt(mean_avg)} | | {_fmt(mean_gap)} |" + " |" * n_buckets)
    lines += [
        "",
        "Reference metric x100; buckets run from the start of the context (b00) to its end. "
        "avg = mean of bucket means, gap = max - min bucket mean, all = mean over the tasks "
        "(arXiv 2404.16811).",
    ]
    first = rows[0]
    lines.append(
        f"Model: {first.model}; {first.summary.n_sets} set(s), {first.summary.n_samples} questions per task."
    )
    if wall_s is not None:
        lines.append(f"Wall time: {wall_s / 60:.1f} min.")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- I/O


def _stage(i: int, n: int, text: str) -> None:
    print(f"[demo {i}/{n}] {text}", flush=True)


def _check_stack() -> None:
    import importlib.util

    missing = [name for name in ("lm_eval", "vllm") if importlib.util.find_spec(name) is None]
    if missing:
        raise ValProbingError(
            f"the demo needs {' and '.join(missing)}: pip install 'val-probing[cpu]' (CPU, see README) "
            "or 'val-probing[vllm]' (GPU)"
        )


def tasks_path() -> Path:
    from val_probing.lm_eval_tasks import TASKS_DIR

    path = Path(TASKS_DIR)
    if not any(path.glob("*.yaml")):
        raise ValProbingError(f"the lm-eval task files are missing from {path}: reinstall val-probing")
    return path


def _build_probes(args: argparse.Namespace, tokenizer: str) -> None:
    from val_probing.build import ProbeSpec, cached_probes

    for family in FAMILIES:
        spec = ProbeSpec(
            family=family,
            length=args.context_length,
            tokenizer=tokenizer,
            sets=args.sets,
            positions=args.positions,
        )
        examples, digest = cached_probes(spec, progress=True)
        tokens = sorted({ex.context_tokens for ex in examples})
        print(f"  val_{family}: {len(examples)} questions, context tokens {tokens}, probe hash {digest}")


def _new_results(out: Path, before: set[Path]) -> list[Path]:
    return sorted(p for p in out.rglob("results_*.json") if p not in before)


def run(args: argparse.Namespace) -> int:
    from val_probing.embedded import embedded_model_dir
    from val_probing.results import load_results
    from val_probing.serving import serving_cache_dir, serving_env, vllm_is_cpu_build, vllm_model_args

    _check_stack()
    start = time.monotonic()
    n = 4
    _stage(1, n, "model")
    model_dir = args.model or embedded_model_dir()
    if not (model_dir / "config.json").is_file():
        raise ValProbingError(f"{model_dir}: not a Hugging Face model folder (no config.json)")
    tokenizer = "embedded" if args.model is None else str(model_dir)
    print(f"  {model_dir}")

    _stage(2, n, f"probes: {args.sets} set(s) x {args.positions} positions at {args.context_length} tokens")
    _build_probes(args, tokenizer)

    cpu = vllm_is_cpu_build()
    model_args = vllm_model_args(
        model_dir, max_model_len=args.context_length + PROMPT_HEADROOM, cpu=cpu, prefix_caching=True
    )
    metadata = probe_metadata(
        context_length=args.context_length,
        sets=args.sets,
        positions=args.positions,
        buckets=args.buckets,
        tokenizer=tokenizer,
    )
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    cmd = lm_eval_command(
        model_args=model_args, tasks_path=tasks_path(), metadata=metadata, out=out, limit=args.limit
    )
    _stage(3, n, f"lm_eval --model vllm ({'CPU' if cpu else 'GPU'}), prefix caching on; output {out}")
    print("  " + " ".join(cmd[2:]), flush=True)
    before = set(out.rglob("results_*.json"))
    env = serving_env(os.environ, cache_dir=serving_cache_dir(), cpu=cpu)
    code = subprocess.run(cmd, env=env, check=False).returncode
    if code != 0:
        raise ValProbingError(f"lm_eval failed with exit code {code} (its output is above)")
    produced = _new_results(out, before)
    if not produced:
        raise ValProbingError(f"lm_eval finished but wrote no results_*.json under {out}")

    _stage(4, n, "summary")
    results = load_results(produced)
    wall = time.monotonic() - start
    table = summary_markdown(
        results,
        title=f"VAL probing demo: {args.context_length}-token contexts",
        wall_s=wall,
    )
    summary_path = produced[-1].parent / "summary.md"
    write_text_atomic(summary_path, table)
    print()
    print(table)
    print(f"wrote {summary_path}; lm-eval results and samples in {produced[-1].parent}")
    return 0
