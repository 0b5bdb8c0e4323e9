"""The VAL tasks' metrics in lm-eval: per-sample scores and the aggregations of the summary.

``process_results`` returns the per-sample reference score under ``ref_score`` (aggregated by
lm-eval's own ``mean``, so it has lm-eval's standard error) and, under every other metric, the
sample's :class:`Item`. The aggregations (``avg``, ``gap``, ``bucket_NN``, and ``avg_<L>`` /
``gap_<L>`` per context length of a run over several) read one summary of the run, computed by
:func:`val_probing.buckets.summarize_by` (one pass, a summary per length and one pooled); lm-eval
calls every aggregation with the same items, so :func:`run_summaries` is cached.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from lm_eval.api.metrics import mean as lm_eval_mean

from val_probing.buckets import ScoredSample, Summary, SummaryError, summarize_by
from val_probing.metrics import reference_score

Statistic = Literal["avg", "gap", "bucket"]
Pooled = Literal["all"]
POOLED: Pooled = "all"
REF_SCORE = "ref_score"


class Item(NamedTuple):
    """What every summary metric aggregates, per sample (a list in lm-eval's samples file)."""

    context_index: int
    position_id: int
    n_items: int
    score: float
    context_length: int = 0  # 0 when the data has no length (official)

    @classmethod
    def of(cls, values: Sequence[Any]) -> Item:
        """An item from lm-eval's stored value (a tuple or list; older runs had no length)."""
        context_index, position_id, n_items, score, *rest = values
        length = int(rest[0]) if rest else 0
        return cls(int(context_index), int(position_id), int(n_items), float(score), length)

    def sample(self) -> ScoredSample:
        """The item as a scored sample. lm-eval's item carries no question text (the samples file keeps
        its format), so the key is what names a question within one run: its context and position."""
        key = f"{self.context_index}:{self.position_id}"
        return ScoredSample(self.context_index, self.position_id, self.n_items, key, self.score)


@dataclass(frozen=True, slots=True)
class Metric:
    """One summary metric: a statistic of the pooled run or of one context length, or one bucket."""

    statistic: Statistic
    length: int | None = None  # avg/gap of one context length
    index: int | None = None  # bucket

    def __post_init__(self) -> None:
        if (self.statistic == "bucket") != (self.index is not None):
            raise ValueError(f"{self.statistic}: a bucket index goes with, and only with, 'bucket'")
        if self.statistic == "bucket" and self.length is not None:
            raise ValueError("bucket metrics are pooled over every context length")

    @property
    def name(self) -> str:
        if self.index is not None:
            return f"bucket_{self.index:02d}"
        return self.statistic if self.length is None else f"{self.statistic}_{self.length}"

    @property
    def higher_is_better(self) -> bool:
        return self.statistic != "gap"

    def summary(self, summaries: Mapping[int | Pooled, Summary]) -> Summary:
        """The summary this metric reads: the pooled one, or that of its context length."""
        key: int | Pooled = POOLED if self.length is None else self.length
        if key not in summaries:
            raise SummaryError(f"{self.name}: no scored samples at context length {self.length}")
        return summaries[key]

    def value(self, summaries: Mapping[int | Pooled, Summary]) -> float | None:
        """This metric of the run's summaries; a bucket without samples is None (``--limit``)."""
        summary = self.summary(summaries)
        if self.statistic == "avg":
            return summary.avg
        if self.statistic == "gap":
            return summary.gap
        return next((b.mean for b in summary.buckets if b.index == self.index), None)


def bucket_metric(index: int) -> str:
    return Metric("bucket", index=index).name


def length_metrics(length: int) -> tuple[str, str]:
    """The per-length metric names: ``avg_<L>``, ``gap_<L>``."""
    return Metric("avg", length).name, Metric("gap", length).name


def summary_metrics(n_buckets: int, lengths: Sequence[int] = ()) -> list[Metric]:
    """avg, gap, then avg_<L>/gap_<L> per length, then bucket_00 .. bucket_<n-1>."""
    return [
        Metric("avg"),
        Metric("gap"),
        *(Metric(stat, length) for length in lengths for stat in ("avg", "gap")),
        *(Metric("bucket", index=b) for b in range(n_buckets)),
    ]


UNFINISHED = "unfinished"


def unfinished_metric(index: int | None = None) -> str:
    """``unfinished`` (the run's count) or ``unfinished_NN`` (bucket NN's count)."""
    return UNFINISHED if index is None else f"{UNFINISHED}_{index:02d}"


def trace_opener(think_end: str) -> str | None:
    """The mark that opens a reasoning trace closed by ``think_end`` (``</think>`` -> ``<think>``)."""
    return think_end.replace("</", "<", 1) if think_end.startswith("</") else None


def final_answer(response: str | None, think_end: str) -> str | None:
    """The answer after a reasoning trace; None when the response never left the trace.

    lm-eval's hf, vllm and chat backends keep only the text after ``think_end_token``, but a trace cut
    by the token budget before that token comes back whole (lm-eval issue #3382), still holding the
    mark that opened it; backends that do not strip (local-completions) return the trace and the mark.
    """
    if response is None:
        return None
    if think_end in response:
        return response.split(think_end)[-1].lstrip()
    opener = trace_opener(think_end)
    return None if opener is not None and opener in response else response


def _count(values: Iterable[int]) -> int:
    return int(sum(values))


def unfinished_metric_list(n_buckets: int) -> list[dict[str, Any]]:
    """With a reasoning model: how many answers never left the trace, in the run and per bucket."""
    names = [unfinished_metric(), *(unfinished_metric(b) for b in range(n_buckets))]
    return [{"metric": n, "aggregation": _count, "higher_is_better": False} for n in names]


def process_results(
    doc: Mapping[str, Any],
    results: Sequence[str],
    *,
    lengths: Sequence[int] = (),
    think_end: str | None = None,
) -> dict[str, Any]:
    """Per-sample metrics: the reference score, and the item every summary metric aggregates.

    ``lengths``: the run's context lengths when there are several (one ``avg_<L>``/``gap_<L>`` each).
    ``think_end``: a reasoning model's end-of-trace mark: an answer still inside the trace scores 0
    (its words may only echo the needle while thinking) and is counted under ``unfinished``.
    """
    response = results[0] if results else None
    answer = final_answer(response, think_end) if think_end is not None else response
    unfinished = response is not None and answer is None
    score = 0.0 if unfinished else reference_score(doc["family"], answer, doc["answer"], doc["description"])
    item = Item(
        int(doc["context_index"]),
        int(doc["position_id"]),
        int(doc["n_items"]),
        score,
        int(doc.get("context_length") or 0),
    )
    n_buckets = int(doc["n_buckets"])
    out: dict[str, Any] = {REF_SCORE: score} | {m.name: item for m in summary_metrics(n_buckets, lengths)}
    if think_end is not None:
        bucket = int(doc["bucket"])
        out[unfinished_metric()] = int(unfinished)
        out |= {unfinished_metric(b): int(unfinished and b == bucket) for b in range(n_buckets)}
    return out


def run_summaries(
    items: Iterable[Sequence[Any]], n_buckets: int, by_length: bool
) -> Mapping[int | Pooled, Summary]:
    """The run's summary under :data:`POOLED` and, with ``by_length``, one per context length."""
    return _summaries(tuple(Item.of(v) for v in items), n_buckets, by_length)


@functools.lru_cache(maxsize=8)
def _summaries(items: tuple[Item, ...], n_buckets: int, by_length: bool) -> Mapping[int | Pooled, Summary]:
    # lm-eval reports no CI (n_boot=None); val-probing score and the results loader do.
    if by_length:
        pairs: Iterable[tuple[int | Pooled, ScoredSample]] = (
            (it.context_length, it.sample()) for it in items
        )
        return summarize_by(pairs, n_buckets=n_buckets, pooled=POOLED)
    return summarize_by(((POOLED, it.sample()) for it in items), n_buckets=n_buckets)


def aggregate(
    items: Sequence[Sequence[Any]], *, n_buckets: int, metric: Metric, by_length: bool = False
) -> float | None:
    """The value of ``metric`` over the run's items (lm-eval's aggregation of that metric).

    ``by_length``: the run has per-length metrics (every aggregation then shares one cached call).
    """
    return metric.value(run_summaries(items, n_buckets, by_length or metric.length is not None))


def aggregate_avg(items: Sequence[Sequence[Any]], *, n_buckets: int, length: int | None = None) -> float:
    metric = Metric("avg", length)
    return metric.summary(run_summaries(items, n_buckets, length is not None)).avg


def aggregate_gap(items: Sequence[Sequence[Any]], *, n_buckets: int, length: int | None = None) -> float:
    metric = Metric("gap", length)
    return metric.summary(run_summaries(items, n_buckets, length is not None)).gap


def aggregate_bucket(items: Sequence[Sequence[Any]], *, n_buckets: int, index: int) -> float | None:
    """Mean of bucket ``index`` (x100), None when no sample falls in it (e.g. with ``--limit``)."""
    return aggregate(items, n_buckets=n_buckets, metric=Metric("bucket", index=index))


def metric_list(n_buckets: int, lengths: Sequence[int] = ()) -> list[dict[str, Any]]:
    """lm-eval's ``metric_list`` for ``n_buckets`` buckets (the aggregations close over it), with
    ``avg_<L>``/``gap_<L>`` for each of ``lengths`` (pass them only when there are several).

    ``ref_score`` is aggregated by lm-eval's own ``mean``: lm-eval knows its standard error.
    """

    def entry(name: str, agg: Callable[..., Any], higher: bool) -> dict[str, Any]:
        return {"metric": name, "aggregation": agg, "higher_is_better": higher}

    return [entry(REF_SCORE, lm_eval_mean, True)] + [
        entry(
            m.name,
            functools.partial(aggregate, n_buckets=n_buckets, metric=m, by_length=bool(lengths)),
            m.higher_is_better,
        )
        for m in summary_metrics(n_buckets, lengths)
    ]
