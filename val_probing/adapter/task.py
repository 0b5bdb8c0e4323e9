"""Every lm-evaluation-harness hook of the VAL tasks lives here (the YAML files only point at it).

The tasks ``val_document``, ``val_code`` and ``val_database`` are one class, :class:`ValTask`, a
:class:`lm_eval.api.task.ConfigurableTask` named by ``class: !function lm_eval_adapter.ValTask`` in the
shared YAML. It

* reads its probe settings from the task metadata (``--metadata`` JSON; lm-eval 0.4.x also merges the
  ``--model_args`` into it, which is how the tokenizer and the model's length limit are found),
* builds or loads the probes at task construction (``download``), keeps each distinct context once
  and orders the docs so that ``--limit N`` spreads over every depth (:func:`spread_order`),
* renders the prompt (neutral by default, or the FILM template with ``template: film``),
* refuses to generate when a prompt, as the backend will receive it (chat template included), plus
  ``max_gen_toks`` does not fit the model's length (:meth:`ValTask.build_all_requests`), because
  lm-eval itself would cut the prompt from the left with only a warning,
* scores every answer with :func:`val_probing.metrics.reference_score` and summarizes the run with
  :func:`val_probing.buckets.summarize`, so its numbers are those of ``val-probing score``.

Metrics: ``ref_score`` (mean per-sample reference score, a fraction in [0, 1] aggregated with
lm-eval's own ``mean``, so it comes with lm-eval's standard error), and, x100 as in the paper,
``avg`` (average of bucket means), ``gap`` (max - min bucket mean) and ``bucket_00`` ..
``bucket_NN``, one per position bucket. A run over several context lengths also reports
``avg_<L>`` and ``gap_<L>`` per length ``L`` (the pooled ``avg``/``gap`` average every context of
every length). ``process_results`` returns the per-sample score under ``ref_score`` and, under every
other key, the tuple ``(context_index, position_id, n_items, score, context_length)`` that the
aggregations summarize.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

from lm_eval.api.metrics import mean as lm_eval_mean
from lm_eval.api.task import ConfigurableTask

from val_probing.buckets import ScoredSample, Summary, bucket_of, summarize
from val_probing.errors import ValProbingError
from val_probing.metrics import reference_score
from val_probing.official import film_prompt
from val_probing.records import FAMILIES, Family, ProbeExample

log = logging.getLogger(__name__)

Source = Literal["built", "official"]
Template = Literal["plain", "film"]
SOURCES: tuple[Source, ...] = get_args(Source)
TEMPLATES: tuple[Template, ...] = get_args(Template)

# Buckets of 50 positions on the official data (800 positions; database 750).
DEFAULT_BUCKETS: dict[Family, int] = {"document": 16, "code": 16, "database": 15}
DEFAULT_CONTEXT_LENGTH = 4096
# lm-eval's own default max_length for API backends (local-completions, local-chat-completions).
API_DEFAULT_MAX_LENGTH = 2048
# HFLM's fallback when neither the model config nor the tokenizer names a length.
HF_DEFAULT_MAX_LENGTH = 2048
_SEQLEN_CONFIG_ATTRS = ("n_positions", "max_position_embeddings", "n_ctx")

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
}
# Keys lm-eval itself puts into task metadata, and model_args the adapter reads.
_LM_EVAL_KEYS = frozenset({"version", "config_source", "num_fewshot", "_metadata"})
_MODEL_ARG_KEYS = ("pretrained", "model", "max_length", "max_model_len", "base_url")
_TOKENIZER_KEYS = ("tokenizer", "pretrained", "model")


class TaskSetupError(ValProbingError):
    """The task's metadata cannot be turned into probes."""


class PromptTooLong(ValProbingError):
    """A prompt plus the generation budget does not fit the model's context window."""


# --------------------------------------------------------------------------------------------------
# Options


def _as_bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise TaskSetupError(f"metadata {name}: expected true or false, got {value!r}")


def _as_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise TaskSetupError(f"metadata {name}: expected an integer >= {minimum}, got {value!r}")
    return value


def _lengths(value: object) -> tuple[int, ...]:
    values = value if isinstance(value, list | tuple) else [value]
    if not values:
        raise TaskSetupError("metadata context_length: the list is empty")
    out = tuple(_as_int("context_length", v, 1) for v in values)
    if len(set(out)) != len(out):
        raise TaskSetupError(f"metadata context_length: repeated value in {list(out)}")
    return out


def check_unknown(meta: Mapping[str, Any]) -> None:
    """Reject keys that look like a misspelt VAL option.

    lm-eval merges ``--model_args`` into every task's metadata, so a key that is not a VAL option
    may be a model argument of any backend (dtype, base_url, gpu_memory_utilization, ...): only keys
    close to a VAL option name are errors.
    """
    for key in meta:
        if key in VAL_OPTIONS or key in _LM_EVAL_KEYS or key in _MODEL_ARG_KEYS:
            continue
        close = difflib.get_close_matches(key, list(VAL_OPTIONS), n=1, cutoff=0.75)
        if close:
            valid = "\n".join(f"  {name}: {help_}" for name, help_ in VAL_OPTIONS.items())
            raise TaskSetupError(
                f"unknown VAL metadata option {key!r} (did you mean {close[0]!r}?). Valid options:\n{valid}"
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

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise TaskSetupError(f"family: {self.family!r} is not one of {FAMILIES}")
        if self.source not in SOURCES:
            raise TaskSetupError(f"metadata source: {self.source!r} is not one of {', '.join(SOURCES)}")
        if self.template not in TEMPLATES:
            raise TaskSetupError(f"metadata template: {self.template!r} is not one of {', '.join(TEMPLATES)}")
        if self.source == "built" and self.tokenizer is None:
            raise TaskSetupError(
                "VAL tasks with source=built size their contexts with the model's tokenizer: pass "
                '--model_args pretrained=... or --metadata \'{"tokenizer": "NAME_OR_DIR"}\''
            )

    @classmethod
    def from_metadata(cls, family: Family, meta: Mapping[str, Any]) -> ValOptions:
        check_unknown(meta)
        source = str(meta.get("source", "built"))
        kwargs: dict[str, Any] = {"family": family, "source": source}
        tokenizer = next((str(meta[k]) for k in _TOKENIZER_KEYS if meta.get(k)), None)
        kwargs["tokenizer"] = tokenizer
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
        for name in ("sets", "seed"):
            if name in meta:
                kwargs[name] = _as_int(name, meta[name], 1 if name == "sets" else 0)
        if meta.get("positions") is not None:
            kwargs["positions"] = _as_int("positions", meta["positions"], 1)
        default_buckets = DEFAULT_BUCKETS[family]
        if "n_buckets" not in meta and kwargs.get("positions") is not None:
            # the largest bucket count <= the default that divides positions: equal questions per bucket
            positions = kwargs["positions"]
            fitting = range(1, min(default_buckets, positions) + 1)
            default_buckets = max(b for b in fitting if positions % b == 0)
        kwargs["n_buckets"] = _as_int("n_buckets", meta.get("n_buckets", default_buckets), 1)
        kwargs["n_buckets_explicit"] = "n_buckets" in meta
        if "pool" in meta:
            kwargs["pool"] = str(meta["pool"])
        if meta.get("data") is not None:
            kwargs["data"] = Path(str(meta["data"])).expanduser()
        for name in ("skip_ambiguous", "check_length"):
            if name in meta:
                kwargs[name] = _as_bool(name, meta[name])
        if "template" in meta:
            kwargs["template"] = str(meta["template"])
        if source == "official":
            built_only = sorted(
                k
                for k in ("context_length", "max_seq_lengths", "pool", "sets", "positions", "seed")
                if k in meta
            )
            if built_only:
                raise TaskSetupError(
                    f"metadata {', '.join(built_only)}: only for source=built (official data has fixed "
                    "~32K-token contexts, 4 sets)"
                )
        elif "data" in meta or "skip_ambiguous" in meta:
            raise TaskSetupError("metadata data / skip_ambiguous: only for source=official")
        return cls(**kwargs)

    def record(self) -> dict[str, Any]:
        """The settings as they go into the results file (``configs[task]["metadata"]``)."""
        out = asdict(self)
        out.pop("family")
        out.pop("n_buckets_explicit")
        out["context_length"] = list(out.pop("context_lengths")) if self.source == "built" else None
        out["data"] = str(self.data) if self.data else None
        return out


# --------------------------------------------------------------------------------------------------
# Docs


def radical_inverse(k: int, base: int = 2) -> float:
    """Van der Corput value of ``k`` in ``base`` (base 2: 0, 1/2, 1/4, 3/4, 1/8, ...)."""
    value, scale = 0.0, 1.0 / base
    while k:
        k, digit = divmod(k, base)
        value += digit * scale
        scale /= base
    return value


def spread_order(depths: Sequence[float], groups: Sequence[int]) -> list[int]:
    """A permutation of the docs whose every prefix is spread over depths and over contexts.

    Pick ``k`` aims at depth ``radical_inverse(k, 2)`` in the context chosen by ``radical_inverse(k, 3)``
    (the Halton sequence: two low-discrepancy coordinates that do not correlate) and takes that
    context's first unused doc at or after the target depth (else its deepest one). The target is
    the lower edge of an interval ``[i / 2**m, (i + 1) / 2**m)``, so the first 2**m picks fall in
    2**m distinct intervals whenever each interval holds a position: ``--limit N`` sees shallow,
    middle and deep needles.
    """
    import bisect

    pending: dict[int, list[tuple[float, int]]] = {}
    for i, (depth, group) in enumerate(zip(depths, groups, strict=True)):
        pending.setdefault(group, []).append((depth, i))
    for docs in pending.values():
        docs.sort()
    order: list[int] = []
    k = 0
    while pending:
        names = sorted(pending)
        group = names[int(radical_inverse(k, 3) * len(names))]
        docs = pending[group]
        target = radical_inverse(k, 2)
        j = min(bisect.bisect_left(docs, (target, -1)), len(docs) - 1)
        order.append(docs.pop(j)[1])
        if not docs:
            del pending[group]
        k += 1
    return order


def order_examples(examples: Sequence[ProbeExample], lengths: Sequence[int | None]) -> list[ProbeExample]:
    """The examples in :func:`spread_order` (contexts = (context length, set)); deterministic."""
    keyed = sorted(
        zip(examples, lengths, strict=True),
        key=lambda el: (el[1] or 0, el[0].set_id, el[0].position_id, el[0].row),
    )
    contexts = {key: n for n, key in enumerate(dict.fromkeys((length, ex.set_id) for ex, length in keyed))}
    order = spread_order(
        [ex.position_id / ex.n_items for ex, _ in keyed],
        [contexts[(length, ex.set_id)] for ex, length in keyed],
    )
    return [keyed[i][0] for i in order]


@dataclass(frozen=True, slots=True)
class ProbeSet:
    """The docs of one task and the distinct contexts they point to (each stored once)."""

    docs: list[dict[str, Any]]
    contexts: dict[str, str] = field(repr=False)
    probe_hash: str
    n_buckets: int


def _doc(
    ex: ProbeExample, context_id: str, context_index: int, n_buckets: int, context_length: int | None
) -> dict[str, Any]:
    return {
        "family": ex.family,
        "set_id": ex.set_id,
        "context_index": context_index,
        "position_id": ex.position_id,
        "n_items": ex.n_items,
        "bucket": bucket_of(ex.position_id, ex.n_items, n_buckets),
        "depth": ex.depth,
        "context_tokens": ex.context_tokens,
        "needle_token_offset": ex.needle_token_offset,
        "context_length": context_length,
        "tokenizer": ex.tokenizer,
        "context_id": context_id,
        "instruction": ex.instruction,
        "key": ex.key,
        "answer": ex.answer,
        "description": ex.description,
        "source": ex.source,
        "row": ex.row,
    }


def _built(opts: ValOptions) -> tuple[list[tuple[ProbeExample, int | None]], str]:
    from val_probing.build import ProbeSpec, cached_probes

    assert opts.tokenizer is not None  # checked in ValOptions
    tagged: list[tuple[ProbeExample, int | None]] = []
    hashes = []
    for length in opts.context_lengths:
        try:
            spec = ProbeSpec(
                family=opts.family,
                length=length,
                tokenizer=opts.tokenizer,
                pool=opts.pool,
                seed=opts.seed,
                sets=opts.sets,
                positions=opts.positions,
            )
        except ValueError as err:
            raise TaskSetupError(f"metadata: {err}") from err
        examples, digest = cached_probes(spec, progress=True)
        tagged.extend((ex, length) for ex in examples)
        hashes.append(digest)
    if len(hashes) == 1:
        return tagged, hashes[0]
    return tagged, hashlib.sha256(json.dumps(hashes).encode()).hexdigest()[:16]


def _official(opts: ValOptions) -> tuple[list[tuple[ProbeExample, int | None]], str]:
    from val_probing.official import OfficialDataError, load_official, skip_rows
    from val_probing.tokens import load_counter

    counter = load_counter(opts.tokenizer) if opts.tokenizer else None
    try:
        examples = load_official(opts.family, data=opts.data, counter=counter)
    except OfficialDataError as err:
        raise TaskSetupError(
            f"val_{opts.family}: {err} With lm-eval, pass the local copy as metadata: "
            '--metadata \'{"source": "official", "data": "DIR"}\''
        ) from err
    if opts.skip_ambiguous:
        skipped = skip_rows(examples)
        if skipped:
            log.info("%s: %d ambiguous rows left out (skip_rows)", opts.family, len(skipped))
        examples = [ex for ex in examples if ex.row not in skipped]
    digest = hashlib.sha256()
    for ex in examples:
        digest.update(json.dumps([ex.row, ex.context, ex.instruction, ex.answer]).encode())
    return [(ex, None) for ex in examples], digest.hexdigest()[:16]


def fitting_buckets(wanted: int, min_items: int, positions: int | None) -> int:
    """The largest bucket count <= ``wanted`` that every context can fill: at most the fewest items
    in a context, and, with ``positions``, a divisor of it (equal questions per bucket)."""
    top = min(wanted, min_items, positions or min_items)
    if positions is None:
        return top
    return max(b for b in range(1, top + 1) if positions % b == 0)


def resolve_buckets(opts: ValOptions, min_items: int) -> int:
    """``opts.n_buckets``, or fewer when it is the default and the contexts cannot fill it.

    An explicit ``n_buckets`` that cannot be met is an error; a default one adapts (logged).
    """
    n = opts.n_buckets
    if n <= min_items and (opts.positions is None or n <= opts.positions):
        return n
    if opts.n_buckets_explicit:
        raise TaskSetupError(
            f"val_{opts.family}: n_buckets={n} is more than the needle positions "
            f"(positions={opts.positions}, the smallest context holds {min_items} items); lower n_buckets"
        )
    fitted = fitting_buckets(n, min_items, opts.positions)
    log.warning(
        "val_%s: the contexts hold only %d items (positions=%s), fewer than the default %d buckets: "
        "using n_buckets=%d (set metadata n_buckets to choose)",
        opts.family,
        min_items,
        opts.positions,
        n,
        fitted,
    )
    return fitted


def load_probe_set(opts: ValOptions) -> ProbeSet:
    """Build (or read from the cache) the probes ``opts`` ask for, as lm-eval docs in spread order.

    ``ProbeSet.n_buckets`` is the bucket count used (:func:`resolve_buckets`).
    """
    tagged, probe_hash = _official(opts) if opts.source == "official" else _built(opts)
    if not tagged:
        raise TaskSetupError(f"val_{opts.family}: no probes (source={opts.source})")
    n_buckets = resolve_buckets(opts, min(ex.n_items for ex, _ in tagged))
    lengths = {id(ex): length for ex, length in tagged}
    # One index per (context length, set): with several lengths, set ids repeat, and the summary
    # treats each context as its own set (buckets are relative depths, averaged over all contexts).
    pairs = sorted({(length or 0, ex.set_id) for ex, length in tagged})
    context_index = {pair: i for i, pair in enumerate(pairs)}
    ordered = order_examples([ex for ex, _ in tagged], [length for _, length in tagged])
    contexts: dict[str, str] = {}
    ids: dict[str, str] = {}
    docs = []
    for ex in ordered:
        context_id = ids.get(ex.context)
        if context_id is None:
            context_id = ids[ex.context] = f"{lengths[id(ex)] or 'official'}/{ex.set_id}/{len(ids)}"
            contexts[context_id] = ex.context
        index = context_index[(lengths[id(ex)] or 0, ex.set_id)]
        docs.append(_doc(ex, context_id, index, n_buckets, lengths[id(ex)]))
    return ProbeSet(docs=docs, contexts=contexts, probe_hash=probe_hash, n_buckets=n_buckets)


def render_prompt(template: Template, context: str, instruction: str) -> str:
    """The prompt text: neutral (``plain``) or the FILM-7B training template (``film``)."""
    if template == "film":
        return film_prompt(context, instruction)
    return f"{context}\n\n{instruction}"


# --------------------------------------------------------------------------------------------------
# Scoring


# (context_index, position_id, n_items, score, context_length; 0 when the data has no length)
Item = tuple[int, int, int, float, int]


def process_results(
    doc: Mapping[str, Any], results: Sequence[str], *, lengths: Sequence[int] = ()
) -> dict[str, Any]:
    """Per-sample metrics: the reference score, and the item every summary metric aggregates.

    ``lengths``: the run's context lengths when there are several (one ``avg_<L>``/``gap_<L>`` each).
    """
    score = reference_score(doc["family"], results[0] if results else None, doc["answer"], doc["description"])
    item: Item = (
        int(doc["context_index"]),
        int(doc["position_id"]),
        int(doc["n_items"]),
        score,
        int(doc.get("context_length") or 0),
    )
    per_length = {name: item for length in lengths for name in length_metrics(length)}
    return (
        {"ref_score": score, "avg": item, "gap": item}
        | per_length
        | {bucket_metric(b): item for b in range(int(doc["n_buckets"]))}
    )


def bucket_metric(index: int) -> str:
    return f"bucket_{index:02d}"


def length_metrics(length: int) -> tuple[str, str]:
    """The per-length metric names: ``avg_<L>``, ``gap_<L>``."""
    return f"avg_{length}", f"gap_{length}"


def _summary(items: Iterable[Sequence[Any]], n_buckets: int, length: int | None = None) -> Summary:
    """The task's summary (of one context length, when given); lm-eval calls every aggregation with
    the same items, so it is computed once per length."""
    kept = tuple(
        (int(s), int(p), int(n), float(v), int(rest[0]) if rest else 0)
        for s, p, n, v, *rest in items
        if length is None or (rest and int(rest[0]) == length)
    )
    return _summary_of(kept, n_buckets)


@functools.lru_cache(maxsize=32)
def _summary_of(items: tuple[Item, ...], n_buckets: int) -> Summary:
    samples = [ScoredSample(s, p, n, v) for s, p, n, v, _length in items]
    return summarize(samples, n_buckets=n_buckets, n_boot=None)  # lm-eval reports no CI; score does


def aggregate_avg(items: Sequence[Sequence[Any]], *, n_buckets: int, length: int | None = None) -> float:
    return _summary(items, n_buckets, length).avg


def aggregate_gap(items: Sequence[Sequence[Any]], *, n_buckets: int, length: int | None = None) -> float:
    return _summary(items, n_buckets, length).gap


def aggregate_bucket(items: Sequence[Sequence[Any]], *, n_buckets: int, index: int) -> float | None:
    """Mean of bucket ``index`` (x100), None when no sample falls in it (e.g. with ``--limit``)."""
    for stat in _summary(items, n_buckets).buckets:
        if stat.index == index:
            return stat.mean
    return None


def metric_list(n_buckets: int, lengths: Sequence[int] = ()) -> list[dict[str, Any]]:
    """lm-eval's ``metric_list`` for ``n_buckets`` buckets (the aggregations close over it), with
    ``avg_<L>``/``gap_<L>`` for each of ``lengths`` (pass them only when there are several).

    ``ref_score`` is aggregated by lm-eval's own ``mean``: lm-eval knows its standard error.
    """

    def entry(name: str, agg: Callable[..., Any], higher: bool = True) -> dict[str, Any]:
        return {"metric": name, "aggregation": agg, "higher_is_better": higher}

    out = [
        entry("ref_score", lm_eval_mean),
        entry("avg", functools.partial(aggregate_avg, n_buckets=n_buckets)),
        entry("gap", functools.partial(aggregate_gap, n_buckets=n_buckets), higher=False),
    ]
    for length in lengths:
        avg_name, gap_name = length_metrics(length)
        out += [
            entry(avg_name, functools.partial(aggregate_avg, n_buckets=n_buckets, length=length)),
            entry(gap_name, functools.partial(aggregate_gap, n_buckets=n_buckets, length=length), False),
        ]
    out += [
        entry(bucket_metric(b), functools.partial(aggregate_bucket, n_buckets=n_buckets, index=b))
        for b in range(n_buckets)
    ]
    return out


# --------------------------------------------------------------------------------------------------
# Length guard


@dataclass(frozen=True, slots=True)
class ModelLimit:
    tokens: int
    source: str  # where the number came from, for the error message


def model_limit(meta: Mapping[str, Any]) -> ModelLimit | None:
    """The backend's maximum sequence length, as lm-eval will use it, from the merged metadata.

    ``max_length`` (hf, vllm, local-completions) or ``max_model_len`` (vllm) when given; else lm-eval's
    2048 for API backends (``base_url``); else the model config's length (HFLM and vLLM read the same
    fields); None when nothing names a model (e.g. ``--model dummy``).
    """
    for key in ("max_length", "max_model_len"):
        if meta.get(key) not in (None, ""):
            return ModelLimit(_as_int(key, meta[key], 1), f"model_args {key}")
    if meta.get("base_url"):
        return ModelLimit(API_DEFAULT_MAX_LENGTH, "lm-eval's default max_length for API models")
    pretrained = meta.get("pretrained")
    if not pretrained:
        return None
    return _config_limit(str(pretrained))


@functools.cache
def _config_limit(pretrained: str) -> ModelLimit:
    from transformers import AutoConfig, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(pretrained)
    except (OSError, ValueError) as err:
        raise TaskSetupError(
            f"cannot read the config of {pretrained!r} to check prompt lengths: {err}"
        ) from err
    text_config = getattr(config, "text_config", None) or config
    for attr in _SEQLEN_CONFIG_ATTRS:
        value = getattr(text_config, attr, None)
        if isinstance(value, int):
            return ModelLimit(value, f"{pretrained} config {attr}")
    tok = AutoTokenizer.from_pretrained(pretrained)
    if tok.model_max_length < 10**9:
        return ModelLimit(int(tok.model_max_length), f"{pretrained} tokenizer model_max_length")
    return ModelLimit(HF_DEFAULT_MAX_LENGTH, "HFLM's default max_length")


@functools.cache
def _hf_tokenizer(name: str) -> Any:
    from val_probing.tokens import load_counter

    counter = load_counter(name)
    tokenizer = getattr(counter, "tokenizer", None)
    if tokenizer is None:
        raise TaskSetupError(f"tokenizer {name!r} cannot count model tokens (use an HF tokenizer)")
    return tokenizer


def _backend_text(tokenizer: Any, prompt: str) -> str:
    """The text the backend tokenizes: lm-eval hands chat APIs a JSON list of messages."""
    if prompt.startswith("[{"):
        try:
            messages = json.loads(prompt)
        except json.JSONDecodeError:
            return prompt
        if getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n".join(str(m.get("content", "")) for m in messages)
    return prompt


def longest_prompt(tokenizer: Any, prompts: Sequence[str]) -> tuple[int, int]:
    """(index, token count) of the longest prompt, counted as the backend counts (special tokens on)."""
    i, counts = _exact_counts(tokenizer, [_backend_text(tokenizer, p) for p in prompts])
    return i, counts[i]


# Prompts of one context share all but their last lines: their shared prefix is tokenized once and
# only the rest of each prompt is, which is exact up to a few tokens at the cut (a line break).
_SHARED_PREFIX_MIN_CHARS = 4000
_APPROX_MARGIN = 32  # tokens; far above the error of cutting at a line break


def approx_lengths(tokenizer: Any, prompts: Sequence[str], groups: Sequence[Any]) -> list[int]:
    """Token counts of ``prompts`` (backend view), counting each group's shared prefix once.

    Exact for groups whose shared prefix is short; otherwise within a few tokens (see
    :func:`check_prompts_fit`, which re-counts exactly wherever the decision depends on it).
    """
    texts = [_backend_text(tokenizer, p) for p in prompts]
    by_group: dict[Any, list[int]] = {}
    for i, group in enumerate(groups):
        by_group.setdefault(group, []).append(i)
    out = [0] * len(texts)
    for members in by_group.values():
        texts_of = [texts[i] for i in members]
        shared = os.path.commonprefix(texts_of) if len(members) > 1 else ""  # noqa: RUF071 (text, not paths)
        cut = shared.rfind("\n") + 1
        if cut < _SHARED_PREFIX_MIN_CHARS:
            _i, counts = _exact_counts(tokenizer, [texts[i] for i in members])
            for i, n in zip(members, counts, strict=True):
                out[i] = n
            continue
        head = len(tokenizer(texts[members[0]][:cut], add_special_tokens=True)["input_ids"])
        tails = tokenizer([texts[i][cut:] for i in members], add_special_tokens=False)["input_ids"]
        for i, ids in zip(members, tails, strict=True):
            out[i] = head + len(ids)
    return out


def _exact_counts(tokenizer: Any, texts: Sequence[str], batch: int = 32) -> tuple[int, list[int]]:
    from tqdm import tqdm

    counts: list[int] = []
    for start in tqdm(range(0, len(texts), batch), desc="counting prompt tokens", leave=False):
        counts += [len(ids) for ids in tokenizer(list(texts[start : start + batch]))["input_ids"]]
    return max(range(len(counts)), key=counts.__getitem__), counts


def check_prompts_fit(
    task: str,
    prompts: Sequence[str],
    tokenizer: Any,
    limit: ModelLimit,
    max_gen_toks: int,
    groups: Sequence[Any] | None = None,
) -> int:
    """Raise :class:`PromptTooLong` unless every prompt plus ``max_gen_toks`` fits; the longest length.

    ``groups`` (e.g. the context of each prompt) lets prompts sharing a context be counted from one
    tokenization of that context. Counts are exact wherever the outcome depends on them: when the
    estimate is within a margin of the limit, the prompts near the longest are tokenized in full.
    """
    if not prompts:
        return 0
    approx = approx_lengths(tokenizer, prompts, groups if groups is not None else range(len(prompts)))
    top = max(approx)
    if top + _APPROX_MARGIN + max_gen_toks <= limit.tokens:
        return top
    near = [i for i, n in enumerate(approx) if n >= top - 2 * _APPROX_MARGIN]
    _j, exact = _exact_counts(tokenizer, [_backend_text(tokenizer, prompts[i]) for i in near])
    longest = max(exact)
    if longest + max_gen_toks > limit.tokens:
        raise PromptTooLong(
            f"{task}: the longest prompt has {longest} tokens; with max_gen_toks={max_gen_toks} it needs "
            f"{longest + max_gen_toks} but the model's limit is {limit.tokens} ({limit.source}). lm-eval "
            "would cut the prompt from the left (and the needles with it). Lower context_length, or raise "
            "max_length / max_model_len if the model supports it."
        )
    return longest


# --------------------------------------------------------------------------------------------------
# The task


class ValTask(ConfigurableTask):
    """One VAL probing task; the family comes from the YAML (``metadata: {family: ...}`` via task name)."""

    def __init__(self, config: dict[str, Any] | None = None, **kwargs: Any) -> None:
        cfg = dict(config or {})
        cfg.pop("class", None)
        meta = dict(cfg.get("metadata") or {})
        family = str(cfg.get("task", "")).removeprefix("val_")
        if family not in FAMILIES:
            raise TaskSetupError(f"task {cfg.get('task')!r}: expected val_document, val_code or val_database")
        self.family: Family = family  # type: ignore[assignment]
        options = ValOptions.from_metadata(self.family, meta)
        self.limit = model_limit(meta) if options.check_length else None
        if self.limit is not None and options.source == "built":
            too_long = [n for n in options.context_lengths if n >= self.limit.tokens]
            if too_long:
                raise PromptTooLong(
                    f"{cfg.get('task')}: context_length {too_long} is not below the model's limit "
                    f"{self.limit.tokens} ({self.limit.source})"
                )
        # The probes are built before lm-eval sees the metric list: the bucket count may adapt to them.
        self.probes: ProbeSet = load_probe_set(options)
        self.options = replace(options, n_buckets=self.probes.n_buckets)
        lengths = self.options.context_lengths if len(self.options.context_lengths) > 1 else ()
        if self.options.source == "official":
            lengths = ()
        cfg["metric_list"] = metric_list(self.options.n_buckets, lengths)
        cfg["process_results"] = functools.partial(process_results, lengths=lengths)
        cfg["doc_to_text"] = self.prompt
        super().__init__(config=cfg, **kwargs)

    # -- docs
    def download(self, dataset_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        import datasets

        docs = [doc | {"n_buckets": self.options.n_buckets} for doc in self.probes.docs]
        self.dataset = datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)})
        self.config.metadata = {
            **(self.config.metadata or {}),
            **self.options.record(),
            "family": self.family,
            "probe_hash": self.probes.probe_hash,
            "probe_version": _probe_version(),
            "n_docs": len(docs),
        }

    def prompt(self, doc: Mapping[str, Any]) -> str:
        return render_prompt(
            self.options.template, self.probes.contexts[doc["context_id"]], doc["instruction"]
        )

    # -- the guard
    def build_all_requests(self, *, apply_chat_template: bool = False, **kwargs: Any) -> None:
        if apply_chat_template and self.options.template == "film":
            raise TaskSetupError(
                f"{self.config.task}: template=film already is Mistral's [INST] format; drop "
                "--apply_chat_template (or use the default template with it)"
            )
        super().build_all_requests(apply_chat_template=apply_chat_template, **kwargs)
        if not self.options.check_length:
            log.warning("%s: check_length=false, prompts may be cut by lm-eval", self.config.task)
            return
        if self.limit is None:
            log.warning(
                "%s: no model length limit known (no pretrained/max_length in model_args): prompts are "
                "not checked against the model's context window",
                self.config.task,
            )
            return
        tokenizer_name = self.options.tokenizer
        if tokenizer_name is None:
            log.warning("%s: no tokenizer known, prompt lengths are not checked", self.config.task)
            return
        prompts = [inst.arguments[0] for inst in self._instances]
        contexts = [inst.doc["context_id"] for inst in self._instances]
        max_gen = int((self.config.generation_kwargs or {}).get("max_gen_toks", 256))
        tokenizer = _hf_tokenizer(tokenizer_name)
        longest = check_prompts_fit(self.config.task, prompts, tokenizer, self.limit, max_gen, contexts)
        log.info(
            "%s: longest prompt %d tokens + %d new <= %d (%s)",
            self.config.task,
            longest,
            max_gen,
            self.limit.tokens,
            self.limit.source,
        )


def _probe_version() -> str:
    from val_probing.build import PROBE_VERSION

    return PROBE_VERSION
