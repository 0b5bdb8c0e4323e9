"""The synthesis pipeline (``synthesize``): its config, the plan of QA requests and examples, the stats."""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import logging
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from val_probing.errors import ValProbingError
from val_probing.in2.assemble import (
    MIDDLE,
    PLACEMENTS,
    ContextRangeError,
    ExampleKind,
    LengthRange,
    MixtureRatios,
    Placement,
    TrainingExample,
    assemble_context,
    attach,
    plan_counts,
    short_context,
    spread_targets,
)
from val_probing.in2.contamination import ContaminationReport, ProbeIndex, filter_texts
from val_probing.in2.qa import QAGenerator, QAPair, QARequest
from val_probing.in2.segment import SEGMENT_TOKENS, RawText, Segment, Segmentation, segment_corpus
from val_probing.token_counters import TokenCounter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SynthesisConfig:
    n_examples: int
    ratios: MixtureRatios = field(default_factory=MixtureRatios)
    length: LengthRange = field(default_factory=LengthRange)
    segment_tokens: int = SEGMENT_TOKENS
    integration_segments: tuple[int, int] = (2, 4)  # segments per integration request, inclusive range
    short_max_tokens: int | None = None  # None: the lower end of the context range
    on_missing_general: Literal["renormalise", "error"] = "renormalise"
    seed: int = 0
    # Where long contexts put their needed segments (assemble.place_needed): a property of assembly
    # only, so one plan (QA, segments, fillers, seeds) gives every arm of a placement experiment.
    placement: Placement = "uniform"

    def __post_init__(self) -> None:
        lo, hi = self.integration_segments
        if not 2 <= lo <= hi:
            raise ValProbingError(f"integration segments: need 2 <= min <= max, got {lo}..{hi}")
        if self.on_missing_general not in ("renormalise", "error"):
            raise ValProbingError(f"on_missing_general: {self.on_missing_general!r}")
        if self.placement not in PLACEMENTS:
            raise ValProbingError(f"placement: {self.placement!r} is not one of {', '.join(PLACEMENTS)}")


@dataclass(frozen=True, slots=True)
class Planned:
    """One example to assemble: its QA pair, the needed segments, the target context length (None: a
    short context, the segment in its original text) and its own seed (reproducible in any order)."""

    kind: ExampleKind
    pair: QAPair
    needed: tuple[Segment, ...]
    target: int | None
    seed: int


@dataclass(frozen=True, eq=False)
class Synthesis:
    """The plan of a dataset: QA pairs and segment references (small). Contexts are assembled lazily by
    ``examples()``, one at a time, so a paper-scale set (1.75M examples of up to 32K tokens) never has to
    sit in memory. ``manifest`` holds what is known before assembly; ``save_dataset`` adds the context
    length and needle depth histograms as it writes."""

    items: tuple[Planned | TrainingExample, ...]  # in dataset order; TrainingExample = general data
    segmentation: Segmentation
    counter: TokenCounter
    config: SynthesisConfig
    manifest: dict[str, Any]

    def __len__(self) -> int:
        return len(self.items)

    def examples(self) -> Iterator[TrainingExample]:
        by_text = self.segmentation.by_text()
        pool = self.segmentation.segments
        short_max = self.config.short_max_tokens or self.config.length.min_tokens
        for item in self.items:
            if isinstance(item, TrainingExample):
                yield item
            elif item.target is None:
                seg = item.needed[0]
                assembled = short_context(seg, by_text[seg.text_id], short_max, self.counter)
                yield attach("short_context", item.pair, item.needed, assembled)
            else:
                rng = random.Random(item.seed)
                config = self.config
                assembled = assemble_context(
                    item.needed, pool, item.target, self.counter, config.length, rng, config.placement
                )
                yield attach(item.kind, item.pair, item.needed, assembled)

    def with_placement(self, placement: Placement) -> Synthesis:
        """The same plan (QA pairs, needed segments, fillers, seeds) assembled with another placement."""
        return dataclasses.replace(self, config=dataclasses.replace(self.config, placement=placement))


def resolve_ratios(config: SynthesisConfig, n_general: int | None) -> tuple[MixtureRatios, str | None]:
    """The mixture actually used, and a note when it differs from the configured one."""
    if config.ratios.general == 0 or n_general:
        return config.ratios, None
    if config.on_missing_general == "error":
        raise ValProbingError(
            f"the mixture asks for {config.ratios.general:.0%} general instruction data but no --general "
            "JSONL was given: pass one (e.g. OpenOrca rows), or set general=0 in --mixture, or "
            "--on-missing-general renormalise"
        )
    note = (
        f"no general instruction data given: the {config.ratios.general:.0%} general share was dropped "
        "and the other shares renormalised"
    )
    log.warning(note)
    return config.ratios.without_general(), note


def plan_requests(
    segmentation: Segmentation, n_fine: int, n_integration: int, config: SynthesisConfig, rng: random.Random
) -> list[QARequest]:
    """Distinct segments for fine-grained requests; segment groups (same text when it can) for integration."""
    segments = list(segmentation.segments)
    if n_fine > len(segments):
        raise ValProbingError(
            f"the corpus has {len(segments)} segments, fewer than the {n_fine} fine-grained QA asked for "
            "(fine-grained + short-context): add texts or lower --n-examples"
        )
    requests = [QARequest("fine_grained", (s,)) for s in rng.sample(segments, n_fine)]
    if n_integration and len(segments) < 2:
        raise ValProbingError("integration QA needs at least two segments; the corpus has one")
    by_text = segmentation.by_text()
    multi = [segs for segs in by_text.values() if len(segs) >= 2]
    lo, hi = config.integration_segments
    for _ in range(n_integration):
        source = rng.choice(multi) if multi else segments
        k = min(rng.randint(lo, hi), len(source))
        chosen = sorted(rng.sample(source, k), key=lambda s: (s.text_id, s.index))
        requests.append(QARequest("integration", tuple(chosen)))
    return requests


def check_fillable(segmentation: Segmentation, length: LengthRange) -> None:
    """Fail before any QA is generated when the corpus cannot fill the longest contexts (a cheap bound:
    the largest text's segments are excluded from its own fillers, so they may not count)."""
    total = sum(s.n_tokens for s in segmentation.segments)
    largest = max(sum(s.n_tokens for s in segs) for segs in segmentation.by_text().values())
    if total - largest < length.max_tokens - length.slack_tokens:
        raise ContextRangeError(
            f"could not fill contexts of up to {length.max_tokens} tokens: the corpus holds "
            f"{total} tokens in {len(segmentation.segments)} segments, and fillers come from other texts "
            f"than the needle's; lower --max-context or add texts"
        )


def _plan_examples(
    requests: Sequence[QARequest],
    pairs: dict[int, QAPair],
    n_short: int,
    config: SynthesisConfig,
    rng: random.Random,
) -> list[Planned]:
    """Accepted pairs -> planned examples; the last ``n_short`` fine-grained requests get short contexts,
    the others target lengths spread evenly over the range."""
    fine = [i for i, r in enumerate(requests) if r.kind == "fine_grained"]
    short_ids = set(fine[len(fine) - n_short :]) if n_short else set()
    long_ids = [i for i in sorted(pairs) if i not in short_ids]
    targets = dict(zip(long_ids, spread_targets(len(long_ids), config.length, rng), strict=True))
    return [
        Planned(
            kind="short_context" if i in short_ids else requests[i].kind,
            pair=pairs[i],
            needed=requests[i].segments,
            target=targets.get(i),
            seed=rng.getrandbits(64),
        )
        for i in sorted(pairs)
    ]


def synthesize(
    texts: Sequence[RawText],
    counter: TokenCounter,
    generator: QAGenerator,
    config: SynthesisConfig,
    rng: random.Random,
    *,
    general: Sequence[TrainingExample] | None = None,
    probes: ProbeIndex | None = None,
) -> Synthesis:
    """Filter, segment, plan the mixture, generate the QA pairs and plan every example (contexts are
    assembled later, lazily, by ``Synthesis.examples``)."""
    contamination: ContaminationReport | None = None
    if probes is not None:
        texts, contamination = filter_texts(texts, probes)
        log.info(
            "contamination filter dropped %d of %d texts", contamination.n_dropped, contamination.n_texts
        )
    segmentation = segment_corpus(texts, counter, min_tokens=config.segment_tokens)
    ratios, note = resolve_ratios(config, len(general) if general else None)
    planned = plan_counts(config.n_examples, ratios)
    if general and planned["general"] > len(general):
        raise ValProbingError(
            f"the mixture asks for {planned['general']} general examples but the general data has "
            f"{len(general)}: give more rows or lower the general share"
        )
    check_fillable(segmentation, config.length)
    requests = plan_requests(
        segmentation, planned["fine_grained"] + planned["short_context"], planned["integration"], config, rng
    )
    result = generator.generate(requests)
    if not result.pairs and requests:
        raise ValProbingError(
            f"no QA pair survived the checks: {len(requests)} requests, rejections "
            f"{dict(result.rejections)}: a generator that cannot answer in JSON (try --structured), "
            "or texts it cannot ask about"
        )
    items: list[Planned | TrainingExample] = [
        *_plan_examples(requests, result.pairs, planned["short_context"], config, rng)
    ]
    if planned["general"]:
        items.extend(rng.sample(list(general or ()), planned["general"]))
    rng.shuffle(items)
    produced = Counter(item.kind for item in items)
    manifest = {
        "seed": config.seed,
        "tokenizer": counter.name,
        "generator": generator.describe(),
        "counts": {"planned": planned, "produced": {k: produced.get(k, 0) for k in planned}},
        "n_examples": len(items),
        "mixture": {"configured": config.ratios.as_dict(), "used": ratios.as_dict(), "note": note},
        "context_range": {
            "min_tokens": config.length.min_tokens,
            "max_tokens": config.length.max_tokens,
            "slack_tokens": config.length.slack_tokens,
        },
        "segment_tokens": config.segment_tokens,
        "corpus": {
            "segments": len(segmentation.segments),
            "texts_with_segments": len(segmentation.by_text()),
            "texts_too_short": len(segmentation.too_short),
        },
        "generation": {
            "rejections": dict(result.rejections),
            "gave_up": result.gave_up,
            "requests_sent": result.sent,
            "from_cache": result.cached,
        },
        "contamination": contamination.to_dict() if contamination else None,
    }
    return Synthesis(tuple(items), segmentation, counter, config, manifest)


class Histogram:
    """Counts of values in [edges[i], edges[i+1]) (the last bin closed); values outside are counted apart."""

    def __init__(self, edges: Sequence[float]) -> None:
        self.edges = list(edges)
        self.counts = [0] * (len(self.edges) - 1)
        self.outside = 0

    def add(self, value: float) -> None:
        i = bisect.bisect_right(self.edges, value) - 1
        if value == self.edges[-1]:
            i = len(self.counts) - 1
        if 0 <= i < len(self.counts):
            self.counts[i] += 1
        else:
            self.outside += 1

    def to_list(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = [
            {"lo": lo, "hi": hi, "count": n}
            for (lo, hi), n in zip(itertools.pairwise(self.edges), self.counts, strict=True)
        ]
        if self.outside:
            rows.append({"lo": None, "hi": None, "count": self.outside})
        return rows


# the kinds whose contexts are placed (assemble_context); short contexts keep the original text
PLACED_KINDS: tuple[ExampleKind, ...] = ("fine_grained", "integration")


class ExampleStats:
    """Context length and needle depth histograms (depth = first needle token / context tokens, in
    ``depth_bins`` equal bins), counted one example at a time; and, for the needles of placed contexts
    (fine-grained and integration: the ones a placement moves), how many lie before, in and after
    assemble.MIDDLE, and their depth range, so that a manifest shows an arm's placement."""

    def __init__(self, length: LengthRange, depth_bins: int = 10) -> None:
        if isinstance(depth_bins, bool) or not isinstance(depth_bins, int) or depth_bins < 1:
            raise ValProbingError(f"depth_bins: expected a positive int, got {depth_bins!r}")
        step = (length.max_tokens - length.min_tokens) / 8
        self.lengths = Histogram([0, *(length.min_tokens + step * i for i in range(9))])
        self.depths = Histogram([i / depth_bins for i in range(depth_bins + 1)])
        self.regions = Histogram([0.0, *MIDDLE, 1.0])
        self.placed_range: tuple[float, float] | None = None

    def add(self, ex: TrainingExample) -> None:
        if ex.context is not None:
            self.lengths.add(ex.context_tokens)
        for needle in ex.needles:
            self.depths.add(needle.depth)
            if ex.kind in PLACED_KINDS:
                self.regions.add(needle.depth)
                lo, hi = self.placed_range or (needle.depth, needle.depth)
                self.placed_range = (min(lo, needle.depth), max(hi, needle.depth))

    def to_dict(self) -> dict[str, Any]:
        head, middle, tail = self.regions.counts
        return {
            "context_length_histogram": self.lengths.to_list(),
            "needle_depth_histogram": self.depths.to_list(),
            "needle_depth_regions": {
                "bounds": list(MIDDLE),
                "before": head,
                "middle": middle,
                "after": tail,
            },
            "needle_depth_range": list(self.placed_range) if self.placed_range else None,
        }
