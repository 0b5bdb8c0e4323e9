"""Where val-probing keeps what it makes.

``VAL_PROBING_CACHE`` overrides the default ``~/.cache/val-probing``. Built probes, the converted
embedded model, downloaded pools and IN2 QA generations all live under it, so deleting it is always
safe. How a cached artifact proves it is whole: :mod:`val_probing.files.verified`.
"""

from __future__ import annotations

import os
from pathlib import Path

from val_probing.files import check_output_dir

CACHE_ENV = "VAL_PROBING_CACHE"


def cache_root() -> Path:
    root = os.environ.get(CACHE_ENV)
    return Path(root) if root else Path.home() / ".cache" / "val-probing"


def cache_dir(name: str) -> Path:
    """``<cache>/<name>``, checked writable (an ``OutputError`` naming the path and the variable)."""
    return check_output_dir(cache_root() / name, what=f"cache folder (set {CACHE_ENV} to move it)")
