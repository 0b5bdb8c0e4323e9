"""The software that produced a result: the versions of the packages that can change its numbers.

lm-eval's results record only its own and transformers' versions; a VAL score also depends on the
serving stack (vLLM, torch), the tokenizer library and this package. :func:`package_versions` reads them
from the installed distributions' metadata (no imports, so it is cheap and has no side effects); a
package that is not installed is left out rather than given a placeholder. :func:`require_modules` is the
check before a step that needs an optional extra: one line naming what is missing and how to install it.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import platform
from collections.abc import Iterable

from val_probing.errors import ValProbingError

# The distributions whose versions a result records, in the order they are printed.
PACKAGES = (
    "val-probing",
    "lm-eval",
    "vllm",
    "torch",
    "transformers",
    "tokenizers",
    "accelerate",
    "trl",
    "datasets",
    "numpy",
)


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    """``{distribution: version}`` for each of ``names`` that is installed, plus ``python``."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return versions


TRAIN_EXTRA = "pip install 'val-probing[train]'"


def require_modules(modules: Iterable[str], purpose: str, install: str = TRAIN_EXTRA) -> None:
    """Before the work: ``modules`` are importable, else one line naming the missing ones and the extra."""
    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a parent package missing, or a module set to None
            found = False
        if not found:
            missing.append(name)
    if missing:
        raise ValProbingError(f"{purpose} needs {', '.join(missing)}, not installed: {install}")
