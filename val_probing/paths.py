"""Where val-probing keeps what it makes: one cache root, chosen by the user.

``VAL_PROBING_CACHE`` overrides the default ``~/.cache/val-probing``. Built probes, the converted
embedded model and downloaded pools all live under it, so deleting it is always safe.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    root = os.environ.get("VAL_PROBING_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "val-probing"
