"""The order of a task's docs: every prefix (``lm_eval --limit N``) spreads over depths and contexts."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from val_probing.records import ProbeExample


def radical_inverse(k: int, base: int = 2) -> float:
    """Van der Corput value of ``k`` in ``base`` (base 2: 0, 1/2, 1/4, 3/4, 1/8, ...)."""
    value, scale = 0.0, 1.0 / base
    while k:
        k, digit = divmod(k, base)
        value += digit * scale
        scale /= base
    return value


def spread_order(depths: Sequence[float], groups: Sequence[int]) -> list[int]:
    """A permutation of the docs whose every prefix is spread over depths and over contexts.

    Pick ``k`` aims at depth ``radical_inverse(k, 2)`` in the context chosen by ``radical_inverse(k, 3)``
    (the Halton sequence: two low-discrepancy coordinates that do not correlate) and takes that
    context's first unused doc at or after the target depth (else its deepest one). The target is
    the lower edge of an interval ``[i / 2**m, (i + 1) / 2**m)``, so the first 2**m picks fall in
    2**m distinct intervals whenever each interval holds a position: ``--limit N`` sees shallow,
    middle and deep needles.
    """
    pending: dict[int, list[tuple[float, int]]] = {}
    for i, (depth, group) in enumerate(zip(depths, groups, strict=True)):
        pending.setdefault(group, []).append((depth, i))
    for docs in pending.values():
        docs.sort()
    order: list[int] = []
    k = 0
    while pending:
        names = sorted(pending)
        group = names[int(radical_inverse(k, 3) * len(names))]
        docs = pending[group]
        target = radical_inverse(k, 2)
        j = min(bisect.bisect_left(docs, (target, -1)), len(docs) - 1)
        order.append(docs.pop(j)[1])
        if not docs:
            del pending[group]
        k += 1
    return order


def example_order(examples: Sequence[ProbeExample], lengths: Sequence[int | None]) -> list[int]:
    """Indices of ``examples`` in :func:`spread_order` (contexts = (context length, set)); deterministic."""
    keyed = sorted(
        range(len(examples)),
        key=lambda i: (lengths[i] or 0, examples[i].set_id, examples[i].position_id, examples[i].row),
    )
    contexts = {
        key: n for n, key in enumerate(dict.fromkeys((lengths[i], examples[i].set_id) for i in keyed))
    }
    order = spread_order(
        [examples[i].position_id / examples[i].n_items for i in keyed],
        [contexts[(lengths[i], examples[i].set_id)] for i in keyed],
    )
    return [keyed[j] for j in order]


def order_examples(examples: Sequence[ProbeExample], lengths: Sequence[int | None]) -> list[ProbeExample]:
    """The examples in :func:`example_order`."""
    return [examples[i] for i in example_order(examples, lengths)]
