"""The docs of a VAL task: probes built (or read from the cache) or read from the official data,
each distinct context stored once, in the spread order of :mod:`val_probing.adapter.order`."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from val_probing.adapter.options import TaskSetupError, Template, ValOptions
from val_probing.adapter.order import example_order
from val_probing.buckets import bucket_of, fitting_buckets
from val_probing.build import ProbeSpec, cached_probes
from val_probing.fingerprints import digest
from val_probing.official import OfficialDataError, film_prompt, load_official, skip_rows
from val_probing.probes.base import Floor
from val_probing.probes.checks import probe_floor
from val_probing.records import ProbeExample
from val_probing.tokenizer_names import load_counter

log = logging.getLogger(__name__)


class Tagged(NamedTuple):
    """A probe and the context length it was built for (None: official data, ~32K tokens)."""

    example: ProbeExample
    length: int | None


@dataclass(frozen=True, slots=True)
class ProbeSet:
    """The docs of one task and the distinct contexts they point to (each stored once)."""

    docs: list[dict[str, Any]]
    contexts: dict[str, str] = field(repr=False)
    probe_hash: str
    n_buckets: int
    floor: Floor | None = None  # the constant-answer floor of the docs (val_probing.probes.checks)


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


def _built(opts: ValOptions) -> tuple[list[Tagged], str]:
    if opts.tokenizer is None:
        raise TaskSetupError("source=built needs a tokenizer")  # ValOptions rejects this already
    tagged: list[Tagged] = []
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
        examples, probe_hash = cached_probes(spec, progress=True)
        tagged.extend(Tagged(ex, length) for ex in examples)
        hashes.append(probe_hash)
    if len(hashes) == 1:
        return tagged, hashes[0]
    return tagged, digest(hashes)  # a list of strings: the same bytes as before keys were sorted


def _official(opts: ValOptions) -> tuple[list[Tagged], str]:
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
    content = hashlib.sha256()
    for ex in examples:
        content.update(json.dumps([ex.row, ex.context, ex.instruction, ex.answer]).encode())
    return [Tagged(ex, None) for ex in examples], content.hexdigest()[:16]


def resolve_buckets(opts: ValOptions, min_items: int) -> int:
    """``opts.n_buckets``, or fewer when it is the default and the contexts cannot fill it.

    An explicit ``n_buckets`` that cannot be met is an error; a default one adapts (logged), by the
    one default-bucket rule :func:`val_probing.buckets.fitting_buckets`.
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


def _context_label(length: int | None) -> str:
    return "official" if length is None else str(length)


def load_probe_set(opts: ValOptions) -> ProbeSet:
    """Build (or read from the cache) the probes ``opts`` ask for, as lm-eval docs in spread order.

    ``ProbeSet.n_buckets`` is the bucket count used (:func:`resolve_buckets`).
    """
    tagged, probe_hash = _official(opts) if opts.source == "official" else _built(opts)
    if not tagged:
        raise TaskSetupError(f"val_{opts.family}: no probes (source={opts.source})")
    n_buckets = resolve_buckets(opts, min(t.example.n_items for t in tagged))
    # One index per (context length, set): with several lengths, set ids repeat, and the summary
    # treats each context as its own set (buckets are relative depths, averaged over all contexts).
    pairs = sorted({(t.length or 0, t.example.set_id) for t in tagged})
    context_index = {pair: i for i, pair in enumerate(pairs)}
    order = example_order([t.example for t in tagged], [t.length for t in tagged])
    contexts: dict[str, str] = {}
    ids: dict[str, str] = {}
    docs = []
    for ex, length in (tagged[i] for i in order):
        context_id = ids.get(ex.context)
        if context_id is None:
            context_id = ids[ex.context] = f"{_context_label(length)}/{ex.set_id}/{len(ids)}"
            contexts[context_id] = "" if opts.closed_book else ex.context  # closed book: no context
        doc = _doc(ex, context_id, context_index[(length or 0, ex.set_id)], n_buckets, length)
        docs.append(doc | {"closed_book": True} if opts.closed_book else doc)
    floor = probe_floor([t.example for t in tagged])
    return ProbeSet(docs=docs, contexts=contexts, probe_hash=probe_hash, n_buckets=n_buckets, floor=floor)


def render_prompt(template: Template, context: str, instruction: str) -> str:
    """The prompt text: neutral (``plain``) or the FILM-7B training template (``film``); with no
    context (``closed_book``), the instruction alone."""
    if not context and template == "plain":
        return instruction
    if template == "film":
        return film_prompt(context, instruction)
    return f"{context}\n\n{instruction}"
