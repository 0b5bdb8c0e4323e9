"""The paired permutation tests of the gate: sign flips of weighted paired differences, and Holm."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from val_probing.buckets import ScoredSample, group_cells
from val_probing.gate.baseline import (
    GateInputError,
    Statistics,
)


@dataclass(frozen=True, slots=True)
class Paired:
    """Matched samples of one task: scores (n,) of both runs, in the order of their set-bucket cells."""

    old: np.ndarray
    new: np.ndarray
    bucket_sets: dict[int, int]  # bucket -> number of sets that have it
    bucket_samples: dict[int, int]  # bucket -> paired questions in it
    matrix: np.ndarray  # (n, buckets present): scores @ matrix = bucket means (summarize's weights)
    column: Mapping[int, int]  # bucket -> its column of matrix
    binary: bool  # every score on both sides is 0 or 1


def pair_samples(
    name: str, old: Sequence[ScoredSample], new: Sequence[ScoredSample], n_buckets: int
) -> Paired:
    def index(samples: Sequence[ScoredSample], which: str) -> dict[tuple[int, int, str], ScoredSample]:
        out: dict[tuple[int, int, str], ScoredSample] = {}
        for s in samples:
            k = (s.set_id, s.position_id, s.key)
            if k in out:
                raise GateInputError(f"{name}: the {which} has two samples for (set, position, key) {k}")
            out[k] = s
        return out

    a, b = index(old, "baseline"), index(new, "run")
    only_a, only_b = a.keys() - b.keys(), b.keys() - a.keys()
    if only_a or only_b:
        example = sorted(only_a or only_b)[0]
        raise GateInputError(
            f"{name}: the samples do not match: {len(only_a)} baseline questions are not in the run "
            f"and {len(only_b)} run questions are not in the baseline (e.g. (set, position, key) "
            f"{example}); same probes and --limit are needed"
        )
    keys = sorted(a)
    # summarize's cells and weights; group_cells keeps the (set, position) order within each cell,
    # so its sample order is that of ``keys``
    cells = group_cells([a[k] for k in keys], n_buckets)
    old_scores = np.array([a[k].score for k in keys])
    new_scores = np.array([b[k].score for k in keys])
    scores = np.concatenate([old_scores, new_scores])
    bucket_sets = cells.bucket_sets()
    return Paired(
        old=old_scores,
        new=new_scores,
        bucket_sets=bucket_sets,
        bucket_samples=cells.bucket_samples(),
        matrix=cells.sample_weights(),
        column={b: j for j, b in enumerate(bucket_sets)},
        binary=bool(((scores == 0) | (scores == 1)).all()),
    )


EXACT_MAX = 12  # up to this many changed questions, p-values enumerate all 2**n swaps exactly


def _swap_masks(n: int) -> np.ndarray:
    """Every subset of ``n`` questions as 0/1 rows, shape (2**n, n): the exact permutation set."""
    return ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(np.float64)


SEQUENTIAL_HITS = 20  # Monte Carlo stops after this many resamples at least as extreme as observed


def monte_carlo_p(
    extreme: Callable[[np.ndarray], np.ndarray], n: int, rng: np.random.Generator, resamples: int
) -> float:
    """A Monte Carlo permutation p-value from random 0/1 swap rows of length ``n``.

    ``extreme(masks)`` says, per row, whether that swap's statistic is at least as extreme as the
    observed one. Besag & Clifford's sequential p-value (1991): draw until :data:`SEQUENTIAL_HITS`
    extreme rows (then p = hits / rows drawn) or ``resamples`` rows (then p = (k + 1) /
    (resamples + 1)). Both are exact p-values (size at most the level); a clear "no change" stops
    after a few dozen rows, a real drop uses every resample.
    """
    done = hits = 0
    rows = 64
    cap = max(1, 2_000_000 // max(1, n))  # bounded memory per chunk
    while done < resamples:
        rows = min(rows, cap, resamples - done)
        bits = np.unpackbits(rng.integers(0, 256, size=(rows, (n + 7) // 8), dtype=np.uint8), axis=1)
        found = np.flatnonzero(extreme(bits[:, :n].astype(np.float64)))  # fair coin flips, 8 per byte
        if hits + found.size >= SEQUENTIAL_HITS:
            return SEQUENTIAL_HITS / (done + int(found[SEQUENTIAL_HITS - hits - 1]) + 1)
        hits += found.size
        done += rows
        rows *= 2
    return (1 + hits) / (1 + resamples)


def sign_flip_p(
    terms: np.ndarray, rng: np.random.Generator, resamples: int, *, binary: bool = True
) -> tuple[float, str]:
    """One-sided p-value of ``sum(terms)`` being this low if each term's sign were a coin flip.

    A term is one question's weighted paired difference; swapping the two runs' outcomes of a
    question flips its sign, so this is the paired permutation test of a linear metric. When every
    non-zero term has the same size the exact binomial tail is returned (for 0/1 scores that is
    McNemar's exact test); with at most :data:`EXACT_MAX` changed questions all sign patterns are
    enumerated; otherwise ``resamples`` random sign flips, with the (k + 1) / (n + 1) correction.
    """
    nz = terms[terms != 0]
    if nz.size == 0:
        return 1.0, "no change"
    size = np.abs(nz)
    observed = nz.sum() + 1e-12 * size.sum()
    if np.allclose(size, size[0], rtol=1e-9, atol=0):
        m, k = nz.size, int((nz < 0).sum())  # p = P(Binom(m, 1/2) >= k)
        tail = sum(math.comb(m, j) for j in range(k, m + 1))
        return min(1.0, tail / 2**m), "McNemar exact" if binary else "sign test (exact)"
    if nz.size <= EXACT_MAX:
        sums = size.sum() - 2 * (_swap_masks(nz.size) @ size)
        return float((sums <= observed).mean()), "sign-flip (exact)"
    total = size.sum()  # a flipped row's sum is total - 2 * (the flipped sizes)
    return monte_carlo_p(lambda m: total - 2 * (m @ size) <= observed, nz.size, rng, resamples), "sign-flip"


def paired_interval(terms: np.ndarray, z: float = 1.96) -> tuple[float, float]:
    """95% interval of ``sum(terms)`` (x100): the sum +- z times its randomisation standard error.

    Under the sign flips each term's sign is a coin flip, so ``sum(terms**2)`` is the variance of the
    sum: the paired standard error, exact in its second moment and cheap (no resampling).
    """
    total, se = float(terms.sum()), float(np.sqrt((terms**2).sum()))
    return (total - z * se) * 100, (total + z * se) * 100


def holm(p_values: Sequence[float], weights: Sequence[float] | None = None) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given); with ``weights``, the weighted Holm
    procedure (Holm 1979): test i gets the share ``w_i / sum(w)`` of alpha among the tests not yet
    rejected, and the tests are taken in the order of ``p_i / w_i``. Equal weights are plain Holm.
    Either way the family-wise error is at most alpha under any dependence."""
    m = len(p_values)
    w = [1.0] * m if weights is None else [float(x) for x in weights]
    if len(w) != m or any(x <= 0 for x in w):
        raise ValueError(f"holm: expected {m} positive weights, got {weights!r}")
    order = sorted(range(m), key=lambda i: p_values[i] / w[i])
    adjusted = [0.0] * m
    running, left = 0.0, sum(w)
    for i in order:
        running = max(running, min(1.0, left / w[i] * p_values[i]))
        adjusted[i] = running
        left -= w[i]
    return adjusted


def resamples_for(stats: Statistics, n_tests: int) -> int:
    """Resamples for Monte Carlo p-values: at least ``10 * n_tests / alpha``.

    A Monte Carlo p-value is never below ``1 / (resamples + 1)``; after Holm the smallest one is
    multiplied by the number of tests, so too few resamples could make a clear drop unfailable.
    """
    return max(stats.resamples, math.ceil(10 * max(1, n_tests) / stats.alpha))
