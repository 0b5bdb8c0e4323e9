"""The software that produced a result: the versions of the packages that can change its numbers.

lm-eval's results record only its own and transformers' versions; a VAL score also depends on the
serving stack (vLLM, torch), the tokenizer library and this package. :func:`package_versions` reads them
from the installed distributions' metadata (no imports, so it is cheap and has no side effects); a
package that is not installed is left out rather than given a placeholder.
"""

from __future__ import annotations

import importlib.metadata as md
import platform
from collections.abc import Iterable

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
