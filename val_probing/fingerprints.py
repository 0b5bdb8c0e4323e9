"""Content fingerprints: what identifies a tokenizer (and so a set of built probes) across machines.

A probe cache key must not change with how a tokenizer was named or loaded, only with how it
tokenizes: a folder is identified by its tokenizer files (load-time options left out), a hub name by
the vocabulary or model it loaded, ``whitespace`` by its name.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from val_probing.files import file_sha256
from val_probing.token_counters import HFTokenCounter, TokenCounter
from val_probing.tokenizer_names import TokenizerAlias, load_counter, tokenizer_folder


def digest(obj: object) -> str:
    """A short content hash of a JSON-able object (keys sorted)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


_TOKENIZER_FILE_PREFIXES = ("tokenizer", "vocab", "merges", "special_tokens_map", "added_tokens")
_TOKENIZER_FILE_SUFFIXES = (".model", ".tiktoken")


# Options about how a tokenizer was loaded, not how it tokenizes: transformers writes some of them
# into tokenizer_config.json (e.g. local_files_only is true when saved under HF_HUB_OFFLINE=1), so
# they must not change the fingerprint, or the same tokenizer would give other probe hashes.
_LOAD_TIME_KEYS = frozenset(
    {"local_files_only", "name_or_path", "_commit_hash", "cache_dir", "revision", "token",
     "use_auth_token", "trust_remote_code", "force_download", "proxies", "subfolder"}
)  # fmt: skip


def _file_fingerprint(path: Path) -> str:
    if path.name != "tokenizer_config.json":
        return file_sha256(path)
    config = json.loads(path.read_text(encoding="utf-8"))
    return digest({k: v for k, v in config.items() if k not in _LOAD_TIME_KEYS})


def _folder_fingerprint(folder: Path) -> str:
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file()
        and (p.name.startswith(_TOKENIZER_FILE_PREFIXES) or p.name.endswith(_TOKENIZER_FILE_SUFFIXES))
    )
    return digest([[p.name, _file_fingerprint(p)] for p in files])


def _counter_fingerprint(counter: TokenCounter) -> str:
    if not isinstance(counter, HFTokenCounter):
        return digest(["counter", type(counter).__qualname__, counter.name])
    tok = counter.tokenizer
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        return digest(["backend", backend.to_str()])
    return digest(["vocab", type(tok).__qualname__, sorted(tok.get_vocab().items())])


def tokenizer_fingerprint(name: str, counter: TokenCounter | None = None) -> str:
    """What identifies a tokenizer: its files for a folder, its loaded vocabulary/model for a hub name."""
    if name == TokenizerAlias.WHITESPACE:
        return TokenizerAlias.WHITESPACE.value
    folder = tokenizer_folder(name)
    if folder is not None:
        return _folder_fingerprint(folder)
    return _counter_fingerprint(counter or load_counter(name))
