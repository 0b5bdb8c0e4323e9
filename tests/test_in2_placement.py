"""IN2 placements by token depth (issue 24): ``middle`` keeps every needle in [0.25, 0.75), ``ends`` keeps
every needle outside it; the fillers are those of every other placement; the manifest shows the arm."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from test_training_data import _VOCAB, make_corpus
from val_probing.errors import ValProbingError
from val_probing.in2.assemble import (
    DEPTH_REGIONS,
    MIDDLE,
    PLACEMENTS,
    SEGMENT_SEPARATOR,
    LengthRange,
    MixtureRatios,
    Placement,
    PlacementError,
    _draw_fillers,
    _join,
    approximate_depths,
    assemble_context,
    in_region,
    place_needed,
)
from val_probing.in2.dataset import SynthesisConfig, save_dataset, synthesize
from val_probing.in2.dataset.pipeline import ExampleStats
from val_probing.in2.experiment import prepare
from val_probing.in2.qa import ExtractiveLocalGenerator
from val_probing.in2.segment import Segment
from val_probing.token_counters import WhitespaceCounter

WS = WhitespaceCounter()
DEPTH_ARMS: tuple[Placement, ...] = ("middle", "ends")


def _in_middle(depth: float) -> bool:  # written out, not in_region: the test must not share the code
    return 0.25 <= depth < 0.75


def _pool(n: int, sizes: tuple[int, int], rng: random.Random) -> list[Segment]:
    """``n`` filler segments of ``sizes[0]..sizes[1]`` words each, every one from its own text."""
    out = []
    for i in range(n):
        k = rng.randint(*sizes)
        out.append(Segment(f"t{i}", 0, " ".join(rng.choice(_VOCAB) for _ in range(k)), k))
    return out


def _needed(n: int, sizes: tuple[int, int], rng: random.Random) -> list[Segment]:
    out = []
    for k in range(n):
        size = rng.randint(*sizes)
        out.append(Segment(f"need{k}", k, " ".join([f"needle{k}"] * size), size))
    return out


def _fillers(context: str, needed: Sequence[Segment]) -> list[str]:
    texts = {s.text for s in needed}
    return [p for p in context.split(SEGMENT_SEPARATOR) if p not in texts]


# ------------------------------------------------------------------------------------------- the regions


def test_the_regions_split_the_depths_at_the_middle_bounds() -> None:
    assert MIDDLE == (0.25, 0.75)
    assert set(PLACEMENTS) == {"uniform", "edges", "middle", "ends"}
    assert set(DEPTH_REGIONS) == {"middle", "ends"}
    for depth, middle in [(0.0, False), (0.2499, False), (0.25, True), (0.5, True), (0.7499, True),
                          (0.75, False), (0.99, False), (1.0, False)]:  # fmt: skip
        assert in_region("middle", depth) is middle, depth
        assert in_region("ends", depth) is not middle, depth  # the two regions cover [0, 1] disjointly
    assert not in_region("ends", 1.0001) and not in_region("ends", -0.01)
    with pytest.raises(ValProbingError, match="not defined by depth"):
        in_region("uniform", 0.5)
    for placement in DEPTH_ARMS:
        assert SynthesisConfig(n_examples=1, placement=placement).placement == placement


# ------------------------------------------------------------------------------------- placement by depth


@pytest.mark.parametrize("placement", ["middle", "ends"])
@pytest.mark.parametrize("n_needed", [1, 2, 4])
def test_place_needed_keeps_every_approximate_depth_in_the_region(
    placement: Placement, n_needed: int
) -> None:
    rng = random.Random(11)
    for n_fillers, sizes, needle_sizes in [
        (10, (10, 10), (5, 15)),
        (12, (5, 40), (10, 30)),
        (60, (30, 200), (100, 150)),
    ]:
        fillers = _pool(n_fillers, sizes, rng)
        needed = _needed(n_needed, needle_sizes, rng)
        for seed in range(60):
            order = place_needed(fillers, needed, random.Random(seed), placement)
            assert [s for s, r in order if r is None] == fillers  # fillers untouched, in their order
            assert sorted(r for _s, r in order if r is not None) == list(range(n_needed))
            depths = approximate_depths(order)
            total = sum(s.n_tokens for s, _r in order)
            for k, depth in enumerate(depths):  # recomputed by hand: tokens before needle k / all tokens
                i = next(i for i, (_s, r) in enumerate(order) if r == k)
                assert depth == sum(s.n_tokens for s, _r in order[:i]) / total
                assert _in_middle(depth) is (placement == "middle"), (n_fillers, seed, depths)


def test_a_needle_goes_to_each_slot_of_the_region_equally_often() -> None:
    fillers = [Segment(f"t{i}", 0, "w " * 10, 10) for i in range(20)]
    needed = [Segment("need", 0, "n " * 10, 10)]  # 210 tokens: slot i has depth 10 i / 210
    regions: list[tuple[Placement, set[int]]] = [
        ("middle", set(range(6, 16))),
        ("ends", {*range(6), *range(16, 21)}),
    ]
    for placement, slots in regions:
        seen = Counter(
            next(
                i
                for i, (_s, r) in enumerate(place_needed(fillers, needed, random.Random(s), placement))
                if r == 0
            )
            for s in range(3000)
        )
        assert set(seen) == slots, placement
        expected = 3000 / len(slots)
        assert all(abs(n - expected) < 0.25 * expected for n in seen.values()), (placement, seen)


@pytest.mark.parametrize(
    ("n_needed", "pool_sizes", "length", "target"),
    [
        (1, (120, 140), LengthRange(2000, 4000), 3000),  # fine-grained
        (1, (20, 60), LengthRange(600, 1200, slack_tokens=64), 900),  # short segments, short context
        (1, (300, 600), LengthRange(8000, 16000), 12000),  # long segments
        (2, (120, 140), LengthRange(2000, 4000), 2500),  # integration
        (3, (60, 200), LengthRange(2000, 4000), 3500),
        (4, (120, 140), LengthRange(2000, 4000), 2200),
    ],
)
def test_assembled_needles_stay_in_their_region(
    n_needed: int, pool_sizes: tuple[int, int], length: LengthRange, target: int
) -> None:
    rng = random.Random(n_needed * 1000 + target)
    pool = _pool(300, pool_sizes, rng)
    depths: dict[Placement, list[float]] = {"middle": [], "ends": []}
    for seed in range(40):
        needed = _needed(n_needed, (100, 150), random.Random(seed))
        for placement in depths:
            got = assemble_context(needed, pool, target, WS, length, random.Random(seed), placement)
            words = got.context.split()
            parts = got.context.split(SEGMENT_SEPARATOR)
            assert got.context_tokens == len(words) and len(got.needles) == n_needed
            for needle, seg in zip(got.needles, needed, strict=True):
                assert parts[needle.segment_index] == seg.text
                assert words[needle.token_offset] == seg.text.split()[0]
                assert needle.depth == needle.token_offset / got.context_tokens
                depths[placement].append(needle.depth)
    assert all(_in_middle(d) for d in depths["middle"])
    assert not any(_in_middle(d) for d in depths["ends"])
    # neither is degenerate: the middle spreads over its region, the ends use both ends
    assert min(depths["middle"]) < 0.4 and max(depths["middle"]) > 0.6
    assert sum(d < 0.25 for d in depths["ends"]) > len(depths["ends"]) / 5
    assert sum(d >= 0.75 for d in depths["ends"]) > len(depths["ends"]) / 5


def test_all_four_placements_draw_the_same_fillers_in_the_same_order() -> None:
    rng = random.Random(4)
    pool = _pool(300, (60, 200), rng)
    length = LengthRange(2000, 4000)
    for seed in range(40):
        needed = _needed(1 + seed % 4, (100, 150), random.Random(seed))
        fillers = {}
        for placement in PLACEMENTS:
            got = assemble_context(needed, pool, 3000, WS, length, random.Random(seed), placement)
            fillers[placement] = _fillers(got.context, needed)
        reference = fillers["uniform"]
        assert len(reference) >= 10
        for placement, got_fillers in fillers.items():
            assert got_fillers == reference, (seed, placement)  # the same multiset, in the same order


class _SeparatorCounter(WhitespaceCounter):
    """Counts every segment separator as one token too (as a subword tokenizer may): the segments'
    ``n_tokens`` then only approximate the joined context's token offsets."""

    name = "whitespace+separators"

    def token_starts(self, text: str) -> list[int]:
        starts = super().token_starts(text) + [m.start() for m in re.finditer(SEGMENT_SEPARATOR, text)]
        return sorted(starts)


def test_real_depths_are_checked_and_a_slot_off_by_rounding_is_drawn_again() -> None:
    counter = _SeparatorCounter()
    rng = random.Random(9)
    pool = _pool(400, (4, 12), rng)  # tiny segments: the separators add ~10% of the tokens
    length = LengthRange(800, 1200, slack_tokens=32)
    needed = [Segment("need", 0, "needle " * 8, 8)]
    first_try_outside = 0
    for seed in range(300):
        for placement in DEPTH_ARMS:
            replay = random.Random(seed)  # what assemble_context's first try joins, step by step
            fillers = _draw_fillers(needed, pool, 1000, length, replay)
            first = _join(place_needed(fillers, needed, replay, placement), counter)
            first_try_outside += _in_middle(first.needles[0].depth) is (placement == "ends")
            got = assemble_context(needed, pool, 1000, counter, length, random.Random(seed), placement)
            assert got.context_tokens == len(got.context.split()) + got.context.count(SEGMENT_SEPARATOR)
            assert _in_middle(got.needles[0].depth) is (placement == "middle")
    assert first_try_outside > 0  # the approximation did miss, and the real check caught it


def test_a_region_that_cannot_be_hit_is_a_clear_error() -> None:
    needle = Segment("need", 0, "needle " * 300, 300)
    with pytest.raises(PlacementError, match=r"placement 'middle'.*\[0\.25, 0\.75\).*0 fillers"):
        place_needed([], [needle], random.Random(0), "middle")
    assert place_needed([], [needle], random.Random(0), "ends") == [(needle, 0)]  # depth 0: at an end
    pool = _pool(50, (100, 100), random.Random(0))
    only_needle = LengthRange(200, 300, slack_tokens=50)  # the needle alone fills the context
    with pytest.raises(PlacementError, match="placement 'middle'"):
        assemble_context([needle], pool, 300, WS, only_needle, random.Random(0), "middle")
    # four needles of ~30% each: they cannot all sit in the outer half of the context
    big = [Segment(f"need{k}", k, "x " * 300, 300) for k in range(4)]
    with pytest.raises(PlacementError, match=r"placement 'ends'.*4 needed segment"):
        place_needed(pool[:1], big, random.Random(0), "ends")
    # the real depths: segment counts that lie (a needle of 3000 words claiming 100) put every
    # approximate middle slot in the first tenth of the joined context
    liar = Segment("liar", 0, "needle " * 3000, 100)
    with pytest.raises(PlacementError, match=r"placement 'middle'.*depths 0\.\d+.* in a \d+-token context"):
        assemble_context([liar], pool, 1100, WS, LengthRange(1000, 1200), random.Random(0), "middle")


# -------------------------------------------------------------------------------------- saved manifests


def _plan(short_context: float = 0.0) -> Any:
    config = SynthesisConfig(
        n_examples=40,
        ratios=MixtureRatios(
            fine_grained=0.7 - short_context, integration=0.3, short_context=short_context, general=0.0
        ),
        length=LengthRange(600, 1200, slack_tokens=64),
        segment_tokens=40,
    )
    corpus = make_corpus(30, 10, random.Random(0))
    return synthesize(corpus, WS, ExtractiveLocalGenerator(), config, random.Random(0))


def test_saved_middle_and_ends_arms_have_disjoint_depth_regions(tmp_path: Path) -> None:
    from datasets import load_from_disk

    plan = _plan(short_context=0.15)  # short contexts keep their text: not counted in the regions
    manifests = {}
    for placement in DEPTH_ARMS:
        out = save_dataset(tmp_path / placement, plan.with_placement(placement), "film")
        manifests[placement] = m = json.loads((out / "manifest.json").read_text())
        assert m["placement"] == placement
        rows = list(load_from_disk(str(out)))
        placed = [d for r in rows if r["kind"] != "short_context" for d in r["needle_depths"]]
        assert any(r["kind"] == "short_context" for r in rows) and any(
            r["kind"] == "integration" for r in rows
        )
        regions = m["needle_depth_regions"]
        assert regions == {
            "bounds": [0.25, 0.75],
            "before": sum(d < 0.25 for d in placed),
            "middle": sum(0.25 <= d < 0.75 for d in placed),
            "after": sum(d >= 0.75 for d in placed),
        }
        assert m["needle_depth_range"] == [min(placed), max(placed)]
        all_needles = sum(len(r["needle_depths"]) for r in rows)
        assert sum(b["count"] for b in m["needle_depth_histogram"]) == all_needles > len(placed)
        assert len(m["needle_depth_histogram"]) == 10  # the default bins
    middle, ends = manifests["middle"]["needle_depth_regions"], manifests["ends"]["needle_depth_regions"]
    assert middle["before"] == middle["after"] == 0 < middle["middle"]
    assert ends["middle"] == 0 < min(ends["before"], ends["after"])
    assert middle["middle"] == ends["before"] + ends["after"]  # the same needles, moved
    lo, hi = manifests["middle"]["needle_depth_range"]
    assert lo >= 0.25 and hi < 0.75
    prepare.check_arms(tmp_path / "middle", tmp_path / "ends")  # the same examples and segments, moved


def test_the_depth_histogram_takes_its_number_of_bins(tmp_path: Path) -> None:
    plan = _plan()
    out = save_dataset(tmp_path / "uniform", plan, "film", depth_bins=20)
    manifest = json.loads((out / "manifest.json").read_text())
    hist = manifest["needle_depth_histogram"]
    assert [(b["lo"], b["hi"]) for b in hist] == [(i / 20, (i + 1) / 20) for i in range(20)]
    examples = list(plan.examples())
    depths = [n.depth for e in examples for n in e.needles]
    assert [b["count"] for b in hist] == [sum(i / 20 <= d < (i + 1) / 20 for d in depths) for i in range(20)]
    stats = ExampleStats(plan.config.length)
    for e in examples:
        stats.add(e)
    assert [b["count"] for b in stats.to_dict()["needle_depth_histogram"]] == [
        sum(i / 10 <= d < (i + 1) / 10 for d in depths) for i in range(10)
    ]
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValProbingError, match="depth_bins"):
            save_dataset(tmp_path / "bad", plan, "film", depth_bins=bad)  # type: ignore[arg-type]
    assert not (tmp_path / "bad").exists()
    empty = ExampleStats(plan.config.length).to_dict()
    assert empty["needle_depth_range"] is None
    assert empty["needle_depth_regions"] == {"bounds": [0.25, 0.75], "before": 0, "middle": 0, "after": 0}
