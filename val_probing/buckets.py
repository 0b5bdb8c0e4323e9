"""Position buckets and the summary numbers: the one place where VAL scores are aggregated.

The numbers (all x100, as in the paper's Table 1):

1. Every sample belongs to a set (one fixed context) and a bucket of positions,
   ``bucket_of(position_id, n_items, n_buckets) = position_id * n_buckets // n_items``
   (official data: 800 positions / 16 buckets = ``position_id // 50``; database 750 / 15 the same).
2. Per set, a bucket's score is the mean of its samples (a set-bucket *cell*).
3. A bucket's ``mean`` is the mean over sets of those cell means; its ``std`` is the population
   standard deviation (``np.std``, ddof=0) of the cell means across sets: the error bar of the
   authors' figure, a spread between contexts, not a confidence interval.
4. ``avg`` is the mean of the bucket means, ``gap`` is max - min of the bucket means.
5. ``ci`` / ``avg_ci`` are 95% percentile-bootstrap intervals: each resample redraws the samples of
   every cell with replacement (sets and buckets stay fixed, so the interval reflects which
   questions were asked, for these contexts), then recomputes 2-4. ``n_boot=None`` computes no
   bootstrap: every ``ci`` and ``avg_ci`` is then ``(nan, nan)`` ("not computed").

Two modes:

``"default"``
    every position counts: a bucket is ``bucket_size = n_items / n_buckets`` whole positions.
``"reference"``
    reproduces the authors' ``VaLProbing/plot.py`` exactly. Its loop
    ``for position_id in range(50*i, 50*i + 49)`` reads positions 50i .. 50i+48, so the LAST
    position of each bucket never counts (1 of 50 samples per bucket is dropped). In general terms:
    a position is dropped when the next position falls in another bucket. The means are computed
    with plain Python sums in plot.py's order, so the figures match it to the last bit. The authors
    also drop rows on their skip list (keys that occur twice in the context); that is the CALLER's
    job (``val-probing score --reference`` applies the skip list before calling :func:`summarize`).

Missing data (e.g. ``lm_eval --limit`` takes only the first questions): a set-bucket cell without
samples is left out of that bucket's mean and std (the bucket reports how many sets it has in
``n_sets``); a bucket without any sample in any set is absent from ``Summary.buckets``, listed in
``Summary.missing_buckets``, excluded from ``avg`` and ``gap``, and logged as a warning. Nothing is
ever filled in with a made-up value. With no samples at all, :func:`summarize` raises.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args

import numpy as np

from val_probing.errors import ValProbingError, items_of
from val_probing.typed import is_int, is_number

log = logging.getLogger(__name__)

Mode = Literal["default", "reference"]
MODES: tuple[Mode, ...] = get_args(Mode)
CI_LEVEL = 0.95
_NO_CI = (float("nan"), float("nan"))
_CHUNK = 4_000_000  # bootstrap draws held in memory at once (32 MB of int64)
K = TypeVar("K")


class SummaryError(ValProbingError, ValueError):
    """Scores that cannot be summarised (none at all, or inconsistent positions)."""


def _check_int(name: str, value: object, minimum: int) -> None:
    if not is_int(value) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")


def bucket_of(position_id: int, n_items: int, n_buckets: int) -> int:
    """Bucket index of a position: ``position_id * n_buckets // n_items``."""
    _check_int("n_items", n_items, 1)
    _check_int("n_buckets", n_buckets, 1)
    _check_int("position_id", position_id, 0)
    if position_id >= n_items:
        raise ValueError(f"position_id: {position_id} is not below n_items={n_items}")
    if n_buckets > n_items:
        raise ValueError(f"n_buckets: {n_buckets} buckets cannot be filled from {n_items} positions")
    return position_id * n_buckets // n_items


def fitting_buckets(wanted: int, min_items: int | None = None, positions: int | None = None) -> int:
    """The default-bucket rule: the largest bucket count <= ``wanted`` that every context can fill.

    At most the fewest items in a context (``min_items``, when known), and, with ``positions``
    (needle positions per context), a divisor of it, so every bucket gets the same number of
    questions. ``wanted`` is the family's default (``FamilySpec.DEFAULT_BUCKETS`` in
    :mod:`val_probing.probes`: 50-position buckets of the official data) or the count asked for.
    """
    _check_int("wanted", wanted, 1)
    if min_items is not None:
        _check_int("min_items", min_items, 1)
    if positions is not None:
        _check_int("positions", positions, 1)
    top = min([wanted, *(n for n in (min_items, positions) if n is not None)])
    if positions is None:
        return top
    return max(b for b in range(1, top + 1) if positions % b == 0)


def is_last_in_bucket(position_id: int, n_items: int, n_buckets: int) -> bool:
    """True when the next position belongs to another bucket (the one plot.py never reads)."""
    return (position_id + 1) * n_buckets // n_items != bucket_of(position_id, n_items, n_buckets)


@dataclass(frozen=True, slots=True)
class ScoredSample:
    """One scored question: which context (set), where the needle was, which question, its score.

    ``key`` is the question's identity (the probe's key) that the gate pairs a baseline's samples
    with a run's on, together with ``set_id`` and ``position_id``; ``""`` where the producer has
    none to give (lm-eval's aggregation items carry no key; they are only summarised, never paired).
    ``score`` is the reference score, in [0, 1].
    """

    set_id: int
    position_id: int
    n_items: int
    key: str
    score: float

    def __post_init__(self) -> None:
        if not isinstance(self.key, str):
            raise ValueError(f"key: expected a text, got {self.key!r}")
        _check_int("set_id", self.set_id, 0)
        _check_int("n_items", self.n_items, 1)
        _check_int("position_id", self.position_id, 0)
        if self.position_id >= self.n_items:
            raise ValueError(f"position_id: {self.position_id} is not below n_items={self.n_items}")
        if not is_number(self.score):
            raise ValueError(f"score: expected a number, got {self.score!r}")
        if not 0.0 <= self.score <= 1.0:  # also rejects NaN
            raise ValueError(f"score: {self.score!r} is not in [0, 1]")


@dataclass(frozen=True, slots=True)
class BucketStat:
    """One bucket, x100: mean over sets, population std across sets, 95% bootstrap CI, sample count."""

    index: int
    mean: float
    std: float
    ci: tuple[float, float]
    n: int
    n_sets: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "mean": self.mean,
            "std": self.std,
            "ci": list(self.ci),
            "n": self.n,
            "n_sets": self.n_sets,
        }


@dataclass(frozen=True, slots=True)
class Summary:
    """The position curve and its two headline numbers (all x100). See the module docstring."""

    buckets: tuple[BucketStat, ...]
    avg: float
    avg_ci: tuple[float, float]
    gap: float
    n_sets: int
    n_samples: int
    mode: Mode
    n_buckets: int
    missing_buckets: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "avg": self.avg,
            "gap": self.gap,
            "avg_ci": list(self.avg_ci),
            "buckets": [b.to_dict() for b in self.buckets],
            "n_sets": self.n_sets,
            "n_samples": self.n_samples,
            "mode": self.mode,
            "n_buckets": self.n_buckets,
            "missing_buckets": list(self.missing_buckets),
        }


@dataclass(frozen=True, slots=True)
class Cells:
    """Samples grouped into set-bucket cells, in plot.py's order (set, bucket, position, input order).

    The one grouping every aggregation shares: :func:`summarize` (point estimates and bootstrap)
    and the gate's permutation tests (:meth:`sample_weights`) read the same cells and weights.
    """

    keys: tuple[tuple[int, int], ...]  # (set_id, bucket) per cell, sorted
    scores: tuple[tuple[float, ...], ...]  # scores per cell
    n_sets: int  # sets seen (also those whose samples were all dropped in reference mode)
    n_used: int  # samples in the cells (reference mode drops some)

    @property
    def present(self) -> tuple[int, ...]:
        """The buckets that have at least one sample, ascending."""
        return tuple(sorted({bucket for _set_id, bucket in self.keys}))

    def sizes(self) -> np.ndarray:
        """Samples per cell."""
        return np.array([len(s) for s in self.scores], dtype=np.int64)

    def bucket_samples(self) -> dict[int, int]:
        """Bucket -> samples in it (over every set), ascending buckets: each bucket's ``n``."""
        counts: dict[int, int] = defaultdict(int)
        for (_set_id, bucket), scores in zip(self.keys, self.scores, strict=True):
            counts[bucket] += len(scores)
        return dict(sorted(counts.items()))

    def bucket_sets(self) -> dict[int, int]:
        """Bucket -> sets that have a sample in it, ascending buckets: each bucket's ``n_sets``."""
        counts: dict[int, int] = defaultdict(int)
        for _set_id, bucket in self.keys:
            counts[bucket] += 1
        return dict(sorted(counts.items()))

    def cell_of_sample(self) -> np.ndarray:
        """The cell index of each sample, in :meth:`flat` order."""
        return np.repeat(np.arange(len(self.keys)), self.sizes())

    def cell_weights(self) -> np.ndarray:
        """(n_cells x n_present) matrix: ``cell_means @ W`` gives every bucket mean (the mean over
        the sets that have the bucket of their cell means)."""
        column = {b: j for j, b in enumerate(self.present)}
        weights = np.zeros((len(self.keys), len(column)))
        for c, (_set_id, bucket) in enumerate(self.keys):
            weights[c, column[bucket]] = 1.0
        return weights / weights.sum(axis=0, keepdims=True)

    def sample_weights(self) -> np.ndarray:
        """(n_used x n_present) matrix: ``flat_scores @ W`` gives every bucket mean, where
        ``flat_scores`` lists the cells' scores in order (:meth:`flat`). Bucket means are linear in
        the scores; the avg is the mean of the columns."""
        sizes = self.sizes()
        return np.repeat(self.cell_weights() / sizes[:, None], sizes, axis=0)

    def flat(self) -> np.ndarray:
        """Every cell's scores, cell after cell (the row order of :meth:`sample_weights`)."""
        return np.fromiter((x for s in self.scores for x in s), dtype=np.float64, count=self.n_used)


def group_cells(samples: Iterable[ScoredSample], n_buckets: int, mode: Mode = "default") -> Cells:
    """Group the samples into set-bucket cells (one pass); ``mode="reference"`` drops the last
    position of every bucket. Raises :class:`SummaryError` when no sample is left."""
    by_cell: dict[tuple[int, int], list[tuple[int, float]]] = defaultdict(list)
    n_items_of_set: dict[int, int] = {}
    n_seen = 0
    n_dropped = 0
    for sample in samples:
        n_seen += 1
        known = n_items_of_set.setdefault(sample.set_id, sample.n_items)
        if known != sample.n_items:
            raise SummaryError(
                f"set {sample.set_id}: samples disagree on n_items ({known} vs {sample.n_items})"
            )
        if mode == "reference" and is_last_in_bucket(sample.position_id, sample.n_items, n_buckets):
            n_dropped += 1
            continue
        bucket = bucket_of(sample.position_id, sample.n_items, n_buckets)
        by_cell[(sample.set_id, bucket)].append((sample.position_id, float(sample.score)))
    if n_seen == 0:
        raise SummaryError("no scored samples to summarize")
    if not by_cell:
        raise SummaryError(f"all {n_seen} samples sit at the last position of a bucket (reference mode)")
    keys = tuple(sorted(by_cell))
    # sorted() is stable: within a position, samples keep their input order, as in plot.py's lists.
    scores = tuple(tuple(s for _pos, s in sorted(by_cell[k], key=lambda pair: pair[0])) for k in keys)
    return Cells(keys, scores, len(n_items_of_set), n_seen - n_dropped)


def bucket_gap(means: np.ndarray) -> np.ndarray:
    """The gap of bucket means: max - min along the last axis (one curve, or a stack of them)."""
    return np.max(means, axis=-1) - np.min(means, axis=-1)


def _point_estimates(cells: Cells, n_buckets: int) -> dict[int, list[float]]:
    """Bucket -> per-set cell means (sets ascending), with plain Python sums as plot.py does."""
    per_bucket: dict[int, list[float]] = defaultdict(list)
    for (_set_id, bucket), scores in zip(cells.keys, cells.scores, strict=True):
        per_bucket[bucket].append(sum(scores) / len(scores))
    return {b: per_bucket[b] for b in range(n_buckets) if b in per_bucket}


def _bootstrap(cells: Cells, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Resampled bucket means (n_boot x n_present) and averages (n_boot), in [0, 1]."""
    rng = np.random.default_rng(seed)
    sizes = cells.sizes()
    flat = cells.flat()
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    cell_of_slot = cells.cell_of_sample()
    slot_start = starts[cell_of_slot]
    slot_size = sizes[cell_of_slot]
    # Every slot of every cell redraws one sample of its own cell; resamples go in chunks of about
    # _CHUNK values so memory stays bounded however many samples and resamples are asked for.
    per_chunk = max(1, _CHUNK // max(1, flat.size))
    cell_means = np.empty((n_boot, len(sizes)))
    for first in range(0, n_boot, per_chunk):
        rows = min(per_chunk, n_boot - first)
        picks = slot_start + rng.integers(0, slot_size, size=(rows, flat.size))
        cell_means[first : first + rows] = np.add.reduceat(flat[picks], starts, axis=1) / sizes
    bucket_means = cell_means @ cells.cell_weights()
    return bucket_means, bucket_means.mean(axis=1)


def _interval(values: np.ndarray) -> tuple[float, float]:
    tail = (1.0 - CI_LEVEL) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo) * 100, float(hi) * 100


def summarize(
    samples: Iterable[ScoredSample],
    *,
    n_buckets: int,
    mode: Mode = "default",
    n_boot: int | None = 1000,
    seed: int = 0,
) -> Summary:
    """Bucket the samples and compute the curve, avg, gap and bootstrap CIs (x100).

    ``n_boot=None``: no bootstrap, the CIs are NaN (the point estimates and std are unchanged).

    ``mode="reference"`` drops the last position of every bucket, as the authors' plot.py does;
    skip-listed rows must already be left out by the caller. See the module docstring.
    """
    _check_args(n_buckets, mode, n_boot)
    cells = group_cells(_scored_samples(samples), n_buckets, mode)
    return summarize_cells(cells, n_buckets=n_buckets, mode=mode, n_boot=n_boot, seed=seed)


def summarize_by(
    samples: Iterable[tuple[K, ScoredSample]],
    *,
    n_buckets: int,
    mode: Mode = "default",
    n_boot: int | None = None,
    seed: int = 0,
    pooled: K | None = None,
) -> dict[K, Summary]:
    """One :class:`Summary` per group, from one pass over ``(group, sample)`` pairs.

    Modelled on inspect_ai's ``grouped()`` metric: the call sees every sample once and returns a
    value per group (groups in first-seen order). ``pooled``: also summarize every sample together
    under this key (inspect_ai's ``all="samples"``); it must not be one of the groups.
    """
    _check_args(n_buckets, mode, n_boot)
    by_group: dict[K, list[ScoredSample]] = {}
    everything: list[ScoredSample] = []
    for group, sample in samples:
        if pooled is not None and group == pooled:
            raise ValueError(f"pooled: {pooled!r} is also the key of a group")
        by_group.setdefault(group, []).append(sample)
        everything.append(sample)
    if pooled is not None:
        by_group[pooled] = everything
    return {
        group: summarize_cells(
            group_cells(members, n_buckets, mode), n_buckets=n_buckets, mode=mode, n_boot=n_boot, seed=seed
        )
        for group, members in by_group.items()
    }


def _scored_samples(samples: object) -> list[ScoredSample]:
    """``samples`` as a list of :class:`ScoredSample`; a ``TypeError`` naming the argument otherwise
    (tuples and dicts once ended in a raw AttributeError deep inside)."""
    wanted = "an iterable of ScoredSample (val_probing.buckets.ScoredSample; a TaskResult's .samples)"
    return items_of(samples, ScoredSample, "samples", wanted)


def _check_args(n_buckets: int, mode: Mode, n_boot: int | None) -> None:
    if mode not in MODES:
        raise ValueError(f"mode: {mode!r} is not one of {MODES}")
    _check_int("n_buckets", n_buckets, 1)
    if n_boot is not None:
        _check_int("n_boot", n_boot, 1)


def summarize_cells(
    cells: Cells, *, n_buckets: int, mode: Mode = "default", n_boot: int | None = None, seed: int = 0
) -> Summary:
    """:func:`summarize` of samples already grouped by :func:`group_cells` (same ``n_buckets``, ``mode``)."""
    _check_args(n_buckets, mode, n_boot)
    n_sets, n_used = cells.n_sets, cells.n_used
    per_bucket = _point_estimates(cells, n_buckets)
    present = sorted(per_bucket)
    missing = tuple(b for b in range(n_buckets) if b not in per_bucket)
    if missing:
        log.warning(
            "%d of %d buckets have no samples and are left out of avg and gap: %s",
            len(missing),
            n_buckets,
            ", ".join(map(str, missing)),
        )
    partial = [b for b in present if len(per_bucket[b]) < n_sets]
    if partial:
        log.warning("buckets %s lack samples in some of the %d sets", partial, n_sets)
    if n_boot is not None:
        boot_buckets, boot_avg = _bootstrap(cells, n_boot, seed)
        bucket_cis = [_interval(boot_buckets[:, j]) for j in range(len(present))]
        avg_ci = _interval(boot_avg)
    else:
        bucket_cis = [_NO_CI] * len(present)
        avg_ci = _NO_CI
    counts = cells.bucket_samples()
    means = [sum(per_bucket[b]) / len(per_bucket[b]) for b in present]
    stats = tuple(
        BucketStat(
            index=b,
            mean=mean * 100,
            std=float(np.std(np.array(per_bucket[b]))) * 100,
            ci=bucket_cis[j],
            n=counts[b],
            n_sets=len(per_bucket[b]),
        )
        for j, (b, mean) in enumerate(zip(present, means, strict=True))
    )
    return Summary(
        buckets=stats,
        avg=sum(means) / len(means) * 100,
        avg_ci=avg_ci,
        gap=float(bucket_gap(np.array(means))) * 100,
        n_sets=n_sets,
        n_samples=n_used,
        mode=mode,
        n_buckets=n_buckets,
        missing_buckets=missing,
    )
