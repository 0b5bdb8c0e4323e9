"""The dependency lock (scripts/constraints.txt): it covers every declared dependency within its declared
range, and the environment the tests run in is exactly the locked one (unless VAL_LATEST=1 asked for the
newest releases, the drift-watching mode of .ci/run)."""

from __future__ import annotations

import importlib.util
import os
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
# The CUDA vLLM for GPU users: not installable on the CPU machines the lock is made on.
UNLOCKED_EXTRAS = {"vllm"}


def _load_lock() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lock", ROOT / "scripts" / "lock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lock = _load_lock()


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = list(project["dependencies"])
    for extra, requirements in project["optional-dependencies"].items():
        if extra not in UNLOCKED_EXTRAS:
            lines += requirements
    return [r for r in map(Requirement, lines) if lock.canonical(r.name) != "val-probing"]


def test_every_declared_dependency_is_pinned_inside_its_declared_range() -> None:
    pins = lock.read_lock()
    declared = _declared()
    assert len(declared) > 20  # core + lmeval + cpu + plot + train + dev
    for requirement in declared:
        name = lock.canonical(requirement.name)
        assert name in pins, f"{requirement} is declared in pyproject.toml but not in scripts/constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"the lock pins {name}=={pins[name]}, outside the declared {requirement}"
        )


@pytest.mark.skipif(os.environ.get("VAL_LATEST") == "1", reason="VAL_LATEST=1 runs on the newest releases")
def test_the_tests_run_on_exactly_the_locked_versions() -> None:
    differences = lock.drift(lock.read_lock(), lock.installed())
    listing = "\n".join(differences)
    assert not differences, f"not the locked environment (re-run scripts/install.sh):\n{listing}"


def test_drift_names_every_kind_of_difference() -> None:
    pins = {"a": "1.0", "b": "2.0", "c": "3.0"}
    have = {"a": "1.0", "b": "2.1", "d": "4.0"}
    assert lock.drift(pins, have) == [
        "b: locked 2.0, installed 2.1",
        "c: locked 3.0, not installed",
        "d: installed 4.0, not in the lock",
    ]
    assert lock.drift(pins, dict(pins)) == []


def test_a_malformed_or_doubled_pin_is_refused_naming_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "constraints.txt"
    bad.write_text("# header\nnumpy==2.0\nrapidfuzz>=3\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"constraints.txt:3: expected 'name==version'"):
        lock.read_lock(bad)
    bad.write_text("numpy==2.0\nNumPy==2.1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r":2: NumPy is pinned twice"):
        lock.read_lock(bad)
    assert lock.read_lock(ROOT / "scripts" / "constraints.txt")["lm-eval"] == "0.4.13"
