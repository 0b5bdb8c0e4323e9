"""IN2 training: supervised fine-tuning on information-intensive data (the FILM-7B recipe, arXiv 2404.16811).

One linear script on TRL's SFTTrainer, in the spirit of torchtune / nanochat recipes: read it top to bottom.

    data    a folder from `val-probing train synthesize` (prompt/completion, FILM template or chat messages);
            read only: lengths are measured in memory and the columns trained on are copied under
            output_dir/dataset-cache/, where TRL's tokenization cache lands (never in the dataset folder)
    loss    on the answer only (TRL's completion-only loss for prompt/completion data)
    length  max_length = the longest tokenized example; an example over `max_length_limit` stops the run,
            listed by index and length (never cut, never dropped); TRL's prepared lengths are checked
            against ours before the first step
    batch   global batch = per-device batch x gradient accumulation x processes (checked)

Paper settings (training/configs/in2_mistral7b.yaml): Mistral-7B-Instruct-v0.2, global batch 128, one
epoch (~14K steps on 1.75M examples), cosine decay, peak lr 1e-6, 3% warm-up, 16 nodes x 8 A100-80G with
FSDP full shard + CPU offload (training/configs/accelerate_fsdp_mistral7b_16x8*.yaml).

Run:
    python training/recipes/in2_sft.py --config training/configs/in2_tiny_cpu.yaml dataset=DATA model=DIR
    accelerate launch --config_file training/configs/accelerate_fsdp_mistral7b_16x8.yaml \\
        training/recipes/in2_sft.py --config training/configs/in2_mistral7b.yaml dataset=DATA
    val-probing train run --config training/configs/in2_tiny_cpu.yaml dataset=DATA   (the same, via the CLI)

On a CPU, accelerate and the Trainer run plain DDP even with an FSDP config.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from datasets import Dataset

log = logging.getLogger("in2_sft")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, type=Path, help="YAML file of TrainConfig settings")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override settings of the file")
    return parser.parse_args(argv)


def measure_lengths(dataset: Any, tokenizer: Any, num_proc: int | None) -> list[int]:
    """Tokens of prompt + completion (+ EOS for text data), tokenized the way TRL prepares them."""

    def count(row: dict[str, Any]) -> dict[str, int]:
        if isinstance(row["prompt"], str):
            text = row["prompt"] + row["completion"]
            if not row["completion"].endswith(tokenizer.eos_token):
                text += tokenizer.eos_token
            return {"n_tokens": len(tokenizer(text=text)["input_ids"])}
        messages = row["prompt"] + row["completion"]
        ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
        return {"n_tokens": len(ids)}

    # in memory: one int per example, and no cache file beside the (user's) dataset
    counted = dataset.map(
        count, num_proc=num_proc, remove_columns=dataset.column_names, keep_in_memory=True, desc="Measuring"
    )
    return list(counted["n_tokens"])


def build_trainer(cfg: Any) -> tuple[Any, list[int]]:
    """Data, tokenizer, length checks, model and SFTTrainer: everything up to the first step."""
    import torch
    from accelerate import PartialState
    from datasets import load_from_disk
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from val_probing.embedded import embedded_model_dir
    from val_probing.errors import ValProbingError
    from val_probing.in2.recipe_settings import check_lengths, verify_prepared

    # 1. Data: prompt/completion only (the metadata columns stay in the dataset folder)
    if not (Path(cfg.dataset) / "dataset_info.json").is_file():
        raise ValProbingError(f"{cfg.dataset}: not a dataset folder from `val-probing train synthesize`")
    dataset = load_from_disk(cfg.dataset)
    if cfg.limit is not None:
        dataset = dataset.select(range(min(cfg.limit, len(dataset))))  # a range: no indices file
    dataset = dataset.select_columns(["prompt", "completion"])

    # 2. Tokenizer and lengths: max_length comes from the data; too-long examples stop the run
    model_path = str(embedded_model_dir()) if cfg.model == "embedded" else cfg.model
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    lengths = measure_lengths(dataset, tokenizer, cfg.dataset_num_proc)
    longest = check_lengths(lengths, cfg.max_length_limit)
    log.info("%d examples, longest %d tokens (limit %d)", len(lengths), longest, cfg.max_length_limit)

    # 3. Model, with an optional RoPE base override (long-context training often raises it)
    model_config = AutoConfig.from_pretrained(model_path)
    if cfg.rope_theta is not None:
        rope = getattr(model_config, "rope_parameters", None)  # transformers 5 keeps the RoPE base here
        if not isinstance(rope, dict):
            raise ValProbingError(f"{model_path}: the model config has no rope_parameters to override")
        rope["rope_theta"] = cfg.rope_theta
    model = AutoModelForCausalLM.from_pretrained(
        model_path,
        config=model_config,
        dtype=torch.bfloat16 if cfg.bf16 else torch.float32,
        attn_implementation=cfg.attn_implementation,
    )

    # 4. The dataset folder is only read. datasets writes a map's cache beside its input's files, so
    # the trained columns are copied under output_dir first: TRL's tokenization caches there (the main
    # process first), never in cfg.dataset. Named by the data's fingerprint, as datasets names its
    # caches, so another dataset's copy is never reused.
    cache = Path(cfg.output_dir) / "dataset-cache"
    with PartialState().main_process_first():
        cache.mkdir(parents=True, exist_ok=True)
        copy = cache / f"columns-{dataset._fingerprint}.arrow"
        dataset = dataset.map(cache_file_name=str(copy), desc="Copying the training columns")

    # 5. Trainer: completion-only loss, no packing, global batch checked against the process count
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    args = SFTConfig(
        output_dir=cfg.output_dir,
        max_length=longest,
        completion_only_loss=True,
        packing=False,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation(world_size),
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_ratio,  # transformers 5: a float below 1 is a ratio of the total steps
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps if cfg.max_steps is not None else -1,
        weight_decay=cfg.weight_decay,
        bf16=cfg.bf16,
        gradient_checkpointing=cfg.gradient_checkpointing,
        use_liger_kernel=cfg.use_liger_kernel,
        logging_steps=cfg.logging_steps,
        save_strategy="steps" if cfg.save_steps else "no",
        save_steps=cfg.save_steps or 500,
        dataloader_num_workers=cfg.dataloader_num_workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        dataset_num_proc=cfg.dataset_num_proc,
        seed=cfg.seed,
        report_to=cfg.report_to,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)

    # 6. Nothing altered: TRL's tokenized lengths equal ours, example by example
    prepared = cast("Dataset", trainer.train_dataset)  # a map-style Dataset: we passed one
    verify_prepared([len(ids) for ids in prepared["input_ids"]], lengths)
    return trainer, lengths


def main(argv: Sequence[str] | None = None) -> Path:
    from val_probing.errors import ValProbingError
    from val_probing.in2.recipe_settings import load_config

    args = parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    trainer, lengths = build_trainer(cfg)

    trainer.train()
    if trainer.state.global_step < 1:  # the config checks refuse this; a trainer could still stop at 0
        raise ValProbingError("no training step was taken: the base model is not saved as final/")

    # The final checkpoint is a plain Hugging Face folder (model + tokenizer) that lm_eval / vLLM load:
    # under FSDP, gather a full state dict for it (intermediate checkpoints stay sharded, resumable).
    final = Path(cfg.output_dir) / "final"
    if trainer.is_fsdp_enabled:
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(final))
    summary = {
        "config": cfg.to_dict(),
        "n_examples": len(lengths),
        "max_length": max(lengths),
        "global_step": trainer.state.global_step,
        "log_history": trainer.state.log_history,
    }
    if trainer.is_world_process_zero():
        (Path(cfg.output_dir) / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("saved %s", final)
    return final


if __name__ == "__main__":
    import sys

    from val_probing.errors import ValProbingError

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        main()
    except ValProbingError as err:
        print(f"in2_sft: error: {err}", file=sys.stderr)
        sys.exit(2)
