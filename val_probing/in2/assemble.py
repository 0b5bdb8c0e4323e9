"""Long contexts for IN2 examples, and the data mixture.

A fine-grained or integration QA pair becomes a training example whose context is the needed segment(s)
shuffled among random filler segments of the corpus, with the target context length spread evenly over a
range (default 4K-32K tokens). Fillers are drawn at random and rejected when they would overshoot the
target (reject sampling); a corpus that cannot fill the range is an error, never a shorter context.
Every example records where its needed segments landed: segment index and token offset in the context.

Short-context examples keep the original text (the needed segment among its neighbours in the same text).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Literal, get_args

from val_probing.errors import ValProbingError
from val_probing.in2.qa import QAPair
from val_probing.in2.segment import Segment
from val_probing.token_counters import TokenCounter, token_index_at

ExampleKind = Literal["fine_grained", "integration", "short_context", "general"]
EXAMPLE_KINDS: tuple[ExampleKind, ...] = get_args(ExampleKind)
SEGMENT_SEPARATOR = "\n\n"
# Where the needed segments of a long context go: "uniform" (IN2: any slot among the fillers), "edges"
# (issue 13's control arm: within the first or last EDGE_FRACTION of the context, by filler rank), and
# the two arms of issue 24, defined by token depth (NeedlePosition.depth) so that they cannot overlap:
# "middle" (every needle's depth in MIDDLE) and "ends" (every needle's depth outside it).
Placement = Literal["uniform", "edges", "middle", "ends"]
PLACEMENTS: tuple[Placement, ...] = get_args(Placement)
EDGE_FRACTION = 0.1
# The one owner of the depth boundaries: each depth-defined placement's regions, [lo, hi) (1.0 closed)
MIDDLE: tuple[float, float] = (0.25, 0.75)
DEPTH_REGIONS: Mapping[Placement, tuple[tuple[float, float], ...]] = {
    "middle": (MIDDLE,),
    "ends": ((0.0, MIDDLE[0]), (MIDDLE[1], 1.0)),
}
DEPTH_PLACEMENTS: tuple[Placement, ...] = tuple(DEPTH_REGIONS)
PLACEMENT_TRIES = 100  # slot draws (place_needed) per context before a depth placement gives up
ASSEMBLY_TRIES = 20  # joins (assemble_context) per context before the real depths are given up on


class ContextRangeError(ValProbingError):
    """The corpus (with this tokenizer) cannot fill the requested context lengths."""


class PlacementError(ValProbingError):
    """The needed segments cannot be placed at the depths a placement asks for."""


def in_region(placement: Placement, depth: float) -> bool:
    """Whether a needle at ``depth`` (its first token / context tokens) lies in a depth-defined
    placement's region (:data:`DEPTH_REGIONS`: ``middle`` [0.25, 0.75); ``ends`` [0, 0.25) or [0.75, 1])."""
    regions = DEPTH_REGIONS.get(placement)
    if regions is None:
        raise ValProbingError(
            f"placement: {placement!r} is not defined by depth (one of {', '.join(DEPTH_PLACEMENTS)})"
        )
    return any(lo <= depth < hi or depth == hi == 1.0 for lo, hi in regions)


@dataclass(frozen=True, slots=True)
class NeedlePosition:
    """Where a needed segment sits: its index among the context's segments and its first token."""

    segment_index: int
    token_offset: int
    depth: float  # token_offset / context_tokens, in [0, 1)


@dataclass(frozen=True, slots=True)
class Assembled:
    """A context made of whole segments, with the positions of the needed ones."""

    context: str
    context_tokens: int
    n_segments: int
    needles: tuple[NeedlePosition, ...]


@dataclass(frozen=True, slots=True)
class TrainingExample:
    kind: ExampleKind
    instruction: str
    answer: str
    context: str | None = None  # None for general instruction data
    context_tokens: int = 0
    n_segments: int = 0
    needles: tuple[NeedlePosition, ...] = ()
    sources: tuple[str, ...] = ()  # "text_id#segment" of the needed segments, or "file:line" for general
    system: str | None = None  # general data may carry its own system prompt

    def __post_init__(self) -> None:
        if self.kind not in EXAMPLE_KINDS:
            raise ValueError(f"kind: {self.kind!r} is not one of {EXAMPLE_KINDS}")
        if not self.instruction.strip() or not self.answer.strip():
            raise ValueError("instruction and answer must be non-empty")
        if (self.context is None) != (self.kind == "general"):
            raise ValueError("context: general examples have none, every other kind has one")
        if self.context is not None and not self.needles:
            raise ValueError("needles: a context example records where its needed segments are")


@dataclass(frozen=True, slots=True)
class LengthRange:
    """Target context lengths, spread evenly over [min_tokens, max_tokens]. A context is accepted when its
    segments sum to within ``slack_tokens`` of its target, inside the range (the separators between
    segments add a few tokens on top; every example records its exact count)."""

    min_tokens: int = 4096
    max_tokens: int = 32768
    slack_tokens: int = 256
    max_rejections: int = 10_000  # filler draws rejected per context before giving up

    def __post_init__(self) -> None:
        if not 0 < self.min_tokens <= self.max_tokens:
            raise ValProbingError(
                f"context range: need 0 < min <= max, got {self.min_tokens}..{self.max_tokens}"
            )
        if self.slack_tokens < 1 or self.max_rejections < 1:
            raise ValProbingError("context range: slack_tokens and max_rejections must be positive")


def spread_targets(n: int, length: LengthRange, rng: random.Random) -> list[int]:
    """``n`` target lengths, one uniform draw in each of ``n`` equal strata of the range, in random order."""
    width = (length.max_tokens - length.min_tokens) / max(n, 1)
    targets = [round(length.min_tokens + width * (i + rng.random())) for i in range(n)]
    rng.shuffle(targets)
    return [min(length.max_tokens, max(length.min_tokens, t)) for t in targets]


def _draw_fillers(
    needed: Sequence[Segment], pool: Sequence[Segment], target: int, length: LengthRange, rng: random.Random
) -> list[Segment]:
    exclude = {s.text_id for s in needed}  # no filler from a needed segment's own text
    total = sum(s.n_tokens for s in needed)
    low = max(length.min_tokens, target - length.slack_tokens)
    high = min(length.max_tokens, target + length.slack_tokens)
    if total > high:
        raise ContextRangeError(
            f"the needed segments alone hold {total} tokens, more than the {high}-token context asked for: "
            "raise --max-context or lower the segments per integration question"
        )
    chosen: list[Segment] = []
    used: set[int] = set()
    rejections = 0
    while True:
        i = rng.randrange(len(pool))
        cand = pool[i]
        if i in used or cand.text_id in exclude:
            fits = False
        elif total + cand.n_tokens > high:
            if total >= low:  # in the window and this one would overshoot it: done
                break
            fits = False
        elif total >= low and abs(total + cand.n_tokens - target) >= abs(total - target):
            break  # in the window, and adding would move away from the target: done (no bias to either side)
        else:
            fits = True
        if fits:
            used.add(i)
            chosen.append(cand)
            total += cand.n_tokens
            continue
        rejections += 1
        if rejections > length.max_rejections:
            raise ContextRangeError(
                f"could not fill a {low}..{high}-token context from {len(pool)} segments "
                f"(reached {total} tokens after {rejections} rejected draws): the corpus is too small "
                "for this context range, or its segments too long for the slack; lower --max-context, "
                "raise --slack-tokens or add texts"
            )
    return chosen


def edge_band(n_fillers: int, fraction: float = EDGE_FRACTION) -> int:
    """How many fillers may sit between an edge-placed needed segment and the nearer end of the context:
    ``floor(fraction * n_fillers)`` (0 for short contexts: the needed segment is first or last)."""
    return int(fraction * n_fillers)


def place_needed(
    fillers: Sequence[Segment],
    needed: Sequence[Segment],
    rng: random.Random,
    placement: Placement = "uniform",
    edge_fraction: float = EDGE_FRACTION,
) -> list[tuple[Segment, int | None]]:
    """The context's segment order: fillers with the needed segments inserted (tagged with their rank).

    ``uniform`` (IN2): each needed segment goes to a uniformly drawn slot among the segments so far.
    ``edges`` (control): each needed segment goes to the head or the tail of the context (a fair coin),
    with at most :func:`edge_band` fillers between it and that end (a uniform draw in the band).
    ``middle`` / ``ends``: see :func:`_place_by_depth` (approximate depths from the segments' ``n_tokens``;
    :func:`assemble_context` checks the real ones). The fillers and their order are the same in every
    placement; only where the needed segments sit differs.
    """
    order: list[tuple[Segment, int | None]] = [(s, None) for s in fillers]
    if placement == "uniform":
        for k, seg in enumerate(needed):
            order.insert(rng.randint(0, len(order)), (seg, k))
        return order
    if placement in DEPTH_REGIONS:
        return _place_by_depth(order, needed, rng, placement)
    if placement != "edges":
        raise ValProbingError(f"placement: {placement!r} is not one of {', '.join(PLACEMENTS)}")
    band = edge_band(len(fillers), edge_fraction)
    head: list[tuple[int, Segment, int]] = []  # (fillers before it, segment, rank)
    tail: list[tuple[int, Segment, int]] = []  # (fillers after it, segment, rank)
    for k, seg in enumerate(needed):
        (head if rng.random() < 0.5 else tail).append((rng.randint(0, band), seg, k))
    out: list[tuple[Segment, int | None]] = []
    filler_iter = iter(order)
    head.sort(key=lambda x: x[0])
    taken = 0
    for before, seg, k in head:
        while taken < before:
            out.append(next(filler_iter))
            taken += 1
        out.append((seg, k))
    rest = list(filler_iter)
    back: list[tuple[Segment, int | None]] = []
    tail.sort(key=lambda x: x[0])
    taken = 0
    for after, seg, k in tail:
        while taken < after and rest:
            back.append(rest.pop())
            taken += 1
        back.append((seg, k))
    return out + rest + back[::-1]


def approximate_depths(order: Sequence[tuple[Segment, int | None]]) -> list[float]:
    """Each needed segment's approximate depth in ``order`` (by rank): the ``n_tokens`` of the segments
    before it over the ``n_tokens`` of all (separators and tokenizer joins not counted)."""
    total = sum(seg.n_tokens for seg, _rank in order) or 1
    found: list[tuple[int, float]] = []
    before = 0
    for seg, rank in order:
        if rank is not None:
            found.append((rank, before / total))
        before += seg.n_tokens
    return [depth for _rank, depth in sorted(found)]


def _slots_in_region(
    order: Sequence[tuple[Segment, int | None]], placement: Placement, total: int, n_tokens: int = 0
) -> list[int]:
    """The insertion slots of ``order`` (0 .. len) whose approximate depth, the ``n_tokens`` of the
    segments before the slot over ``total``, lies in the placement's region, and where a segment of
    ``n_tokens`` keeps the needed segments already in ``order`` in it (those after the slot move down)."""
    starts, before = [], 0
    for seg, _rank in order:
        starts.append(before)
        before += seg.n_tokens
    starts.append(before)
    placed = [starts[i] for i, (_seg, rank) in enumerate(order) if rank is not None]
    return [
        i
        for i, start in enumerate(starts)
        if in_region(placement, start / total)
        and all(in_region(placement, (p + n_tokens * (p >= start)) / total) for p in placed)
    ]


def _place_by_depth(
    fillers: Sequence[tuple[Segment, int | None]],
    needed: Sequence[Segment],
    rng: random.Random,
    placement: Placement,
    tries: int = PLACEMENT_TRIES,
) -> list[tuple[Segment, int | None]]:
    """Needed segments inserted one by one, each in a slot drawn uniformly among those whose approximate
    depth (tokens before the slot / tokens of fillers + needed) lies in the placement's region and that
    keep the needles placed so far in it; the order is kept when every needle's approximate depth is in the
    region at the end, else drawn again, up to ``tries`` times (a dead end, no slot left for a needle,
    counts as a try)."""
    total = sum(seg.n_tokens for seg, _rank in fillers) + sum(seg.n_tokens for seg in needed) or 1
    last = "no slot in the region for a needle"
    if _slots_in_region(fillers, placement, total):  # else no draw can place even the first one
        for _ in range(tries):
            order = list(fillers)
            for k, seg in enumerate(needed):
                slots = _slots_in_region(order, placement, total, seg.n_tokens)
                if not slots:
                    break
                order.insert(rng.choice(slots), (seg, k))
            else:
                depths = approximate_depths(order)
                if all(in_region(placement, d) for d in depths):
                    return order
                last = "approximate depths " + ", ".join(f"{d:.3f}" for d in depths)
    raise PlacementError(
        f"placement {placement!r}: could not put {len(needed)} needed segment(s) at depths in "
        f"{_describe_regions(placement)} among {len(fillers)} fillers ({total} tokens with them) in "
        f"{tries} tries (last try: {last}): the context is too short for its needed segments"
    )


def _describe_regions(placement: Placement) -> str:
    return " or ".join(f"[{lo:g}, {hi:g}{']' if hi == 1.0 else ')'}" for lo, hi in DEPTH_REGIONS[placement])


def assemble_context(
    needed: Sequence[Segment],
    pool: Sequence[Segment],
    target: int,
    counter: TokenCounter,
    length: LengthRange,
    rng: random.Random,
    placement: Placement = "uniform",
    tries: int = ASSEMBLY_TRIES,
) -> Assembled:
    """Needed segments placed among random fillers (see :func:`place_needed`): (context, context_tokens,
    needle positions). The fillers are drawn first, so every placement gets the same ones from one seed.

    For a depth-defined placement (``middle``, ``ends``) the real depths of the joined context are checked
    (:func:`in_region` on every needle); the slots are drawn again when one falls outside (segment lengths
    only approximate the joined context's tokens near a boundary), and a :class:`PlacementError` is raised
    after ``tries`` joins: an example is never returned outside its region."""
    fillers = _draw_fillers(needed, pool, target, length, rng)
    for _ in range(max(tries, 1)):
        assembled = _join(place_needed(fillers, needed, rng, placement), counter)
        if placement not in DEPTH_REGIONS or all(in_region(placement, n.depth) for n in assembled.needles):
            return assembled
    raise PlacementError(
        f"placement {placement!r}: after {tries} tries a needle still lies outside "
        f"{_describe_regions(placement)} (depths {', '.join(f'{n.depth:.4f}' for n in assembled.needles)} "
        f"in a {assembled.context_tokens}-token context): the needed segments are too long for this "
        "context, or the tokenizer counts the joined context far from the segments' token counts"
    )


def _join(order: Sequence[tuple[Segment, int | None]], counter: TokenCounter) -> Assembled:
    """Join segments; ``order`` tags each needed segment with its rank among the needed ones, and the
    needle positions come back in that rank order (needle k = needed segment k)."""
    parts: list[str] = []
    found: list[tuple[int, int, int]] = []  # (rank, segment index, char offset)
    pos = 0
    for i, (seg, rank) in enumerate(order):
        if rank is not None:
            found.append((rank, i, pos))
        parts.append(seg.text)
        pos += len(seg.text) + len(SEGMENT_SEPARATOR)
    found.sort()
    indices = [i for _rank, i, _pos in found]
    char_offsets = [p for _rank, _i, p in found]
    context = SEGMENT_SEPARATOR.join(parts)
    offsets = token_index_at(counter, context, [*char_offsets, len(context)])  # one tokenization
    n_tokens = offsets.pop()
    needles = tuple(
        NeedlePosition(idx, off, off / n_tokens) for idx, off in zip(indices, offsets, strict=True)
    )
    return Assembled(context, n_tokens, len(order), needles)


def short_context(
    needed: Segment, text_segments: Sequence[Segment], max_tokens: int, counter: TokenCounter
) -> Assembled:
    """The needed segment in its original text: neighbours of the same text, up to ``max_tokens``."""
    lo = hi = needed.index
    total = needed.n_tokens
    grew = True
    while grew:
        grew = False
        for side in (-1, 1):
            j = lo - 1 if side < 0 else hi + 1
            if 0 <= j < len(text_segments) and total + text_segments[j].n_tokens <= max_tokens:
                total += text_segments[j].n_tokens
                lo, hi = (j, hi) if side < 0 else (lo, j)
                grew = True
    order = [(s, 0 if s.index == needed.index else None) for s in text_segments[lo : hi + 1]]
    return _join(order, counter)


# ----------------------------------------------------------------------------------------------------------
# Mixture
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MixtureRatios:
    """Shares of each kind of example; the paper's mix (1.1M/300K/150K/200K) is the default."""

    fine_grained: float = 0.63
    integration: float = 0.17
    short_context: float = 0.09
    general: float = 0.11

    def __post_init__(self) -> None:
        values = self.as_dict()
        bad = {k: v for k, v in values.items() if not v >= 0}
        if bad:
            raise ValProbingError(f"mixture: ratios must be >= 0, got {bad}")
        if abs(sum(values.values()) - 1.0) > 1e-6:
            raise ValProbingError(f"mixture: ratios must sum to 1, got {sum(values.values()):.6f} ({values})")

    def as_dict(self) -> dict[ExampleKind, float]:
        # the field names are exactly ExampleKind's values, which mypy cannot see through fields()
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[misc]

    @classmethod
    def parse(cls, spec: str) -> MixtureRatios:
        """``"fine_grained=0.7,integration=0.2,short_context=0.1,general=0"`` (omitted kinds are 0)."""
        values: dict[str, float] = dict.fromkeys(EXAMPLE_KINDS, 0.0)
        for part in filter(None, (p.strip() for p in spec.split(","))):
            name, sep, value = part.partition("=")
            if not sep or name.strip() not in values:
                raise ValProbingError(f"mixture: {part!r} is not KIND=RATIO with KIND in {EXAMPLE_KINDS}")
            try:
                values[name.strip()] = float(value)
            except ValueError as err:
                raise ValProbingError(f"mixture: {part!r}: {value!r} is not a number") from err
        return cls(**values)

    def without_general(self) -> MixtureRatios:
        """The same mix with no general instruction data, the other shares renormalised."""
        rest = 1.0 - self.general
        if rest <= 0:
            raise ValProbingError("mixture: only general data was asked for, and none was given")
        return MixtureRatios(
            fine_grained=self.fine_grained / rest,
            integration=self.integration / rest,
            short_context=self.short_context / rest,
            general=0.0,
        )


def plan_counts(total: int, ratios: MixtureRatios) -> dict[ExampleKind, int]:
    """Split ``total`` examples by the ratios (largest remainder, so the counts sum to ``total``)."""
    if total < 1:
        raise ValProbingError(f"number of examples: expected a positive int, got {total}")
    shares: Mapping[ExampleKind, float] = ratios.as_dict()
    exact = {k: total * v for k, v in shares.items()}
    counts = {k: int(v) for k, v in exact.items()}
    by_remainder = sorted(shares, key=lambda k: (exact[k] - counts[k], shares[k]), reverse=True)
    for k in by_remainder[: total - sum(counts.values())]:
        counts[k] += 1
    return counts


def attach(
    kind: ExampleKind, pair: QAPair, needed: Sequence[Segment], assembled: Assembled
) -> TrainingExample:
    return TrainingExample(
        kind=kind,
        instruction=pair.question,
        answer=pair.answer,
        context=assembled.context,
        context_tokens=assembled.context_tokens,
        n_segments=assembled.n_segments,
        needles=assembled.needles,
        sources=tuple(f"{s.text_id}#{s.index}" for s in needed),
    )
