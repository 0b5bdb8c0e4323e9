"""Evaluation runs: lm-eval on the VAL tasks, as one request, run in this process or in a child.

:class:`EvalRequest` says what to evaluate (the backend and its ``model_args``, the tasks, the probe
settings as a :class:`~val_probing.adapter.options.ValOptions` or a ``--metadata`` mapping, where the
results go and lm-eval's generation options); :func:`lm_eval_argv` is the one place that turns it into
lm-eval's command line. :func:`evaluate` runs it and returns an :class:`EvalRun` (the command, the
log, the ``results_*.json`` files it wrote); :func:`run_lm_eval` runs any lm-eval argv the same way
(``val-probing eval`` forwards its user's).

lm-eval runs through its own command-line entry (``lm_eval.__main__.cli_evaluate``), not its Python
API: the CLI merges ``--model_args`` into the tasks' metadata (the tokenizer of built probes comes
from ``pretrained``), builds the task manager with the include path, and writes the results and
samples files that :mod:`val_probing.results` reads; ``simple_evaluate`` returns a dict and leaves all
three to the caller. In a child process (vLLM wants one) the output goes to a log file, with a
timeout and environment additions; in this process, stdout, stderr and lm-eval's log handlers are
redirected into the log for the run. Either way the output can be fed line by line to a callback
(:class:`val_probing.progress.LogWatcher` turns it into status lines). A failed run raises
:class:`EvalFailed` (the exit code, the log, its last lines), a run past its timeout
:class:`EvalTimeout`.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, NamedTuple, cast

from val_probing.adapter.options import ValOptions
from val_probing.errors import ValProbingError
from val_probing.files import writing
from val_probing.progress import failure_tail, split_output

log = logging.getLogger(__name__)

# lm-eval's subcommands; an argv that starts with none of them is a ``run``.
SUBCOMMANDS = ("run", "ls", "validate")
# The lines of a run kept for a failure's message (the log file has all of them).
_RECENT = 200

LineCallback = Callable[[str], None]


class EvalError(ValProbingError):
    """An evaluation run that cannot start or did not finish."""


class EvalArgumentError(EvalError):
    """Arguments that cannot go to lm-eval as they are."""


class EvalFailed(EvalError):
    """lm-eval exited with a non-zero status: the code, the log file and its last lines."""

    def __init__(
        self,
        code: int,
        log_path: Path | None,
        tail: Sequence[str] = (),
        reason: str | None = None,
    ) -> None:
        self.code = code
        self.log_path = log_path
        self.tail = tuple(tail)
        self.reason = reason  # a VAL error raised inside an in-process run
        where = f"; log: {log_path}" if log_path is not None else ""
        if reason:  # the VAL error says what is wrong: the log after the code, the message last
            text = f"lm_eval failed (exit code {code}{where}): {reason}"
        elif log_path is not None and self.tail:
            text = f"lm_eval failed (exit code {code}); the last lines of {log_path}:\n"
            text += "\n".join(f"  {line}" for line in self.tail)
        else:
            text = f"lm_eval failed (exit code {code}){where}"
        super().__init__(text)


class EvalTimeout(EvalError):
    """lm-eval ran past its timeout and was stopped."""

    def __init__(self, timeout_s: float, log_path: Path | None, tail: Sequence[str] = ()) -> None:
        self.timeout_s = timeout_s
        self.log_path = log_path
        self.tail = tuple(tail)
        text = f"lm_eval ran past {timeout_s:g} s and was stopped"
        if log_path is not None:
            text += f"; the last lines of {log_path}:" if self.tail else f"; log: {log_path}"
            text += "".join(f"\n  {line}" for line in self.tail)
        super().__init__(text)


# ---------------------------------------------------------------- the request and its argv


def _pairs(name: str, value: str | Mapping[str, object]) -> str:
    """lm-eval's ``key=value,key=value`` form of ``value`` (a string passes through)."""
    if isinstance(value, str):
        return value
    pairs = []
    for key, item in value.items():
        text = str(item)
        if "," in text or "=" in text or "," in key or "=" in key:
            raise EvalArgumentError(
                f"{name} {key}: lm-eval's key=value list cannot hold ',' or '=' ({text!r})"
            )
        pairs.append(f"{key}={text}")
    return ",".join(pairs)


@dataclass(frozen=True, slots=True)
class EvalRequest:
    """One lm-eval run of VAL tasks.

    ``model`` is lm-eval's backend (``vllm``, ``hf``, ``local-completions``, ...), ``model_args`` its
    ``--model_args`` (``key=value,...`` or a mapping), ``tasks`` task or group names (or a glob such
    as ``val_*``). ``metadata`` is ``--metadata``: a :class:`ValOptions` (written by
    :meth:`ValOptions.to_metadata`, the one writer) or a mapping given as it is. ``gen_kwargs``
    (``key=value,...`` or a mapping, e.g. ``{"max_gen_toks": 64}``) updates the tasks' generation
    settings. ``extra_args`` go last, for lm-eval options without a field here.
    """

    model: str
    tasks: tuple[str, ...]
    model_args: str | Mapping[str, object] = ""
    metadata: ValOptions | Mapping[str, object] | None = None
    output_path: Path | None = None
    batch_size: int | str | None = None
    log_samples: bool = False
    apply_chat_template: bool = False
    limit: int | float | None = None
    gen_kwargs: str | Mapping[str, object] = ""
    device: str | None = None
    extra_args: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        tasks = (self.tasks,) if isinstance(self.tasks, str) else tuple(self.tasks)
        object.__setattr__(self, "tasks", tasks)
        object.__setattr__(self, "extra_args", tuple(self.extra_args))
        if not self.model:
            raise EvalArgumentError("model: name an lm-eval backend (vllm, hf, local-completions, ...)")
        if not tasks or not all(tasks):
            raise EvalArgumentError(f"tasks: expected task names, got {list(tasks)}")
        if self.limit is not None and not self.limit > 0:
            raise EvalArgumentError(f"limit: expected a positive number, got {self.limit!r}")

    def metadata_dict(self) -> dict[str, object] | None:
        """What ``--metadata`` carries (None: no ``--metadata``)."""
        if self.metadata is None:
            return None
        if isinstance(self.metadata, ValOptions):
            return self.metadata.to_metadata()
        return dict(self.metadata)


def forwarded_argv(argv: Sequence[str], *, include_path: str | Path | None) -> list[str]:
    """lm-eval's argv for a user's ``argv``: the subcommand (``run`` unless given), ``--include_path``
    when ``include_path`` is given (the tasks are not registered in lm-eval's folder), then ``argv``.

    With ``include_path`` None a ``--include_path`` of the user's goes through untouched; with one, it
    is refused (lm-eval 0.4 takes a single folder). ``run`` with nothing else is ``run --help``.
    """
    args = list(argv)
    if include_path is not None and any(
        a == "--include_path" or a.startswith("--include_path=") for a in args
    ):
        raise EvalArgumentError(
            "val-probing eval adds --include_path itself (lm-eval 0.4 takes one folder); run "
            "`val-probing register` once, then your own --include_path works beside the VAL tasks"
        )
    command = args.pop(0) if args and args[0] in SUBCOMMANDS else "run"
    if command == "run" and not args:
        args = ["--help"]
    include = ["--include_path", str(include_path)] if include_path is not None else []
    return [command, *include, *args]


def lm_eval_argv(request: EvalRequest, *, include_path: str | Path | None) -> list[str]:
    """lm-eval's argv for ``request`` (after the program name): ``run``, ``--include_path`` when
    ``include_path`` is given (see :func:`find_tasks`), then the request's options."""
    args = ["--model", request.model]
    model_args = _pairs("model_args", request.model_args)
    if model_args:
        args += ["--model_args", model_args]
    args += ["--tasks", ",".join(request.tasks)]
    metadata = request.metadata_dict()
    if metadata is not None:
        args += ["--metadata", json.dumps(metadata)]
    if request.apply_chat_template:
        args.append("--apply_chat_template")
    gen_kwargs = _pairs("gen_kwargs", request.gen_kwargs)
    if gen_kwargs:
        args += ["--gen_kwargs", gen_kwargs]
    if request.batch_size is not None:
        args += ["--batch_size", str(request.batch_size)]
    if request.device is not None:
        args += ["--device", request.device]
    if request.limit is not None:
        args += ["--limit", str(request.limit)]
    if request.log_samples:
        args.append("--log_samples")
    if request.output_path is not None:
        args += ["--output_path", str(request.output_path)]
    return forwarded_argv(["run", *args, *request.extra_args], include_path=include_path)


class TasksLookup(NamedTuple):
    """How lm-eval finds the VAL tasks: ``include_path`` None when they are registered in its own
    folder, else the task folder; ``note`` says why they are not registered (None when they are)."""

    include_path: str | None
    note: str | None


def find_tasks() -> TasksLookup:
    """Whether lm-eval needs ``--include_path`` for the VAL tasks (the registration check)."""
    from val_probing.lm_eval_tasks import TASKS_DIR
    from val_probing.registration import lm_eval_tasks_folder, registration_problem

    note = registration_problem(lm_eval_tasks_folder())
    return TasksLookup(None if note is None else TASKS_DIR, note)


# ---------------------------------------------------------------- running it


@dataclass(frozen=True)
class EvalRun:
    """A finished run: lm-eval's argv, the command that ran (``python -m lm_eval ...`` for a child,
    ``lm_eval ...`` in this process), the log, the ``results_*.json`` files it wrote, the wall time."""

    argv: tuple[str, ...]
    command: tuple[str, ...]
    log_path: Path | None
    results: tuple[Path, ...]
    wall_s: float


def evaluate(
    request: EvalRequest,
    *,
    log_path: Path | None = None,
    in_process: bool = False,
    timeout_s: float | None = None,
    env: Mapping[str, str] | None = None,
    on_line: LineCallback | None = None,
    echo: bool = False,
) -> EvalRun:
    """Run ``request``; what :func:`run_lm_eval` says about the options. ``--include_path`` is added
    when the VAL tasks are not registered. The run's ``results_*.json`` (found under ``output_path``)
    are in the returned :class:`EvalRun`."""
    argv = lm_eval_argv(request, include_path=find_tasks().include_path)
    out = request.output_path
    before = _results_under(out) if out is not None else set()
    start = time.monotonic()
    command = run_lm_eval(
        argv,
        log_path=log_path,
        in_process=in_process,
        timeout_s=timeout_s,
        env=env,
        on_line=on_line,
        echo=echo,
    )
    produced = sorted(_results_under(out) - before) if out is not None else []
    return EvalRun(tuple(argv), tuple(command), log_path, tuple(produced), time.monotonic() - start)


def run_lm_eval(
    argv: Sequence[str],
    *,
    log_path: Path | None = None,
    in_process: bool = False,
    timeout_s: float | None = None,
    env: Mapping[str, str] | None = None,
    on_line: LineCallback | None = None,
    echo: bool = False,
) -> list[str]:
    """Run lm-eval with ``argv`` (after the program name) and return the command that ran.

    ``in_process`` runs lm-eval's CLI entry here (sys.argv set for it), else ``python -m lm_eval`` in
    a child process. ``log_path`` receives all output (stdout and stderr, lm-eval's log lines); without
    one the output goes to this process's stdout and stderr. ``echo`` also copies a logged run's
    output to stdout; ``on_line`` is called with every line of it (tqdm's ``\\r`` updates split).
    ``env`` is added to the environment (in this process: for the run, then restored).
    ``timeout_s`` stops a child past it (:class:`EvalTimeout`); an in-process run cannot be stopped,
    so a timeout there is refused (and ``on_line`` and ``echo`` need a ``log_path``). A non-zero exit
    is :class:`EvalFailed`; a VAL error raised in this process is one too (exit code 2, its message
    in ``reason``).
    """
    if in_process:
        if timeout_s is not None:
            raise ValueError("timeout_s: an in-process lm-eval run cannot be stopped; run it in a child")
        if log_path is None and (on_line is not None or echo):
            raise ValueError("on_line, echo: an in-process run's output is only captured into a log_path")
        _run_in_process(list(argv), log_path=log_path, env=env or {}, on_line=on_line, echo=echo)
        return ["lm_eval", *argv]
    cmd = [sys.executable, "-m", "lm_eval", *argv]
    run_child(cmd, log_path=log_path, timeout_s=timeout_s, env=env or {}, on_line=on_line, echo=echo)
    return cmd


def run_child(
    cmd: Sequence[str],
    *,
    log_path: Path | None = None,
    timeout_s: float | None = None,
    env: Mapping[str, str] | None = None,
    on_line: LineCallback | None = None,
    echo: bool = False,
) -> None:
    """Run ``cmd`` with stdout and stderr into ``log_path`` (and to stdout with ``echo``, or without a
    log), each line to ``on_line``; :class:`EvalFailed` on a non-zero exit, :class:`EvalTimeout` when
    it runs past ``timeout_s`` (then it is killed). Ctrl-C or a failed write stops the child too."""
    log.info("running %s%s", " ".join(cmd), f" (log: {log_path})" if log_path else "")
    recent: deque[str] = deque(maxlen=_RECENT)
    to_stdout = echo or log_path is None
    with contextlib.ExitStack() as stack:
        log_file: IO[str] | None = None
        if log_path is not None:
            with writing(log_path, "lm_eval log"):
                log_file = stack.enter_context(log_path.open("w", encoding="utf-8"))
        # its own process group: a timeout or Ctrl-C stops what it started too (vLLM's engine core)
        proc = subprocess.Popen(
            list(cmd),
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        timed_out = threading.Event()

        def stop() -> None:
            timed_out.set()
            _kill(proc)

        timer = threading.Timer(timeout_s, stop) if timeout_s is not None else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        stdout = cast(io.BufferedReader, proc.stdout)  # a pipe with the default buffering
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # tqdm bars are multibyte
        pending = ""
        try:
            for chunk in iter(lambda: stdout.read1(65536), b""):
                text = decoder.decode(chunk)
                if log_file is not None and log_path is not None:
                    with writing(log_path, "lm_eval log"):
                        log_file.write(text)
                        log_file.flush()
                if to_stdout:
                    sys.stdout.write(text)
                    sys.stdout.flush()
                lines, pending = split_output(pending + text)
                for line in lines:
                    recent.append(line)
                    if on_line is not None:
                        on_line(line)
        except BaseException:  # a failed write, a callback's error or Ctrl-C: stop the child with us
            _kill(proc)
            proc.wait()
            raise
        finally:
            if timer is not None:
                timer.cancel()
        code = proc.wait()
    if pending.strip():
        recent.append(pending)
        if on_line is not None:
            on_line(pending)
    if timed_out.is_set() and code != 0:
        raise EvalTimeout(cast(float, timeout_s), log_path, failure_tail(list(recent)))
    if code != 0:
        raise EvalFailed(code, log_path, failure_tail(list(recent)))


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill the child and its process group (what it started)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


class _Tee(io.TextIOBase):
    """A text stream for an in-process run: into the log (and stdout with ``echo``), lines kept and
    fed to ``on_line``. Written to after the run (a handler somebody kept), it goes to ``fallback``."""

    def __init__(
        self, log_file: IO[str], log_path: Path, echo: IO[str] | None, on_line: LineCallback | None
    ) -> None:
        self.log_file, self.log_path, self.echo, self.on_line = log_file, log_path, echo, on_line
        self.recent: deque[str] = deque(maxlen=_RECENT)
        self.pending = ""
        self.fallback: IO[str] | None = None

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self.fallback is not None:
            return self.fallback.write(text)
        with writing(self.log_path, "lm_eval log"):
            self.log_file.write(text)
        if self.echo is not None:
            self.echo.write(text)
        lines, self.pending = split_output(self.pending + text)
        for line in lines:
            self.recent.append(line)
            if self.on_line is not None:
                self.on_line(line)
        return len(text)

    def flush(self) -> None:
        if self.fallback is not None:
            self.fallback.flush()
            return
        self.log_file.flush()
        if self.echo is not None:
            self.echo.flush()

    def finish(self, fallback: IO[str]) -> None:
        if self.pending.strip():
            self.recent.append(self.pending)
            if self.on_line is not None:
                self.on_line(self.pending)
        self.pending = ""
        self.flush()
        self.fallback = fallback


def _stream_handlers() -> list[logging.StreamHandler[IO[str]]]:
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    return [
        h
        for lg in loggers
        if isinstance(lg, logging.Logger)
        for h in lg.handlers
        if type(h) is logging.StreamHandler
    ]


@contextlib.contextmanager
def _captured(log_path: Path, echo: bool, on_line: LineCallback | None) -> Iterator[_Tee]:
    """stdout, stderr and the logging handlers that write to them, into ``log_path`` for the block."""
    out, err = sys.stdout, sys.stderr
    with writing(log_path, "lm_eval log"):
        log_file = log_path.open("w", encoding="utf-8")
    tee = _Tee(log_file, log_path, out if echo else None, on_line)
    stream = cast(IO[str], tee)
    moved = {h: h.stream for h in _stream_handlers() if h.stream in (out, err)}
    try:
        for handler in moved:
            handler.setStream(stream)
        with contextlib.redirect_stdout(tee), contextlib.redirect_stderr(tee):
            yield tee
    finally:
        tee.finish(err)
        for handler, stream in moved.items():
            handler.setStream(stream)
        for handler in _stream_handlers():  # created during the run, bound to the redirected stream
            if handler.stream is stream:
                handler.setStream(err)
        log_file.close()


@contextlib.contextmanager
def _environ(env: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _cli(argv: list[str], *, announce: bool) -> tuple[int, str | None]:
    """lm-eval's CLI entry on ``argv``: its exit code, and the message of a VAL error it raised
    (printed to stderr with ``announce``: into the log of a captured run)."""
    from lm_eval.__main__ import cli_evaluate

    saved = sys.argv
    sys.argv = ["lm_eval", *argv]
    try:
        cli_evaluate()
    except SystemExit as done:
        code = done.code
        return (code if isinstance(code, int) else (0 if code is None else 1)), None
    except ValProbingError as err:
        if announce:
            print(f"lm_eval: error: {err}", file=sys.stderr)
        return 2, str(err)
    finally:
        sys.argv = saved
    return 0, None


def _run_in_process(
    argv: list[str],
    *,
    log_path: Path | None,
    env: Mapping[str, str],
    on_line: LineCallback | None,
    echo: bool,
) -> None:
    from lm_eval.utils import setup_logging

    # lm-eval's log handler is made once, on the stream of the moment: make it now, on the real
    # stderr, so that a captured run moves it into its log and back (not leave it on a closed file).
    setup_logging()
    log.info("lm_eval %s%s", " ".join(argv), f" (log: {log_path})" if log_path else "")
    with _environ(env):
        if log_path is None:
            code, reason = _cli(argv, announce=False)
            tail: list[str] = []
        else:
            with _captured(log_path, echo, on_line) as tee:
                code, reason = _cli(argv, announce=True)
            tail = failure_tail(list(tee.recent))
    if code != 0:
        raise EvalFailed(code, log_path, tail, reason)


# ---------------------------------------------------------------- the files of a run


def _results_under(folder: Path) -> set[Path]:
    return set(folder.rglob("results_*.json")) if folder.is_dir() else set()


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
