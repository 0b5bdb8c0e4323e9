"""Simulated runs through the real check: what a slice can detect (``val-probing plan``, the bench).

A simulated run is the three VAL tasks' ``TaskResult``s with per-sample scores drawn from per-question
success probabilities (``truth``, plus a ``shift`` for an injected effect): 0/1 for code and
database, graded recall in quarters for document. A baseline is :func:`make_baseline` of one draw and
the rerun is checked with :func:`check`, the function ``val-probing check`` calls.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from val_probing.buckets import ScoredSample, summarize
from val_probing.gate.baseline import Baseline, Regions, Statistics, make_baseline
from val_probing.gate.compare import check
from val_probing.records import FAMILIES
from val_probing.results import TaskResult

# (task, position, n_items) -> success probability (or its shift)
Truth = Callable[[str, int, int], float]

_META = {"source": "built", "context_length": 2048, "pool": "simulated", "seed": 0, "probe_version": 1,
         "probe_hash": "simulated", "limit": None}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Layout:
    """A slice: ``sets`` contexts x ``positions`` needle positions, in ``buckets`` buckets."""

    sets: int
    positions: int
    buckets: int

    @property
    def per_bucket(self) -> int:
        return self.sets * self.positions // self.buckets

    def __str__(self) -> str:
        return f"{self.sets} x {self.positions}, {self.buckets} buckets ({self.per_bucket} per bucket)"


def u_curve(_task: str, position: int, n_items: int) -> float:
    """0.9 at both ends, 0.6 in the middle (the paper's U-curve, idealised)."""
    depth = (position + 0.5) / n_items
    return 0.6 + 0.3 * (2 * depth - 1) ** 2


def no_shift(_task: str, _position: int, _n: int) -> float:
    return 0.0


def depth_shift(*bands: tuple[float, float, float], tasks: frozenset[str] | None = None) -> Truth:
    """``(lo, hi, points)``: positions at depth in ``[lo, hi)`` move by ``points`` (x100), in
    ``tasks`` only when given."""

    def shift(task: str, position: int, n_items: int) -> float:
        if tasks is not None and task not in tasks:
            return 0.0
        depth = (position + 0.5) / n_items
        return sum(pts / 100 for lo, hi, pts in bands if lo <= depth < hi)

    return shift


def region_band(region: str, regions: Regions) -> tuple[float, float]:
    """The depth range of a region (``all``: the whole context)."""
    bands = {"start": (0.0, regions.start), "middle": (regions.start, regions.end),
             "end": (regions.end, 1.0 + 1e-9), "all": (0.0, 1.0 + 1e-9)}  # fmt: skip
    return bands[region]


def truth_from_buckets(means: Mapping[str, Mapping[int, float]], n_buckets: int) -> Truth:
    """Per-question probabilities = the bucket means (x100) of each task, at the question's depth."""

    def truth(task: str, position: int, n_items: int) -> float:
        return means[task].get(position * n_buckets // n_items, 0.0) / 100  # bucket_of, any n_items

    return truth


def truth_from_baseline(baseline: Baseline) -> tuple[Truth, int]:
    """The baseline's own bucket means as the truth, and its bucket count."""
    n_buckets = {int(t.settings.get("n_buckets") or len(t.buckets)) for t in baseline.tasks.values()}
    buckets = max(n_buckets)
    return truth_from_buckets({n: t.buckets for n, t in baseline.tasks.items()}, buckets), buckets


def draw_scores(task: str, p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scores with mean ``p``: graded recall in quarters for document, 0/1 for code and database."""
    p = np.clip(p, 0.0, 1.0)
    return rng.binomial(4, p) / 4 if task == "document" else rng.binomial(1, p).astype(np.float64)


def draw_run(
    layout: Layout, truth: Truth, shift: Truth, rng: np.random.Generator, tasks: tuple[str, ...] = FAMILIES
) -> list[TaskResult]:
    """One run: every question's score drawn from truth + shift."""
    out = []
    cells = [(s, pos) for s in range(layout.sets) for pos in range(layout.positions)]
    meta = MappingProxyType({**_META, "n_buckets": layout.buckets})
    for task in tasks:
        p = np.array([truth(task, pos, layout.positions) + shift(task, pos, layout.positions)
                      for _s, pos in cells])  # fmt: skip
        samples = tuple(
            ScoredSample(s, pos, layout.positions, f"{task}-{s}-{pos}", float(x))
            for (s, pos), x in zip(cells, draw_scores(task, p, rng), strict=True)
        )
        summary = summarize(samples, n_buckets=layout.buckets, n_boot=None)
        out.append(TaskResult("sim/model", task, Path("simulated"), 2048, meta, summary, samples))
    return out


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True, slots=True)
class Outcome:
    failed: int
    draws: int
    by_kind: Counter[str]  # failing metrics (avg, ..., shape; all/middle: pooled), once per draw

    @property
    def rate(self) -> float:
        return self.failed / self.draws

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.failed, self.draws)

    def __str__(self) -> str:
        lo, hi = self.interval
        return f"{self.rate:.0%} [{lo:.0%}, {hi:.0%}]"


def simulate(
    layout: Layout,
    truth: Truth,
    shift: Truth,
    draws: int,
    *,
    seed: int,
    statistics: Statistics | None = None,
    regions: Regions | None = None,
) -> Outcome:
    """``draws`` independent (baseline, rerun) pairs through :func:`check`: how many failed, on what."""
    rng = np.random.default_rng(seed)
    failed, kinds = 0, Counter[str]()
    for _ in range(draws):
        baseline = make_baseline(
            draw_run(layout, truth, no_shift, rng), statistics=statistics, regions=regions, environment={}
        )
        result = check(baseline, draw_run(layout, truth, shift, rng))
        if not result.passed:
            failed += 1
            kinds.update(
                {c.metric if c.task in FAMILIES else f"{c.task}/{c.metric}" for c in result.failures}
            )
    return Outcome(failed, draws, kinds)


@dataclass(frozen=True, slots=True)
class Detection:
    """The detection rate of a drop of ``drop`` points in ``region`` at ``layout``."""

    layout: Layout
    region: str
    drop: float
    outcome: Outcome


def detection(
    layout: Layout,
    truth: Truth,
    region: str,
    drop: float,
    draws: int,
    *,
    seed: int = 0,
    statistics: Statistics | None = None,
    regions: Regions | None = None,
    tasks: frozenset[str] | None = None,
) -> Detection:
    """How often the gate fails a run whose ``region`` lost ``drop`` points (in ``tasks``, or all)."""
    lo, hi = region_band(region, regions or Regions())
    shift = depth_shift((lo, hi, -drop), tasks=tasks)
    outcome = simulate(layout, truth, shift, draws, seed=seed, statistics=statistics, regions=regions)
    return Detection(layout, region, drop, outcome)


def candidate_layouts(buckets: int, sets: tuple[int, ...] = (2, 4, 8, 16)) -> list[Layout]:
    """Slices to try, smallest first: ``sets x positions`` with positions a multiple of ``buckets``."""
    out = [
        Layout(s, n, buckets)
        for s in sets
        for n in (16, 32, 64, 128, 256, 512)
        if n >= buckets and n % buckets == 0 and s * n <= 4096
    ]
    return sorted(out, key=lambda x: (x.sets * x.positions, x.sets))
