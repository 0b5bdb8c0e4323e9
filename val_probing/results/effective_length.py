"""The effective context length of a model on a task, from its results at several context lengths.

The rule (:func:`effective_lengths`, for a model run at two or more lengths): the longest tested
length ``L`` such that ``L`` and every shorter tested length pass, where a length passes when its
``avg >= min_avg`` and its CI gap ``<= max_gap``. The CI gap is
``max(0, max_b ci_low_b - min_b ci_high_b)`` over the buckets' 95% bootstrap CIs: the part of the
max - min gap that the buckets' own uncertainty cannot explain (the plain gap is biased upward by
noise: a max minus a min of noisy means). Without samples (no CIs) the plain gap is used, and the
result says so. Defaults: ``min_avg`` = :data:`DEFAULT_MIN_AVG`, ``max_gap`` = :data:`DEFAULT_MAX_GAP`.

Its uncertainty (``EffectiveLength.low`` / ``high``): the same rule with each length's 95% bootstrap
intervals. A length passes *for certain* when its avg CI lies above ``min_avg`` and even the widest
gap its bucket CIs allow (``max ci_high - min ci_low``) is ``<= max_gap``; it *may* pass when its avg
CI reaches ``min_avg`` and the gap the CIs cannot explain (the CI gap) is ``<= max_gap``. ``low`` is
the longest length up to which every length passes for certain, ``high`` the longest up to which
every length may pass: the effective length is in ``[low, high]`` at 95% per length (not a joint
level over lengths). Without CIs both are None.

The peers' definitions, computed beside ours from the same avg (:class:`PeerLength`, same prefix
rule and the same 95% bounds from the avg CI):

* RULER (Hsieh et al. 2024): the longest length whose score stays above a fixed threshold, the
  short-context score of a reference model (Llama-2-7B at 4K: :data:`RULER_THRESHOLD` = 85.6);
* NoLiMa (Modarressi et al. 2025): the longest length whose score stays >= 85%
  (:data:`NOLIMA_FRACTION`) of the model's own short-context score (here: its avg at the shortest
  tested length).

Both papers name the longest length above the threshold; on curves that fall with length that is
the prefix rule used here (every shorter tested length above it too).

Shared by the heatmap (:func:`val_probing.plots.plot_depth_heatmap` marks the length), Table 1's
companion table (:func:`val_probing.tables.effective_markdown`) and the HTML page; the functions are
pure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from val_probing.records import FAMILIES
from val_probing.results.frame import has_ci
from val_probing.results.load import keep_latest
from val_probing.results.select import length_label
from val_probing.results.task_result import TaskResult

DEFAULT_MIN_AVG = 80.0
DEFAULT_MAX_GAP = 20.0
RULER_THRESHOLD = 85.6  # RULER's Table 3: Llama-2-7B's score at 4K
NOLIMA_FRACTION = 0.85  # NoLiMa: 85% of the model's base (short-context) score


def ci_gap(result: TaskResult) -> float:
    """The gap the bucket CIs cannot explain: ``max(0, max ci_low - min ci_high)``; the plain gap
    when the CIs are not known (results without samples)."""
    if not has_ci(result):
        return result.summary.gap
    buckets = result.summary.buckets
    return max(0.0, max(b.ci[0] for b in buckets) - min(b.ci[1] for b in buckets))


def ci_gap_high(result: TaskResult) -> float:
    """The widest gap the bucket CIs allow: ``max ci_high - min ci_low``; the plain gap without CIs."""
    if not has_ci(result):
        return result.summary.gap
    buckets = result.summary.buckets
    return max(b.ci[1] for b in buckets) - min(b.ci[0] for b in buckets)


def _prefix(lengths: Sequence[int], passes: Sequence[bool]) -> int | None:
    """The longest length up to which every length passes (lengths ascending); None if the first fails."""
    found: int | None = None
    for length, ok in zip(lengths, passes, strict=True):
        if not ok:
            break
        found = length
    return found


def _range_text(low: int | None, high: int | None, first: int) -> str:
    def one(x: int | None) -> str:
        return f"< {length_label(first)}" if x is None else length_label(x)

    return one(low) if low == high else f"{one(low)} – {one(high)}"


@dataclass(frozen=True, slots=True)
class LengthCheck:
    """One tested context length of one model and task, against the thresholds."""

    length: int
    avg: float
    gap: float
    ci_gap: float
    uses_ci: bool
    passes: bool
    avg_ci: tuple[float, float] = (math.nan, math.nan)
    ci_gap_high: float = math.nan
    surely_passes: bool = False  # every CI inside the thresholds
    may_pass: bool = False  # the CIs reach the thresholds


@dataclass(frozen=True, slots=True)
class PeerLength:
    """A peer's effective length (RULER or NoLiMa) of one model and task: the longest tested length
    up to which the avg stays >= ``threshold``; ``low`` / ``high`` from the avg's 95% CI (None
    without CIs, or when even the shortest length is below)."""

    name: str
    threshold: float
    rule: str
    lengths: tuple[int, ...]
    length: int | None
    low: int | None
    high: int | None
    uses_ci: bool

    def text(self) -> str:
        point = f"< {length_label(self.lengths[0])}" if self.length is None else length_label(self.length)
        if not self.uses_ci:
            return point
        return f"{point} [{_range_text(self.low, self.high, self.lengths[0])}]"


def peer_length(name: str, threshold: float, rule: str, checks: Sequence[LengthCheck]) -> PeerLength:
    """:class:`PeerLength` of ``checks`` (ascending lengths) at ``threshold``."""
    lengths = [c.length for c in checks]
    uses_ci = all(not math.isnan(c.avg_ci[0]) for c in checks)
    return PeerLength(
        name=name,
        threshold=threshold,
        rule=rule,
        lengths=tuple(lengths),
        length=_prefix(lengths, [c.avg >= threshold for c in checks]),
        low=_prefix(lengths, [c.avg_ci[0] >= threshold for c in checks]) if uses_ci else None,
        high=_prefix(lengths, [c.avg_ci[1] >= threshold for c in checks]) if uses_ci else None,
        uses_ci=uses_ci,
    )


@dataclass(frozen=True, slots=True)
class EffectiveLength:
    """The effective context length of one model on one task (see the module docstring).

    ``length`` is None when even the shortest tested length fails; ``all_pass`` says the longest
    tested length passed (the true effective length may be longer). ``low`` / ``high``: its 95%
    bounds (None: below the shortest tested length, or, with ``uses_ci`` False, unknown).
    ``peers``: RULER's and NoLiMa's effective lengths of the same results.
    """

    model: str
    task: str
    length: int | None
    checks: tuple[LengthCheck, ...]
    min_avg: float
    max_gap: float
    low: int | None = None
    high: int | None = None
    peers: tuple[PeerLength, ...] = ()

    def __post_init__(self) -> None:
        if len(self.checks) < 2:
            raise ValueError("checks: an effective length needs two or more tested lengths")

    @property
    def all_pass(self) -> bool:
        return all(c.passes for c in self.checks)

    @property
    def uses_ci(self) -> bool:
        return all(c.uses_ci for c in self.checks)

    def text(self) -> str:
        """``4K``, ``>= 16K`` (every tested length passed) or ``< 2K`` (none did)."""
        if self.length is None:
            return f"< {length_label(self.checks[0].length)}"
        return (">= " if self.all_pass else "") + length_label(self.length)

    def interval_text(self) -> str:
        """The 95% bounds: ``2K – 8K``, ``4K`` (both bounds agree), or ``unknown`` (no CIs)."""
        if not self.uses_ci:
            return "unknown (no CIs)"
        return _range_text(self.low, self.high, self.checks[0].length)


def _check(r: TaskResult, min_avg: float, max_gap: float) -> LengthCheck:
    gap = ci_gap(r)
    widest = ci_gap_high(r)
    lo, hi = r.summary.avg_ci
    known = has_ci(r) and not math.isnan(lo)
    return LengthCheck(
        length=r.context_length or 0,
        avg=r.summary.avg,
        gap=r.summary.gap,
        ci_gap=gap,
        uses_ci=has_ci(r),
        passes=r.summary.avg >= min_avg and gap <= max_gap,
        avg_ci=(lo, hi),
        ci_gap_high=widest,
        surely_passes=known and lo >= min_avg and widest <= max_gap,
        may_pass=known and hi >= min_avg and gap <= max_gap,
    )


def effective_lengths(
    results: Sequence[TaskResult],
    *,
    min_avg: float = DEFAULT_MIN_AVG,
    max_gap: float = DEFAULT_MAX_GAP,
    ruler_threshold: float = RULER_THRESHOLD,
    nolima_fraction: float = NOLIMA_FRACTION,
) -> list[EffectiveLength]:
    """One :class:`EffectiveLength` per (model, task) with two or more known context lengths, with
    its 95% bounds and the peers' definitions (RULER at ``ruler_threshold``, NoLiMa at
    ``nolima_fraction`` of the avg at the shortest tested length).

    Uses the latest run per length; give results with CIs (``load_results(..., n_boot=N)`` or
    :func:`val_probing.results.ensure_ci`), else the plain gap is used (``uses_ci`` False) and
    the bounds are unknown.
    """
    if any(math.isnan(x) for x in (min_avg, max_gap, ruler_threshold, nolima_fraction)):
        raise ValueError("min_avg / max_gap / ruler_threshold / nolima_fraction: NaN threshold")
    grouped: dict[tuple[str, str], list[TaskResult]] = {}
    for r in keep_latest(results):
        if r.context_length is not None and not r.closed_book:
            grouped.setdefault((r.model, r.task), []).append(r)
    out: list[EffectiveLength] = []
    order: dict[str, int] = {f: i for i, f in enumerate(FAMILIES)}
    for (model, task), group in sorted(grouped.items(), key=lambda kv: (kv[0][0], order[kv[0][1]])):
        if len({r.context_length for r in group}) < 2:
            continue
        checks = [_check(r, min_avg, max_gap) for r in sorted(group, key=lambda r: r.context_length or 0)]
        lengths = [c.length for c in checks]
        known = all(c.uses_ci and not math.isnan(c.avg_ci[0]) for c in checks)
        base = checks[0].avg
        peers = (
            peer_length("RULER", ruler_threshold, f"avg >= {ruler_threshold:g}", checks),
            peer_length(
                "NoLiMa",
                nolima_fraction * base,
                f"avg >= {nolima_fraction:.0%} of its shortest-length avg",
                checks,
            ),
        )
        out.append(
            EffectiveLength(
                model,
                task,
                _prefix(lengths, [c.passes for c in checks]),
                tuple(checks),
                min_avg,
                max_gap,
                low=_prefix(lengths, [c.surely_passes for c in checks]) if known else None,
                high=_prefix(lengths, [c.may_pass for c in checks]) if known else None,
                peers=peers,
            )
        )
    return out
