"""Shared fixtures: the repository, the authors' pools beside it, SmolLM2's tokenizer, a tiny Llama."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def film_pieces_dir(repo_root: Path) -> Path:
    """The authors' raw pools (shared/data/film-pieces beside the clone); skips the test when absent."""
    path = repo_root.parent / "shared" / "data" / "film-pieces"
    if not (path / "document_sentences.jsonl").is_file():
        pytest.skip(f"the authors' pools are not at {path}")
    return path


@pytest.fixture(scope="session")
def smollm2_tokenizer_dir() -> Path:
    """SmolLM2-135M-Instruct's tokenizer folder, extracted from the embedded GGUF (seconds, cached)."""
    from val_probing.embedded import embedded_tokenizer_dir

    return embedded_tokenizer_dir()


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory, smollm2_tokenizer_dir: Path) -> Path:
    """A random 2-layer Llama with SmolLM2's tokenizer and chat template (for fast model tests)."""
    from val_probing.embedded import make_tiny_llama

    return make_tiny_llama(
        tmp_path_factory.mktemp("tiny-llama") / "model", tokenizer_dir=smollm2_tokenizer_dir
    )


@contextmanager
def _read_only(path: Path) -> Iterator[Path]:
    """``path`` (a file or folder) made unwritable for this user, restored afterwards.

    Mode bits stop a normal user; root ignores them, so as root the immutable attribute is used
    (``chattr +i``: even root cannot write there). Skips only where neither works.
    """
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield path
        finally:
            path.chmod(mode)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("running as root where chattr +i does not work: cannot make a path read-only")
    try:
        yield path
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


@pytest.fixture
def read_only() -> Callable[[Path], AbstractContextManager[Path]]:
    """``with read_only(path):`` makes ``path`` unwritable, for root too (see :func:`_read_only`)."""
    return _read_only
