"""``val-probing demo``: the whole pipeline offline, on the embedded model, through lm-eval and vLLM."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from val_probing.adapter.options import ValOptions
from val_probing.commands.args import positive_int
from val_probing.errors import ValProbingError
from val_probing.evaluate import EvalRequest, evaluate, move_run
from val_probing.files import check_output_dir, check_paths, write_text_atomic, writing
from val_probing.progress import LogWatcher
from val_probing.records import FAMILIES
from val_probing.tables import curve_markdown, fmt_number

if TYPE_CHECKING:
    from val_probing.results import TaskResult

log = logging.getLogger(__name__)

HELP = "run all three VAL tasks on the embedded SmolLM2-135M through lm-eval + vLLM, offline, and summarize"

EPILOG = """\
Steps: convert the embedded model once (cached), build the probes offline (embedded pool, the
model's tokenizer), run val_document, val_code and val_database with
`lm_eval --model vllm --apply_chat_template --log_samples` (prefix caching on: every question of a
set shares its context), then print avg, gap and per-bucket scores, write them as summary.md, the
position curves as position_curves.png and the interactive page report.html (one offline file)
next to lm-eval's results in OUT/<model>/. About 4-5 minutes on 2 CPU
cores with the defaults.

Output is one status line per stage and the generation progress; everything vLLM and lm-eval
print goes to OUT/lm_eval.log (--verbose streams it too). When lm_eval fails, the last lines of
that log are printed with its path.

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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=Path("results/demo"), help="output folder (default: %(default)s)"
    )
    parser.add_argument(
        "--context-length",
        type=positive_int,
        default=2048,
        help="context tokens per set (default: %(default)s)",
    )
    parser.add_argument(
        "--sets", type=positive_int, default=2, help="contexts per task (default: %(default)s)"
    )
    parser.add_argument(
        "--positions", type=positive_int, default=16, help="needle positions per set (default: %(default)s)"
    )
    parser.add_argument(
        "--buckets",
        type=positive_int,
        default=8,
        help="position buckets; keep positions a multiple so none is empty (default: %(default)s)",
    )
    parser.add_argument(
        "--model", type=Path, default=None, help="a local HF model folder (default: the embedded SmolLM2)"
    )
    parser.add_argument(
        "--verbose",
        dest="stream_log",
        action="store_true",
        help="also stream the vLLM and lm-eval output (always written to OUT/lm_eval.log)",
    )
    parser.add_argument("--limit", type=positive_int, default=None, help=argparse.SUPPRESS)


# ---------------------------------------------------------------- pure parts


def probe_options(
    *, context_length: int, sets: int, positions: int, buckets: int, tokenizer: str
) -> ValOptions:
    """The tasks' probe settings: built offline from the embedded pool, ``buckets`` position buckets."""
    if buckets > positions:
        raise ValProbingError(
            f"--buckets {buckets} is more than --positions {positions}: some would be empty"
        )
    return ValOptions(
        "document",  # not written to the metadata: the bucket count is given, the same for every task
        context_lengths=(context_length,),
        sets=sets,
        positions=positions,
        tokenizer=tokenizer,
        n_buckets=buckets,
        n_buckets_explicit=True,
    )


def demo_request(*, model_args: str, options: ValOptions, out: Path, limit: int | None = None) -> EvalRequest:
    """The demo's lm-eval run: vLLM, the ``valprobing`` group, the chat template, samples logged."""
    return EvalRequest(
        model="vllm",
        model_args=model_args,
        tasks=(GROUP,),
        metadata=options,
        output_path=out,
        batch_size="auto",
        log_samples=True,
        apply_chat_template=True,
        limit=limit,
    )


def summary_markdown(rows: Sequence[TaskResult], *, title: str, wall_s: float | None = None) -> str:
    """The title, :func:`val_probing.tables.curve_markdown` (one row per task: avg, 95% CI, gap and
    every bucket mean, x100) and what the numbers are."""
    if not rows:
        raise ValProbingError("no task results to summarize")
    lines = [f"# {title}", "", *curve_markdown(rows).splitlines()]
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


def task_line(result: TaskResult) -> str:
    """One line per task after the run: avg with its CI, gap, questions."""
    s = result.summary
    lo, hi = s.avg_ci
    return (
        f"  val_{result.task}: avg {fmt_number(s.avg)} (95% CI {fmt_number(lo)}-{fmt_number(hi)}), "
        f"gap {fmt_number(s.gap)}, "
        f"{s.n_samples} questions"
    )


# ---------------------------------------------------------------- I/O


def _stage(i: int, n: int, text: str) -> None:
    print(f"[demo {i}/{n}] {text}", flush=True)


def _quiet_progress_bars() -> None:
    """No transformers progress bars in this process (the lm_eval subprocess keeps its own)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # transformers' helper has no hints


def _print_all(lines: Sequence[str], stream: IO[str]) -> None:
    for line in lines:
        print(line, file=stream, flush=True)


def _check_stack() -> None:
    import importlib.util

    missing = [name for name in ("lm_eval", "vllm") if importlib.util.find_spec(name) is None]
    if missing:
        raise ValProbingError(
            f"the demo needs {' and '.join(missing)}: pip install 'val-probing[cpu]' (CPU, see README) "
            "or 'val-probing[vllm]' (GPU)"
        )


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
        examples, digest = cached_probes(spec, progress=False)
        tokens = sorted({ex.context_tokens for ex in examples})
        print(
            f"  val_{family}: {len(examples)} questions, context tokens {min(tokens)}-{max(tokens)}, "
            f"probe hash {digest}"
        )


def run(args: argparse.Namespace) -> int:
    from val_probing.embedded import embedded_model_dir
    from val_probing.plots import plot_position_curves, save_figure
    from val_probing.results import DEFAULT_N_BOOT, load_results
    from val_probing.serving import serving_cache_dir, serving_env, vllm_is_cpu_build, vllm_model_args
    from val_probing.webpage import write_html

    check_paths(inputs={"--model": args.model}, output_folders={"--out": args.out})
    out = check_output_dir(args.out).resolve()
    _check_stack()
    start = time.monotonic()
    n = 5
    stream = bool(args.stream_log or getattr(args, "verbose", False))
    _stage(1, n, "model")
    if args.model is None and not stream:
        _quiet_progress_bars()  # converting the embedded model once: one log line, no bars
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
    options = probe_options(
        context_length=args.context_length,
        sets=args.sets,
        positions=args.positions,
        buckets=args.buckets,
        tokenizer=tokenizer,
    )
    with writing(out, "output folder"):
        out.mkdir(parents=True, exist_ok=True)
    request = demo_request(model_args=model_args, options=options, out=out, limit=args.limit)
    log_path = out / "lm_eval.log"
    _stage(3, n, f"lm_eval --model vllm ({'CPU' if cpu else 'GPU'}), prefix caching on; log: {log_path}")
    watcher = LogWatcher()

    def status(line: str) -> None:
        _print_all(watcher.feed(line, time.monotonic() - start), sys.stdout)

    env = serving_env(os.environ, cache_dir=serving_cache_dir(), cpu=cpu)
    run = evaluate(request, log_path=log_path, env=env, on_line=None if stream else status, echo=stream)
    if not run.results:
        raise ValProbingError(f"lm_eval finished but wrote no results_*.json under {out} (log: {log_path})")
    produced = move_run(run.results, out / (model_dir.resolve().name or "model"))

    _stage(4, n, "scores (reference metric, 95% bootstrap CIs)")
    results = load_results(produced, n_boot=DEFAULT_N_BOOT)
    for r in results:
        print(task_line(r))
    run_dir = produced[-1].parent
    _stage(5, n, "summary, figure and HTML report")
    (figure,) = save_figure(plot_position_curves(results), run_dir / "position_curves", ["png"])
    page = write_html(produced, run_dir / "report.html")
    wall = time.monotonic() - start
    table = summary_markdown(
        results,
        title=f"VAL probing demo: {args.context_length}-token contexts",
        wall_s=wall,
    )
    summary_path = run_dir / "summary.md"
    write_text_atomic(summary_path, table)
    print()
    print(table)
    print(f"summary: {summary_path}")
    print(f"figure:  {figure}")
    print(f"report:  {page} (open it in a browser; it works offline)")
    print(f"lm-eval results and samples: {run_dir}")
    print(f"log:     {log_path}")
    return 0
