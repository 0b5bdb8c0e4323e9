"""Settings of the IN2 SFT recipe (``training/recipes/in2_sft.py``) and the checks it makes before training.

A YAML file holds ``TrainConfig`` fields; ``key=value`` overrides on the command line replace them (values
parsed as YAML: ``learning_rate=1e-3``, ``rope_theta=null``). Unknown keys are errors.

The length rule: ``max_length`` is set from the data (the longest tokenized example); an example longer
than ``max_length_limit`` is never cut or dropped: the run stops and lists them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from val_probing.errors import ValProbingError
from val_probing.typed import read_settings_into


class OverLengthError(ValProbingError):
    """Examples longer than the configured maximum: refused, with their indices and lengths."""


@dataclass(frozen=True)
class TrainConfig:
    model: str  # HF folder or hub name; "embedded" = SmolLM2-135M-Instruct from val_probing.embedded
    dataset: str  # a folder written by `val-probing train synthesize`
    output_dir: str
    max_length_limit: int  # longest example allowed (tokens, prompt + answer + EOS)
    global_batch_size: int = 128
    per_device_train_batch_size: int = 1
    gradient_accumulation_steps: int | None = None  # None: global / (per-device x processes)
    learning_rate: float = 1e-6
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.03
    num_train_epochs: float = 1.0
    max_steps: int | None = None  # None: num_train_epochs decides
    weight_decay: float = 0.0
    rope_theta: float | None = None  # override the model's RoPE base (None: keep the model's)
    bf16: bool = False
    gradient_checkpointing: bool = False  # with FSDP, prefer fsdp_activation_checkpointing in accelerate
    attn_implementation: str | None = None  # e.g. "flash_attention_2" on GPUs (needs flash-attn)
    use_liger_kernel: bool = False  # GPUs, needs liger-kernel
    limit: int | None = None  # first N examples only (smoke runs)
    logging_steps: int = 10
    save_steps: int | None = None  # None: save only the final checkpoint
    dataloader_num_workers: int = 0
    dataset_num_proc: int | None = None
    seed: int = 0
    report_to: str = "none"

    def __post_init__(self) -> None:
        for name in ("global_batch_size", "per_device_train_batch_size", "max_length_limit", "logging_steps"):
            if getattr(self, name) < 1:
                raise ValProbingError(f"{name}: expected a positive int, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValProbingError(f"learning_rate: expected > 0, got {self.learning_rate}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValProbingError(f"warmup_ratio: expected in [0, 1), got {self.warmup_ratio}")
        if self.rope_theta is not None and not self.rope_theta > 0:
            raise ValProbingError(f"rope_theta: expected > 0, got {self.rope_theta}")
        self._check_trains_something()

    def _check_trains_something(self) -> None:
        """A run of no step would save the base model as ``final/``, as if it were trained: refused."""
        if self.max_steps is not None and self.max_steps != -1 and self.max_steps < 1:
            raise ValProbingError(
                f"max_steps: expected >= 1 (or null / -1: num_train_epochs decides), got {self.max_steps}; "
                "a run of no step would save the base model as final/"
            )
        if self.max_steps in (None, -1) and not self.num_train_epochs > 0:
            raise ValProbingError(
                f"num_train_epochs: expected > 0 when max_steps is {self.max_steps or 'null'}, got "
                f"{self.num_train_epochs}; a run of no step would save the base model as final/"
            )
        if self.limit is not None and self.limit < 1:
            raise ValProbingError(f"limit: expected >= 1 (or null: every example), got {self.limit}")

    def gradient_accumulation(self, world_size: int) -> int:
        """Steps to accumulate so that per-device x accumulation x processes = global batch, exactly."""
        per_step = self.per_device_train_batch_size * world_size
        accum = self.gradient_accumulation_steps
        if accum is None:
            if self.global_batch_size % per_step:
                raise ValProbingError(
                    f"global_batch_size {self.global_batch_size} is not a multiple of per-device batch "
                    f"{self.per_device_train_batch_size} x {world_size} processes"
                )
            return self.global_batch_size // per_step
        if accum * per_step != self.global_batch_size:
            raise ValProbingError(
                f"global batch: per-device {self.per_device_train_batch_size} x accumulation {accum} x "
                f"{world_size} processes = {accum * per_step}, "
                f"not global_batch_size={self.global_batch_size}; "
                "set gradient_accumulation_steps=null to derive it"
            )
        return accum

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _parse_override(item: str) -> tuple[str, Any]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ValProbingError(f"override {item!r}: expected KEY=VALUE")
    return key.strip(), yaml.safe_load(value) if value else None


def read_settings(path: Path) -> dict[str, Any]:
    """A YAML file of settings (a mapping; empty is {}); errors name the file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as err:
        raise ValProbingError(f"{path}: cannot read the config ({err.strerror})") from err
    except yaml.YAMLError as err:
        raise ValProbingError(f"{path}: malformed YAML ({err})") from err
    if not isinstance(data, dict):
        raise ValProbingError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return data


def load_config(path: Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML config and apply ``key=value`` overrides; errors name the file and the key."""
    path = Path(path)
    data = read_settings(path)
    data.update(dict(map(_parse_override, overrides)))
    missing = sorted(
        f.name for f in fields(TrainConfig) if f.default is MISSING and data.get(f.name) in (None, "")
    )
    if missing and not set(data) - {f.name for f in fields(TrainConfig)}:
        raise ValProbingError(f"{path}: set {', '.join(missing)} (in the file or as KEY=VALUE overrides)")
    return read_settings_into(
        TrainConfig, data, where=str(path), error=ValProbingError, numbers_from_strings=True
    )


def check_lengths(lengths: Sequence[int], limit: int, *, show: int = 20) -> int:
    """The longest length; raise ``OverLengthError`` listing every example longer than ``limit``."""
    if not lengths:
        raise ValProbingError("the training set is empty")
    over = [(i, n) for i, n in enumerate(lengths) if n > limit]
    if over:
        listed = ", ".join(f"#{i} ({n} tokens)" for i, n in over[:show])
        more = f" and {len(over) - show} more" if len(over) > show else ""
        raise OverLengthError(
            f"{len(over)} of {len(lengths)} examples exceed max_length_limit={limit} tokens: {listed}{more}. "
            "Nothing was cut or dropped: raise max_length_limit, "
            "or rebuild the data with a lower --max-context"
        )
    return max(lengths)


def verify_prepared(prepared: Sequence[int], measured: Sequence[int]) -> None:
    """The trainer's tokenized lengths must equal ours, example by example: nothing dropped or cut."""
    if len(prepared) != len(measured):
        raise ValProbingError(
            f"the trainer kept {len(prepared)} of {len(measured)} examples: some were dropped in preparation"
        )
    diff = [(i, a, b) for i, (a, b) in enumerate(zip(prepared, measured, strict=True)) if a != b]
    if diff:
        i, a, b = diff[0]
        raise ValProbingError(
            f"{len(diff)} example(s) tokenized to another length by the trainer than measured "
            f"(first: #{i}, {a} vs {b} tokens): refusing to train on altered examples"
        )
