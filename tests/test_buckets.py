"""Bucketing and summaries, with the authors' plot.py loop transcribed as an independent oracle."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest

from val_probing.buckets import (
    ScoredSample,
    Summary,
    SummaryError,
    bucket_of,
    fitting_buckets,
    group_cells,
    is_last_in_bucket,
    summarize,
    summarize_by,
)


def plot_py_oracle(
    rows: list[tuple[int, int, float]], skip: set[int], total_len: int, span_len: int
) -> tuple[list[float], list[float], float, float]:
    """plot.py's aggregation, transcribed: rows are (set_id, position_id, score) in file order."""
    span_num = int(total_len / span_len)
    set_ids = sorted({s for s, _p, _x in rows})
    position2acc: dict[int, dict[int, list[float]]] = {s: {i: [] for i in range(total_len)} for s in set_ids}
    for idx, (set_id, position_id, score) in enumerate(rows):
        if idx in skip:
            continue
        position2acc[set_id][position_id].append(score)
    span_acc: dict[int, list[float]] = {}
    for set_id in set_ids:
        span_acc[set_id] = []
        for i in range(span_num):
            span_start = span_len * i
            span_end = span_len * i + span_len - 1
            accs: list[float] = []
            for position_id in range(span_start, span_end):
                accs += position2acc[set_id][position_id]
            span_acc[set_id].append(sum(accs) / len(accs))
    span_acc_list = []
    span_std_list = []
    for i in range(span_num):
        accs = [span_acc[set_id][i] for set_id in set_ids]
        span_acc_list.append(sum(accs) / len(accs))
        span_std_list.append(float(np.std(np.array(accs))))
    long_acc = sum(span_acc_list) / len(span_acc_list)
    gap = max(span_acc_list) - min(span_acc_list)
    return span_acc_list, span_std_list, long_acc, gap


def synthetic_rows(n_sets: int, total_len: int, seed: int) -> list[tuple[int, int, float]]:
    """One row per (set, position), shuffled like a real file could be; scores of all three kinds."""
    rng = random.Random(seed)
    rows = []
    for set_id in range(n_sets):
        for position_id in range(total_len):
            kind = rng.randrange(3)
            score = rng.choice([0.0, 1.0]) if kind else rng.randrange(0, 13) / 12  # binary or recall
            rows.append((set_id, position_id, score))
    rng.shuffle(rows)
    return rows


def to_samples(rows: list[tuple[int, int, float]], total_len: int, skip: set[int]) -> list[ScoredSample]:
    return [
        ScoredSample(set_id=s, position_id=p, n_items=total_len, key=f"{s}-{p}", score=x)
        for idx, (s, p, x) in enumerate(rows)
        if idx not in skip
    ]


def test_bucket_of_matches_the_official_layout() -> None:
    assert [bucket_of(p, 800, 16) for p in (0, 49, 50, 799)] == [0, 0, 1, 15]
    assert all(bucket_of(p, 750, 15) == p // 50 for p in range(750))
    assert [bucket_of(p, 10, 3) for p in range(10)] == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    with pytest.raises(ValueError, match="position_id"):
        bucket_of(800, 800, 16)
    with pytest.raises(ValueError, match="n_buckets"):
        bucket_of(0, 4, 5)


def test_last_position_of_a_bucket_is_the_one_plot_py_never_reads() -> None:
    last = [p for p in range(800) if is_last_in_bucket(p, 800, 16)]
    assert last == [50 * i + 49 for i in range(16)]
    assert [p for p in range(10) if is_last_in_bucket(p, 10, 3)] == [3, 6, 9]


@pytest.mark.parametrize(("total_len", "seed"), [(800, 0), (750, 1), (800, 2)])
def test_reference_mode_equals_plot_py_exactly(total_len: int, seed: int) -> None:
    rows = synthetic_rows(4, total_len, seed)
    skip = set(random.Random(seed).sample(range(len(rows)), 40))
    means, stds, avg, gap = plot_py_oracle(rows, skip, total_len, 50)
    summary = summarize(to_samples(rows, total_len, skip), n_buckets=total_len // 50, mode="reference")
    assert [b.mean for b in summary.buckets] == [m * 100 for m in means]
    assert [b.std for b in summary.buckets] == [s * 100 for s in stds]
    assert summary.avg == avg * 100
    assert summary.gap == gap * 100
    assert summary.n_sets == 4
    assert summary.mode == "reference"


def test_last_position_is_ignored_in_reference_mode_and_counted_in_default_mode() -> None:
    # Every position scores 0 except the last of each bucket (50i+49), which scores 1.
    rows = [(s, p, 1.0 if p % 50 == 49 else 0.0) for s in range(4) for p in range(800)]
    reference = summarize(to_samples(rows, 800, set()), n_buckets=16, mode="reference")
    default = summarize(to_samples(rows, 800, set()), n_buckets=16)
    assert plot_py_oracle(rows, set(), 800, 50)[2] == 0.0
    assert reference.avg == 0.0
    assert all(b.n == 4 * 49 for b in reference.buckets)
    assert default.avg == pytest.approx(100 / 50)
    assert all(b.n == 4 * 50 for b in default.buckets)


def test_skip_listed_rows_change_the_result_like_plot_py() -> None:
    rows = [(s, p, 1.0) for s in range(4) for p in range(800)]
    rows[10] = (0, 10, 0.0)  # a wrong answer that the skip list removes
    kept = summarize(to_samples(rows, 800, set()), n_buckets=16, mode="reference")
    skipped = summarize(to_samples(rows, 800, {10}), n_buckets=16, mode="reference")
    assert kept.avg == plot_py_oracle(rows, set(), 800, 50)[2] * 100 < 100
    assert skipped.avg == plot_py_oracle(rows, {10}, 800, 50)[2] * 100 == 100


def test_default_mode_statistics_by_hand() -> None:
    # 2 sets x 4 positions, 2 buckets of 2 positions.
    scores = {
        (0, 0): 1.0,
        (0, 1): 1.0,
        (0, 2): 0.0,
        (0, 3): 0.5,
        (1, 0): 0.5,
        (1, 1): 0.5,
        (1, 2): 0.0,
        (1, 3): 0.0,
    }
    samples = [ScoredSample(s, p, 4, "", x) for (s, p), x in scores.items()]
    summary = summarize(samples, n_buckets=2, n_boot=200)
    first, second = summary.buckets
    assert first.mean == pytest.approx(75.0)  # sets: 100 and 50
    assert first.std == pytest.approx(25.0)  # population std of (100, 50)
    assert second.mean == pytest.approx(12.5)  # sets: 25 and 0
    assert summary.avg == pytest.approx(43.75)
    assert summary.gap == pytest.approx(62.5)
    assert (summary.n_sets, summary.n_samples, first.n, first.n_sets) == (2, 8, 4, 2)


def test_to_dict_has_the_contract_keys() -> None:
    samples = [ScoredSample(0, p, 4, "", 1.0) for p in range(4)]
    data = summarize(samples, n_buckets=2, n_boot=10).to_dict()
    assert {"avg", "gap", "avg_ci", "buckets", "n_sets", "n_samples", "mode"} <= set(data)
    assert set(data["buckets"][0]) >= {"index", "mean", "std", "ci", "n"}
    assert data["avg"] == 100.0
    assert data["avg_ci"] == [100.0, 100.0]


def test_bootstrap_ci_contains_the_mean_and_shrinks_with_more_samples() -> None:
    def summary_for(n_per_cell: int) -> Summary:
        rng = random.Random(7)
        samples = [
            ScoredSample(s, p, 4 * n_per_cell, "", float(rng.random() < 0.6))
            for s in range(4)
            for p in range(4 * n_per_cell)
        ]
        return summarize(samples, n_buckets=4, n_boot=500, seed=3)

    small, large = summary_for(10), summary_for(250)
    for summary in (small, large):
        assert summary.avg_ci[0] <= summary.avg <= summary.avg_ci[1]
        for bucket in summary.buckets:
            assert bucket.ci[0] <= bucket.mean <= bucket.ci[1]
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(large.avg_ci) < width(small.avg_ci) / 2
    assert width(large.buckets[0].ci) < width(small.buckets[0].ci) / 2


def test_bootstrap_is_seeded() -> None:
    rng = random.Random(1)
    samples = [ScoredSample(s, p, 100, "", rng.random()) for s in range(2) for p in range(100)]
    a = summarize(samples, n_buckets=5, seed=11)
    b = summarize(samples, n_buckets=5, seed=11)
    c = summarize(samples, n_buckets=5, seed=12)
    assert a == b
    assert a.avg_ci != c.avg_ci
    assert a.avg == c.avg


def test_empty_buckets_are_left_out_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    # Like lm_eval --limit 120: only the first 120 positions of set 0.
    samples = [ScoredSample(0, p, 800, "", 1.0 if p < 50 else 0.0) for p in range(120)]
    with caplog.at_level(logging.WARNING, logger="val_probing.buckets"):
        summary = summarize(samples, n_buckets=16, n_boot=50)
    assert [b.index for b in summary.buckets] == [0, 1, 2]
    assert summary.missing_buckets == tuple(range(3, 16))
    assert summary.avg == pytest.approx(100 / 3)
    assert summary.gap == pytest.approx(100)
    assert "13 of 16 buckets have no samples" in caplog.text
    assert summary.to_dict()["missing_buckets"] == list(range(3, 16))


def test_partial_sets_average_over_the_sets_present() -> None:
    samples = [ScoredSample(0, 0, 2, "", 1.0), ScoredSample(1, 0, 2, "", 0.0), ScoredSample(0, 1, 2, "", 0.5)]
    summary = summarize(samples, n_buckets=2, n_boot=20)
    assert [(b.mean, b.n_sets) for b in summary.buckets] == [(50.0, 2), (50.0, 1)]


def test_no_samples_is_an_error() -> None:
    with pytest.raises(SummaryError, match="no scored samples"):
        summarize([], n_buckets=16)


def test_inconsistent_n_items_in_a_set_is_an_error() -> None:
    samples = [ScoredSample(0, 0, 800, "", 1.0), ScoredSample(0, 1, 750, "", 1.0)]
    with pytest.raises(SummaryError, match="n_items"):
        summarize(samples, n_buckets=15)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"set_id": -1}, "set_id"),
        ({"position_id": 800}, "position_id"),
        ({"score": 1.5}, "score"),
        ({"score": float("nan")}, "score"),
        ({"score": True}, "score"),
        ({"n_items": 0}, "n_items"),
    ],
)
def test_scored_sample_validates(kwargs: dict[str, object], field: str) -> None:
    base: dict[str, object] = {"set_id": 0, "position_id": 0, "n_items": 800, "key": "k", "score": 0.5}
    with pytest.raises(ValueError, match=field):
        ScoredSample(**{**base, **kwargs})  # type: ignore[arg-type]


def test_bad_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="mode"):
        summarize([ScoredSample(0, 0, 1, "", 1.0)], n_buckets=1, mode="paper")  # type: ignore[arg-type]


def _uneven_samples(seed: int) -> list[ScoredSample]:
    """3 sets of 12 items; set 2 lacks the last positions, so cells have different sizes."""
    rng = random.Random(seed)
    return [
        ScoredSample(s, p, 12, "", rng.choice([0.0, 0.5, 1.0]))
        for s in range(3)
        for p in range(12)
        if not (s == 2 and p >= 7)
        for _repeat in range(1 + (p % 3 == 0))
    ]


def test_sample_weights_give_summarize_bucket_means_and_avg() -> None:
    samples = _uneven_samples(1)
    cells = group_cells(samples, 4)
    summary = summarize(samples, n_buckets=4, n_boot=None)
    means = cells.flat() @ cells.sample_weights() * 100
    assert cells.present == tuple(b.index for b in summary.buckets) == (0, 1, 2, 3)
    assert cells.sample_weights().shape == (len(samples), 4)
    assert means == pytest.approx([b.mean for b in summary.buckets])
    assert means.mean() == pytest.approx(summary.avg)
    assert np.ptp(means) == pytest.approx(summary.gap)
    assert cells.cell_weights().sum(axis=0) == pytest.approx(np.ones(4))  # a mean over the sets


def test_summarize_by_is_summarize_per_group_and_pooled() -> None:
    a, b = _uneven_samples(2), _uneven_samples(3)
    pairs = [(1024, s) for s in a] + [(2048, s) for s in b]
    got = summarize_by(pairs, n_buckets=4, n_boot=50, seed=7, pooled="all")
    assert list(got) == [1024, 2048, "all"]
    assert got[1024] == summarize(a, n_buckets=4, n_boot=50, seed=7)
    assert got[2048] == summarize(b, n_buckets=4, n_boot=50, seed=7)
    assert got["all"] == summarize(a + b, n_buckets=4, n_boot=50, seed=7)
    assert list(summarize_by(pairs, n_buckets=4)) == [1024, 2048]
    with pytest.raises(ValueError, match="pooled"):
        summarize_by(pairs, n_buckets=4, pooled=1024)


def test_fitting_buckets_is_the_largest_count_every_context_fills_evenly() -> None:
    assert fitting_buckets(16, 800) == 16
    assert fitting_buckets(16) == 16  # nothing known yet: the family's default
    assert fitting_buckets(16, positions=12) == 12
    assert fitting_buckets(15, 750) == 15
    assert fitting_buckets(16, 14) == 14
    assert fitting_buckets(16, 40, positions=10) == 10
    assert fitting_buckets(16, 40, positions=12) == 12
    assert fitting_buckets(15, 40, positions=32) == 8  # the largest divisor of 32 up to 15
    with pytest.raises(ValueError, match="min_items"):
        fitting_buckets(16, 0)
