"""The probe settings of a VAL task, read and checked from lm-eval's task metadata.

lm-eval 0.4.x merges ``--metadata`` JSON and the ``--model_args`` into every task's metadata;
:meth:`ValOptions.from_metadata` reads the VAL keys (:data:`VAL_OPTIONS`) from it, rejects a key
that looks like a misspelt VAL option, and leaves the model's own arguments alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

from val_probing.buckets import fitting_buckets
from val_probing.errors import ValProbingError
from val_probing.probes import get_family
from val_probing.records import FAMILIES, Family
from val_probing.typed import closest, is_int

Source = Literal["built", "official"]
Template = Literal["plain", "film"]
SOURCES: tuple[Source, ...] = get_args(Source)
TEMPLATES: tuple[Template, ...] = get_args(Template)
T = TypeVar("T", bound=str)

DEFAULT_CONTEXT_LENGTH = 4096

# The keys a VAL task reads from its metadata.
VAL_OPTIONS: dict[str, str] = {
    "source": "built | official (default built)",
    "context_length": f"context budget in tokens, int or list (built; default {DEFAULT_CONTEXT_LENGTH})",
    "max_seq_lengths": "alias of context_length (RULER's name)",
    "tokenizer": "tokenizer that sizes built contexts (default: the model's `pretrained`)",
    "pool": "embedded | film | PATH to an authors'-schema JSONL (built; default embedded)",
    "sets": "number of distinct contexts (built; default 4)",
    "positions": "needle positions per context (built; default one per item)",
    "seed": "shuffle seed of the pool (built; default 0)",
    "n_buckets": (
        "position buckets (default 16, database 15; with positions: its largest divisor up to that; "
        "fewer when the contexts hold fewer items)"
    ),
    "data": "local folder or .jsonl of VaLProbing-32K (official; default the hub)",
    "skip_ambiguous": "official: leave out rows whose key occurs twice in the context (default true)",
    "template": "plain | film (default plain: context, blank line, instruction)",
    "check_length": "refuse prompts that do not fit the model (default true)",
    "closed_book": "ask the same questions without their context: the floor of guessing (default false)",
}
BUILT_ONLY: tuple[str, ...] = ("context_length", "max_seq_lengths", "pool", "sets", "positions", "seed")
OFFICIAL_ONLY: tuple[str, ...] = ("data", "skip_ambiguous")
# The ValOptions fields behind those keys (what to_metadata refuses to drop silently).
_BUILT_FIELDS: tuple[str, ...] = ("context_lengths", "pool", "sets", "positions", "seed")
_OFFICIAL_FIELDS: tuple[str, ...] = ("data", "skip_ambiguous")
# Keys lm-eval itself puts into task metadata (and "versions", which the task records itself:
# package_versions(), read by the results and the gate; never part of the probes or their hash),
# and model_args the adapter reads.
_LM_EVAL_KEYS = frozenset({"version", "config_source", "num_fewshot", "_metadata", "versions"})
MODEL_ARG_KEYS = (
    "pretrained",
    "model",
    "max_length",
    "max_model_len",
    "base_url",
    "truncation_side",
    "enable_thinking",
    "think_end_token",
)
_TOKENIZER_KEYS = ("tokenizer", "pretrained", "model")


class TaskSetupError(ValProbingError):
    """The task's metadata cannot be turned into probes."""


def as_bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise TaskSetupError(f"metadata {name}: expected true or false, got {value!r}")


def as_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not is_int(value) or value < minimum:
        raise TaskSetupError(f"metadata {name}: expected an integer >= {minimum}, got {value!r}")
    return value


def _lengths(value: object) -> tuple[int, ...]:
    values = value if isinstance(value, list | tuple) else [value]
    if not values:
        raise TaskSetupError("metadata context_length: the list is empty")
    out = tuple(as_int("context_length", v, 1) for v in values)
    if len(set(out)) != len(out):
        raise TaskSetupError(f"metadata context_length: repeated value in {list(out)}")
    return out


def _choice(name: str, value: object, choices: tuple[T, ...]) -> T:
    for choice in choices:
        if value == choice:
            return choice
    raise TaskSetupError(f"metadata {name}: {value!r} is not one of {', '.join(choices)}")


def check_unknown(meta: Mapping[str, Any]) -> None:
    """Reject keys that look like a misspelt VAL option.

    lm-eval merges ``--model_args`` into every task's metadata, so a key that is not a VAL option
    may be a model argument of any backend (dtype, base_url, gpu_memory_utilization, ...): only keys
    close to a VAL option name are errors.
    """
    for key in meta:
        if key in VAL_OPTIONS or key in _LM_EVAL_KEYS or key in MODEL_ARG_KEYS:
            continue
        close = closest(key, VAL_OPTIONS, cutoff=0.75)
        if close:
            valid = "\n".join(f"  {name}: {help_}" for name, help_ in VAL_OPTIONS.items())
            raise TaskSetupError(
                f"unknown VAL metadata option {key!r} (did you mean {close!r}?). Valid options:\n{valid}"
            )


@dataclass(frozen=True, slots=True)
class ValOptions:
    """The probe settings of one task, validated."""

    family: Family
    source: Source = "built"
    context_lengths: tuple[int, ...] = (DEFAULT_CONTEXT_LENGTH,)
    tokenizer: str | None = None
    pool: str = "embedded"
    sets: int = 4
    positions: int | None = None
    seed: int = 0
    n_buckets: int = 16
    n_buckets_explicit: bool = False
    data: Path | None = None
    skip_ambiguous: bool = True
    template: Template = "plain"
    check_length: bool = True
    closed_book: bool = False  # the questions without their context (issue 23)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise TaskSetupError(f"family: {self.family!r} is not one of {FAMILIES}")
        _choice("source", self.source, SOURCES)
        _choice("template", self.template, TEMPLATES)
        if self.source == "built" and self.tokenizer is None:
            raise TaskSetupError(
                "VAL tasks with source=built size their contexts with the model's tokenizer: pass "
                '--model_args pretrained=... or --metadata \'{"tokenizer": "NAME_OR_DIR"}\''
            )

    @property
    def per_length(self) -> tuple[int, ...]:
        """The lengths that get their own ``avg_<L>``/``gap_<L>``: several built lengths, else none."""
        return self.context_lengths if self.source == "built" and len(self.context_lengths) > 1 else ()

    @classmethod
    def from_metadata(cls, family: Family, meta: Mapping[str, Any]) -> ValOptions:
        check_unknown(meta)
        source = _choice("source", meta.get("source", "built"), SOURCES)
        kwargs: dict[str, Any] = {"family": family, "source": source}
        kwargs["tokenizer"] = next((str(meta[k]) for k in _TOKENIZER_KEYS if meta.get(k)), None)
        if "max_seq_lengths" in meta:
            alias = _lengths(meta["max_seq_lengths"])
            if "context_length" in meta and _lengths(meta["context_length"]) != alias:
                raise TaskSetupError(
                    f"metadata max_seq_lengths {list(alias)} and context_length "
                    f"{meta['context_length']!r} disagree (max_seq_lengths is an alias: give one)"
                )
            kwargs["context_lengths"] = alias
        elif "context_length" in meta:
            kwargs["context_lengths"] = _lengths(meta["context_length"])
        for name, minimum in (("sets", 1), ("seed", 0)):
            if name in meta:
                kwargs[name] = as_int(name, meta[name], minimum)
        if meta.get("positions") is not None:
            kwargs["positions"] = as_int("positions", meta["positions"], 1)
        if "n_buckets" in meta:
            kwargs["n_buckets"] = as_int("n_buckets", meta["n_buckets"], 1)
        else:  # equal questions per bucket: the largest count up to the family's that divides positions
            kwargs["n_buckets"] = fitting_buckets(
                get_family(family).DEFAULT_BUCKETS, None, kwargs.get("positions")
            )
        kwargs["n_buckets_explicit"] = "n_buckets" in meta
        if "pool" in meta:
            kwargs["pool"] = str(meta["pool"])
        if meta.get("data") is not None:
            kwargs["data"] = Path(str(meta["data"])).expanduser()
        for name in ("skip_ambiguous", "check_length"):
            if name in meta:
                kwargs[name] = as_bool(name, meta[name])
        if "closed_book" in meta:
            kwargs["closed_book"] = as_bool("closed_book", meta["closed_book"])
        if "template" in meta:
            kwargs["template"] = _choice("template", str(meta["template"]), TEMPLATES)
        if source == "official":
            built_only = sorted(k for k in BUILT_ONLY if k in meta)
            if built_only:
                raise TaskSetupError(
                    f"metadata {', '.join(built_only)}: only for source=built (official data has fixed "
                    "~32K-token contexts, 4 sets)"
                )
        elif any(k in meta for k in OFFICIAL_ONLY):
            raise TaskSetupError("metadata data / skip_ambiguous: only for source=official")
        return cls(**kwargs)

    def to_metadata(self) -> dict[str, object]:
        """The ``--metadata`` that :meth:`from_metadata` reads back as these options (the one writer).

        Only keys the reader knows, and a key only where the reader's default would give another value;
        ``source`` always (it says which other keys apply), and a built source's ``seed`` (lm-eval
        merges ``--model_args`` into the metadata, below it: a model's ``seed`` would become the pool
        seed). ``n_buckets`` is written when it was
        given, or when it differs from the default the reader derives; a built-only setting on
        official options (or the reverse) cannot be expressed and is refused. The family is not a
        metadata key: one mapping serves every task, and an unwritten ``n_buckets`` gives each task
        its own family's default.
        """
        built = self.source == "built"
        defaults = ValOptions(self.family, source=self.source, tokenizer=self.tokenizer)
        stray = [
            name
            for name in (_BUILT_FIELDS if not built else _OFFICIAL_FIELDS)
            if getattr(self, name) != getattr(defaults, name)
        ]
        if stray:
            raise TaskSetupError(
                f"{', '.join(stray)}: not a setting of source={self.source} (the metadata cannot carry it)"
            )
        meta: dict[str, object] = {"source": self.source}
        if self.context_lengths != defaults.context_lengths:
            lengths = list(self.context_lengths)
            meta["context_length"] = lengths[0] if len(lengths) == 1 else lengths
        if self.tokenizer is not None:
            meta["tokenizer"] = self.tokenizer
        for name in ("pool", "sets", "positions"):
            if getattr(self, name) != getattr(defaults, name):
                meta[name] = getattr(self, name)
        if built:
            meta["seed"] = self.seed
        derived = fitting_buckets(get_family(self.family).DEFAULT_BUCKETS, None, self.positions)
        if self.n_buckets_explicit or self.n_buckets != derived:
            meta["n_buckets"] = self.n_buckets
        if self.data is not None:
            meta["data"] = str(self.data)
        for name in ("skip_ambiguous", "template", "check_length", "closed_book"):
            if getattr(self, name) != getattr(defaults, name):
                meta[name] = getattr(self, name)
        return meta

    def record(self) -> dict[str, Any]:
        """The settings as they go into the results file (``configs[task]["metadata"]``)."""
        out = asdict(self)
        out.pop("family")
        out.pop("n_buckets_explicit")
        out["context_length"] = list(out.pop("context_lengths")) if self.source == "built" else None
        out["data"] = str(self.data) if self.data else None
        return out
