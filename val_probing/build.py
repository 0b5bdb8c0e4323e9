"""Build VAL probes: fixed contexts filled from a pool to a token budget, one question per needle position.

For each set, the pool (shuffled once with the spec's seed) is read in order and items are added while
they fit (see :func:`build_probes` and docs/probes.md for the exact rule). Every key is unique in its
context, so every question has one answer. The context is tokenized once per set: the exact token count
and every needle's token offset come from that one pass. Sets are disjoint: set ``s + 1`` continues in
the shuffled pool where set ``s`` stopped.

``cached_probes(spec)`` wraps this with tokenizer and pool loading and a cache keyed on everything that
determines the output (tokenizer and pool by content fingerprint, not by name).
"""

from __future__ import annotations

import bisect
import logging
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from val_probing.errors import ValProbingError
from val_probing.files import (
    CacheInvalid,
    OutputError,
    RecordError,
    file_sha256,
    read_verified_jsonl,
    remove_orphans,
    write_verified_jsonl,
)
from val_probing.fingerprints import digest, tokenizer_fingerprint
from val_probing.paths import cache_dir, cache_root
from val_probing.pools import EMBEDDED, PoolItem, pool_path, read_pool
from val_probing.probes import FamilySpec, get_family
from val_probing.probes.base import Floor
from val_probing.probes.checks import floor_warning, probe_floor, verify_probe_set
from val_probing.records import FAMILIES, Family, ProbeExample
from val_probing.token_counters import TokenCounter
from val_probing.tokenizer_names import is_hub_name, load_counter
from val_probing.typed import is_int

log = logging.getLogger(__name__)

# Bump whenever the same spec, tokenizer and pool would give different probes.
PROBE_VERSION = "2"  # 2: needles in the middle of equal slices (was: first to last item)
_CHUNK = 512  # pool items counted per tokenizer call


class BuildError(ValProbingError):
    """Probes cannot be built with these settings."""


class PoolTooSmall(BuildError):
    """The pool ran out before a context reached its token budget."""


class BudgetTooSmall(BuildError):
    """The token budget cannot hold a single item."""


class TooFewItems(BuildError):
    """Fewer items fit in a context than needle positions were asked for."""


class FloorTooHigh(BuildError):
    """A constant answer scores above the family's threshold on these probes (``--strict``)."""


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """What to build. ``positions=None`` asks one question per item (the official layout)."""

    family: Family
    length: int
    tokenizer: str
    pool: str = EMBEDDED
    seed: int = 0
    sets: int = 4
    positions: int | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family: {self.family!r} is not one of {FAMILIES}")
        for name, minimum in (("length", 1), ("sets", 1), ("seed", 0)):
            value = getattr(self, name)
            if not is_int(value) or value < minimum:
                raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
        if self.positions is not None and (not is_int(self.positions) or self.positions < 1):
            raise ValueError(f"positions: expected None or an int >= 1, got {self.positions!r}")
        for name in ("tokenizer", "pool"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name}: expected a non-empty string")


def needle_positions(n_items: int, positions: int | None) -> list[int]:
    """``positions`` needle indices, one in the middle of each of ``positions`` equal slices; None = all.

    Slice ``j`` holds the items ``ceil(j * n / P) .. ceil((j + 1) * n / P) - 1`` and the needle is its
    (lower) middle item. Every slice lies inside one position bucket of ``buckets.bucket_of`` whenever
    the bucket count divides ``P``, so each bucket gets exactly ``P / n_buckets`` questions and the
    mean depth is one half (spreading from the first to the last item instead left buckets uneven,
    some empty).
    """
    if positions is None:
        return list(range(n_items))
    if positions > n_items:
        raise TooFewItems(
            f"positions={positions} asks for more needles than the {n_items} items in the context"
        )

    def slice_start(j: int) -> int:
        return -(-j * n_items // positions)  # ceil(j * n / P) in integers

    return [(slice_start(j) + slice_start(j + 1) - 1) // 2 for j in range(positions)]


# --------------------------------------------------------------------------------------------------
# Filling one context


class _Candidates:
    """Pool items in the build's shuffled order, rendered, with token costs counted lazily in chunks."""

    def __init__(self, fam: FamilySpec, items: Sequence[PoolItem], counter: TokenCounter) -> None:
        self.fam = fam
        self.items = items
        self.counter = counter
        self.rendered = [fam.render(item) for item in items]
        self.uniques = [fam.unique_strings(item) for item in items]
        self._costs: list[int | None] = [None] * len(items)
        self.counted = 0

    def __len__(self) -> int:
        return len(self.items)

    def cost(self, i: int) -> int:
        """Tokens of the item preceded by the separator, as it appears after another item."""
        cached = self._costs[i]
        if cached is not None:
            return cached
        end = min(i + _CHUNK, len(self.items))
        texts = [self.fam.SEPARATOR + text for text in self.rendered[i:end]]
        for j, n in enumerate(self.counter.count_batch(texts), start=i):
            self._costs[j] = n
        self.counted += end - i
        return self._costs[i]  # type: ignore[return-value]  # the loop just set every cost in [i, end)

    def first_cost(self, i: int) -> int:
        """Tokens of the item alone, as the first item of a context."""
        return self.counter.count(self.rendered[i])


class _Uniqueness:
    """Which candidates may join a context without making any key (or sentence/header) ambiguous.

    Unique strings never contain the separator (a newline) and items are joined by it, so a string
    occurs in the context exactly as often as it occurs in the items. A candidate is accepted only if
    each of its unique strings occurs once in its own text and in no chosen item, and no chosen item's
    unique string occurs in it; by induction each occurs exactly once in the context. No check of the
    assembled context is needed.
    """

    def __init__(self, separator: str) -> None:
        self.separator = separator
        self.haystack = ""
        self.strings: list[str] = []

    def conflicts(self, rendered: str, uniques: Sequence[str]) -> bool:
        if any(rendered.count(u) != 1 for u in uniques):
            return True
        if any(u in self.haystack for u in uniques):
            return True
        return any(u in rendered for u in self.strings)

    def add(self, rendered: str, uniques: Sequence[str]) -> None:
        self.haystack += self.separator + rendered
        self.strings.extend(uniques)


@dataclass(slots=True)
class _Fill:
    """A context being filled; ``next`` is the first pool index it did not consume."""

    chosen: list[int] = field(default_factory=list)
    estimate: int = 0
    next: int = 0
    rejected: int = 0


@dataclass(frozen=True, slots=True)
class _Context:
    chosen: tuple[int, ...]
    text: str
    item_starts: tuple[int, ...]  # character offset of each item
    token_starts: tuple[int, ...]  # character offset of each token
    next: int

    @property
    def tokens(self) -> int:
        return len(self.token_starts)

    def token_offset(self, j: int) -> int:
        """Tokens of the context that start before item ``j``."""
        return bisect.bisect_left(self.token_starts, self.item_starts[j])


def _greedy(cands: _Candidates, fill: _Fill, uniq: _Uniqueness, length: int, set_id: int) -> None:
    """Add items from ``fill.next`` while their estimated cost fits; stop at the first that does not."""
    while True:
        i = fill.next
        if i >= len(cands):
            if fill.chosen and fill.estimate >= length:
                return  # the pool ran out exactly as the context reached its budget: it is full
            raise PoolTooSmall(
                f"set {set_id}: the pool ran out ({len(cands)} items; {fill.rejected} of those tried for "
                "this set were rejected because their key would not be unique) after "
                f"{len(fill.chosen)} items and about {fill.estimate} of {length} tokens. "
                "Use a larger pool, fewer --sets or a smaller --length."
            )
        if uniq.conflicts(cands.rendered[i], cands.uniques[i]):
            fill.rejected += 1
            fill.next += 1
            continue
        cost = cands.cost(i) if fill.chosen else cands.first_cost(i)
        if fill.estimate + cost > length:
            if not fill.chosen:
                raise BudgetTooSmall(
                    f"length={length} tokens cannot hold one item: the first item of set {set_id} alone has "
                    f"{cost} tokens ({cands.counter.name})"
                )
            return
        uniq.add(cands.rendered[i], cands.uniques[i])
        fill.chosen.append(i)
        fill.estimate += cost
        fill.next += 1


def _assemble(cands: _Candidates, chosen: Sequence[int], next_index: int) -> _Context:
    sep = cands.fam.SEPARATOR
    item_starts, offset = [], 0
    for i in chosen:
        item_starts.append(offset)
        offset += len(cands.rendered[i]) + len(sep)
    text = sep.join(cands.rendered[i] for i in chosen)
    return _Context(
        tuple(chosen), text, tuple(item_starts), tuple(cands.counter.token_starts(text)), next_index
    )


def _fit_context(cands: _Candidates, start: int, length: int, set_id: int) -> _Context:
    """Greedy fill by estimated costs, then exact: one tokenization of the context, corrected if needed.

    The estimate (first item alone + each later item with its separator) is usually exact. When the
    assembled context has more tokens than the budget, trailing items are dropped until it fits; when it
    has fewer (tokens merged across item boundaries), filling resumes from the exact count.
    """
    fill = _Fill(next=start)
    uniq = _Uniqueness(cands.fam.SEPARATOR)
    _greedy(cands, fill, uniq, length, set_id)
    ctx = _assemble(cands, fill.chosen, fill.next)
    while ctx.tokens < fill.estimate:  # merges freed room: continue from the exact count
        before = len(fill.chosen)
        fill.estimate = ctx.tokens
        _greedy(cands, fill, uniq, length, set_id)
        if len(fill.chosen) == before:
            break
        ctx = _assemble(cands, fill.chosen, fill.next)
    while ctx.tokens > length:
        keep = len(ctx.chosen) - 1
        for j in range(len(ctx.chosen) - 1, 0, -1):  # the longest prefix whose tokens end within the budget
            end = ctx.item_starts[j] - len(cands.fam.SEPARATOR)
            keep = j
            if bisect.bisect_left(ctx.token_starts, end) <= length:
                break
        if keep < 1:
            raise BudgetTooSmall(f"length={length} tokens cannot hold one item of set {set_id}")
        ctx = _assemble(cands, ctx.chosen[:keep], ctx.chosen[keep])
    return ctx


def _examples(
    spec: ProbeSpec, cands: _Candidates, ctx: _Context, set_id: int, row: int
) -> list[ProbeExample]:
    fam = cands.fam
    examples: list[ProbeExample] = []
    for p in needle_positions(len(ctx.chosen), spec.positions):
        item = cands.items[ctx.chosen[p]]
        key = fam.key(item)
        answer, description = fam.gold(item)
        examples.append(
            ProbeExample(
                family=spec.family,
                set_id=set_id,
                position_id=p,
                n_items=len(ctx.chosen),
                needle_token_offset=ctx.token_offset(p),
                context_tokens=ctx.tokens,
                tokenizer=cands.counter.name,
                context=ctx.text,
                instruction=fam.instruction(key),
                key=key,
                answer=answer,
                description=description,
                source="built",
                row=row + len(examples),
            )
        )
    return examples


def build_probes(
    spec: ProbeSpec,
    counter: TokenCounter,
    items: Sequence[PoolItem],
    rng: random.Random,
    *,
    progress: bool = False,
) -> list[ProbeExample]:
    """Probes for ``spec`` from pool ``items`` (pure: same inputs and rng state, same output).

    The pool is shuffled with ``rng``; set 0 takes items from the start of that order, each later set
    continues where the previous one stopped. Within a set, items that would make a key ambiguous are
    skipped; the first other item that does not fit ends the context (so contexts are as long as the
    budget allows, never longer: ``context_tokens <= spec.length``).
    """
    fam = get_family(spec.family)
    order = list(range(len(items)))
    rng.shuffle(order)
    cands = _Candidates(fam, [items[i] for i in order], counter)
    examples: list[ProbeExample] = []
    start = 0
    bar = tqdm(range(spec.sets), desc=f"{spec.family} sets", unit="set", disable=not progress)
    for set_id in bar:
        ctx = _fit_context(cands, start, spec.length, set_id)
        examples.extend(_examples(spec, cands, ctx, set_id, len(examples)))
        start = ctx.next
        bar.set_postfix(items=len(ctx.chosen), tokens=ctx.tokens)
    log.debug("%s: counted %d of %d pool items", spec.family, cands.counted, len(cands))
    return examples


# --------------------------------------------------------------------------------------------------
# The cache


def probe_hash(spec: ProbeSpec, tokenizer_id: str, pool_sha256: str) -> str:
    """Identifies the probes' content: the spec with its tokenizer and pool resolved to fingerprints."""
    return digest(
        {
            **asdict(spec),
            "probe_version": PROBE_VERSION,
            "tokenizer_id": tokenizer_id,
            "pool_sha256": pool_sha256,
        }
    )


def cache_path(spec: ProbeSpec, digest: str) -> Path:
    return cache_root() / "probes" / f"{spec.family}-{spec.length}-{digest}.jsonl"


_SET_RECORD = "val_probing_probe_set"


def _set_record(spec: ProbeSpec, digest: str, floor: Floor) -> dict[str, Any]:
    """The first row of a cache entry: what the entry was built for and what its checks found. It is
    a row, so the header's sha256 covers it: an entry copied over another with only its header's
    ``key`` edited still names its own key and spec here, and is rejected."""
    return {
        _SET_RECORD: {
            "key": digest,
            "spec": asdict(spec),
            "probe_version": PROBE_VERSION,
            "constant_floor": floor.to_dict(),
        }
    }


def _read_cache(path: Path, spec: ProbeSpec, digest: str) -> list[ProbeExample] | None:
    """The cached probes when the file is whole, was written for ``digest`` and ``spec`` and its rows
    pass the probe-set checks (:mod:`val_probing.probes.checks`, the recorded floor recomputed);
    None (one warning naming the file) when not, so the caller rebuilds."""
    try:
        first, *rows = read_verified_jsonl(path, digest)
        examples = [ProbeExample.from_dict(obj, where=f"{path}:{i}") for i, obj in enumerate(rows, start=3)]
        verify_probe_set(examples, str(path))
        if first != _set_record(spec, digest, probe_floor(examples)):
            raise CacheInvalid(
                f"{path}: its probe-set record is not that of key {digest} and this spec "
                "(another entry copied here, or an older format)"
            )
        return examples
    except (CacheInvalid, RecordError, ValueError) as err:  # ValueError: no rows, no probe-set record
        log.warning("%s; rebuilding the cached probes", err)
        return None


def _write_cache(
    path: Path, spec: ProbeSpec, digest: str, examples: Sequence[ProbeExample], floor: Floor
) -> None:
    """Cache the probes; a failed write is a warning (the probes are built and still returned)."""
    try:
        rows = [_set_record(spec, digest, floor), *(ex.to_dict() for ex in examples)]
        write_verified_jsonl(path, digest, rows)
    except OutputError as err:
        log.warning("%s; the probes are built but not cached", err)


def check_floor(examples: Sequence[ProbeExample], *, strict: bool = False) -> Floor:
    """The set's constant-answer floor, warned about above the family's ``FLOOR_WARN``
    (``strict``: a :class:`FloorTooHigh` error instead)."""
    floor = probe_floor(examples)
    message = floor_warning(examples[0].family, floor)
    if message is not None:
        if strict:
            raise FloorTooHigh(f"{message} (refused: --strict)")
        log.warning("%s", message)
    return floor


def cached_probes(
    spec: ProbeSpec, *, use_cache: bool = True, progress: bool = False, strict: bool = False
) -> tuple[list[ProbeExample], str]:
    """Probes for ``spec`` and their hash, built once and then read from ``<cache>/probes/``.

    A cache file is used only when its header says it was written for this probe hash, its rows are
    the ones recorded there (count and sha256), its probe-set record names this hash and spec, and
    its rows pass the probe-set checks; otherwise it is rebuilt with a warning. Before a build the
    cache folder is checked writable (``OutputError`` naming it; ``use_cache=False`` builds without
    it); a write that still fails at the end only warns, and the probes are returned. A constant-answer
    floor above the family's threshold is a warning (``strict``: :class:`FloorTooHigh`).
    """
    counter = None
    if is_hub_name(spec.tokenizer):
        counter = load_counter(spec.tokenizer)  # a hub name: fingerprint what was actually loaded
    path = pool_path(spec.family, spec.pool)
    digest = probe_hash(spec, tokenizer_fingerprint(spec.tokenizer, counter), file_sha256(path))
    cached = cache_path(spec, digest)
    if use_cache:
        remove_orphans(cached.parent)  # a killed build's leftovers go on the next run, hit or miss
    if use_cache and cached.is_file():
        examples = _read_cache(cached, spec, digest)
        if examples is not None:
            log.debug("probes %s read from the cache (%s)", digest, cached)
            check_floor(examples, strict=strict)
            return examples, digest
    if use_cache:
        try:
            cache_dir("probes")
        except OutputError as err:
            raise OutputError(f"{err} (or pass --no-cache to build without the cache)") from err
    counter = counter or load_counter(spec.tokenizer)
    items = read_pool(spec.family, path)
    examples = build_probes(spec, counter, items, random.Random(spec.seed), progress=progress)
    verify_probe_set(examples, f"the probes built from {path}")
    floor = check_floor(examples, strict=strict)
    if use_cache:
        _write_cache(cached, spec, digest, examples, floor)
    return examples, digest
