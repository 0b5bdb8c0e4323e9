"""The versions record that results and baselines carry."""

from __future__ import annotations

import importlib.metadata as md
import platform

from val_probing.environment import PACKAGES, package_versions


def test_records_every_installed_package_and_python() -> None:
    versions = package_versions()
    assert versions["python"] == platform.python_version()
    for name in PACKAGES:
        try:
            expected = md.version(name)
        except md.PackageNotFoundError:
            assert name not in versions
        else:
            assert versions[name] == expected
    # the stack this project is tested on is installed, so these are really read, not skipped
    assert {"val-probing", "lm-eval", "torch", "transformers"} <= versions.keys()


def test_a_missing_package_is_left_out_not_given_a_placeholder() -> None:
    versions = package_versions(["numpy", "no-such-distribution-val-probing"])
    assert set(versions) == {"python", "numpy"}
