"""Shared fixtures: the repository, the authors' pools beside it, SmolLM2's tokenizer, a tiny Llama."""

from __future__ import annotations

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
