"""``val-probing demo``: the whole pipeline offline, on the embedded model, through lm-eval and vLLM."""

from __future__ import annotations

import argparse
import codecs
import io
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, cast

from val_probing.commands.args import positive_int
from val_probing.errors import ValProbingError
from val_probing.files import check_output_dir, check_paths, write_text_atomic, writing
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


def summary_markdown(rows: Sequence[TaskResult], *, title: str, wall_s: float | None = None) -> str:
    """The title, :func:`val_probing.report.curve_markdown` (one row per task: avg, 95% CI, gap and
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


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{seconds:.0f} s" if seconds < 90 else f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


_BUILDING = re.compile(r"Building contexts for (\S+) on rank")
_TQDM = re.compile(r"(\d+)%\|[^|]*\|\s*(\d+)/(\d+)")
_ENGINE = re.compile(r"Initializing (\S+) model")
PROGRESS_STEPS = (25, 50, 75, 100)
# The progress bars of the generation itself (vLLM's, then lm-eval's); others (vLLM's "Adding
# requests", "Rendering prompts") finish in a moment and say nothing about the generation.
GENERATION_BARS = ("Processed prompts", "Running generate_until requests")


@dataclass
class LogWatcher:
    """Turns the lines of lm-eval's and vLLM's output into a few status lines (pure: no I/O).

    ``feed(line, now)`` returns the status lines that ``line`` completes: the engine starting, each
    task's requests being built, the generation progress at 25/50/75/100 % (vLLM's "Processed
    prompts" and lm-eval's "Running generate_until requests" bars) and the results being saved.
    ``now`` is seconds since the run started.
    """

    generating_since: float | None = None
    _printed_steps: set[int] = field(default_factory=set)
    _seen: set[str] = field(default_factory=set)

    def _once(self, key: str, text: str) -> list[str]:
        if key in self._seen:
            return []
        self._seen.add(key)
        return [text]

    def feed(self, line: str, now: float) -> list[str]:
        engine = _ENGINE.search(line)
        if engine:
            return self._once("engine", f"  starting {engine.group(1)} (model load, ~1 min on CPU)")
        building = _BUILDING.search(line)
        if building:
            task = building.group(1)
            return self._once(f"task:{task}", f"  {task}: requests built ({_duration(now)})")
        if "Running generate_until requests" in line and self.generating_since is None:
            self.generating_since = now
            return self._once("generate", f"  engine ready after {_duration(now)}; generating")
        if "Saving results aggregated" in line:
            return self._once("saving", "  saving results and samples")
        bar = _TQDM.search(line) if line.lstrip().startswith(GENERATION_BARS) else None
        if bar and self.generating_since is not None:
            done, total = int(bar.group(2)), int(bar.group(3))
            pct = 100 * done // total if total else 0
            step = max((s for s in PROGRESS_STEPS if pct >= s), default=None)
            if step is not None and step not in self._printed_steps:
                self._printed_steps.update(s for s in PROGRESS_STEPS if s <= step)
                elapsed = _duration(now - self.generating_since)
                # the bar's own share: a bar that jumps past a step (93/96) is 96%, not the step crossed
                return [f"  generated {done}/{total} prompts ({pct}%, {elapsed})"]
        return []


def split_output(buffer: str) -> tuple[list[str], str]:
    """Complete lines (split at ``\\n`` and tqdm's ``\\r``) and the unfinished rest."""
    parts = re.split(r"[\r\n]", buffer)
    return [p for p in parts[:-1] if p.strip()], parts[-1]


def failure_tail(lines: Sequence[str], n: int = 25) -> list[str]:
    """The last ``n`` log lines worth showing: tqdm progress bars left out."""
    kept = [ln for ln in lines if not _TQDM.search(ln)]
    return kept[-n:]


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


def run_logged(cmd: Sequence[str], *, env: dict[str, str], log_path: Path, stream: bool, start: float) -> int:
    """Run ``cmd`` with its output in ``log_path`` (and on stdout with ``stream``), printing the
    :class:`LogWatcher` status lines; on failure the last lines of the log go to stderr."""
    watcher = LogWatcher()
    recent: deque[str] = deque(maxlen=200)
    with writing(log_path, "lm_eval log"):
        log_file = log_path.open("w", encoding="utf-8")
    with log_file:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        stdout = cast(io.BufferedReader, proc.stdout)  # a pipe with the default buffering
        pending = ""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # tqdm bars are multibyte
        try:
            for chunk in iter(lambda: stdout.read1(65536), b""):
                text = decoder.decode(chunk)
                with writing(log_path, "lm_eval log"):
                    log_file.write(text)
                    log_file.flush()
                if stream:
                    sys.stdout.write(text)
                    sys.stdout.flush()
                lines, pending = split_output(pending + text)
                for line in lines:
                    recent.append(line)
                    if not stream:
                        _print_all(watcher.feed(line, time.monotonic() - start), sys.stdout)
        except BaseException:  # a failed write or Ctrl-C: stop lm_eval rather than leave it orphaned
            proc.kill()
            proc.wait()
            raise
        code = proc.wait()
    if code != 0 and not stream:
        if pending.strip():
            recent.append(pending)
        print(f"lm_eval failed (exit code {code}); the last lines of {log_path}:", file=sys.stderr)
        _print_all([f"  {ln}" for ln in failure_tail(list(recent))], sys.stderr)
    return code


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
        examples, digest = cached_probes(spec, progress=False)
        tokens = sorted({ex.context_tokens for ex in examples})
        print(
            f"  val_{family}: {len(examples)} questions, context tokens {min(tokens)}-{max(tokens)}, "
            f"probe hash {digest}"
        )


def _new_results(out: Path, before: set[Path]) -> list[Path]:
    return sorted(p for p in out.rglob("results_*.json") if p not in before)


def run_files(results_path: Path) -> list[Path]:
    """One lm-eval run's files: its ``results_<stamp>.json`` and the ``samples_*_<stamp>.jsonl`` beside it."""
    stamp = results_path.stem.removeprefix("results_")
    return [results_path, *sorted(results_path.parent.glob(f"samples_*_{stamp}.jsonl"))]


def move_run(produced: Sequence[Path], target: Path) -> list[Path]:
    """Move the runs' files into ``target`` (lm-eval names its folder after the model's whole path,
    ``__root__.cache__...__SmolLM2-135M-Instruct``); the results files at their new place. An
    emptied folder is removed."""
    moved: list[Path] = []
    with writing(target, "results folder"):
        target.mkdir(parents=True, exist_ok=True)
        for results_path in produced:
            source = results_path.parent
            if source.resolve() == target.resolve():
                moved.append(results_path)
                continue
            for path in run_files(results_path):
                path.replace(target / path.name)
            moved.append(target / results_path.name)
            if not any(source.iterdir()):
                source.rmdir()
    return moved


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
    metadata = probe_metadata(
        context_length=args.context_length,
        sets=args.sets,
        positions=args.positions,
        buckets=args.buckets,
        tokenizer=tokenizer,
    )
    with writing(out, "output folder"):
        out.mkdir(parents=True, exist_ok=True)
    cmd = lm_eval_command(
        model_args=model_args, tasks_path=tasks_path(), metadata=metadata, out=out, limit=args.limit
    )
    log_path = out / "lm_eval.log"
    _stage(3, n, f"lm_eval --model vllm ({'CPU' if cpu else 'GPU'}), prefix caching on; log: {log_path}")
    before = set(out.rglob("results_*.json"))
    env = serving_env(os.environ, cache_dir=serving_cache_dir(), cpu=cpu)
    code = run_logged(cmd, env=env, log_path=log_path, stream=stream, start=start)
    if code != 0:
        raise ValProbingError(f"lm_eval failed with exit code {code}; full log: {log_path}")
    produced = _new_results(out, before)
    if not produced:
        raise ValProbingError(f"lm_eval finished but wrote no results_*.json under {out} (log: {log_path})")
    produced = move_run(produced, out / (model_dir.resolve().name or "model"))

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
