"""What a run cost, per bucket and per run (val_probing.results.cost)."""

from __future__ import annotations

from pathlib import Path

import pytest

from val_probing.results.cost import bucket_costs, cost_of, run_seconds
from val_probing.results.questions import Question, read_questions
from val_probing.token_counters import WhitespaceCounter

EMBEDDED = Path(__file__).resolve().parent / "data" / "runs" / "embedded" / "SmolLM2-135M-Instruct"


def _q(context: str, position: int, context_tokens: int, answer: str, cached: int | None = None) -> Question:
    return Question(
        set_id=0,
        position_id=position,
        n_items=4,
        context_length=100,
        depth=position / 4,
        key="k",
        gold="g",
        answer=answer,
        score=1.0,
        context_id=context,
        context_tokens=context_tokens,
        instruction="which one is it",  # 4 whitespace tokens
        tokenizer="whitespace",
        cached_tokens=cached,
    )


def test_cost_counts_prompts_shareable_prefixes_and_answers() -> None:
    questions = [
        _q("a", 0, 100, "one two"),
        _q("a", 1, 100, "three"),
        _q("b", 2, 90, ""),
        _q("b", 3, 90, "x"),
    ]
    cost = cost_of(questions, WhitespaceCounter(), seconds=12.5)
    assert cost.questions == 4
    assert cost.prompt_tokens == 100 + 100 + 90 + 90 + 4 * 4
    assert cost.shared_prefix_tokens == 100 + 90  # every question of a context but the first
    assert cost.generation_tokens == 2 + 1 + 0 + 1
    assert cost.cached_tokens is None  # the backend reported nothing
    assert cost.seconds == 12.5
    reported = [_q("a", 0, 100, "x", cached=0), _q("a", 1, 100, "y", cached=96)]
    assert cost_of(reported, WhitespaceCounter()).cached_tokens == 96
    unknown = cost_of(questions, None)
    assert unknown.prompt_tokens is None and unknown.generation_tokens is None
    assert unknown.shared_prefix_tokens == 190  # the contexts' own lengths need no tokenizer


def test_bucket_costs_add_up_to_the_run() -> None:
    questions = [_q("a", p, 100, "w " * p) for p in range(4)]
    per, total = bucket_costs(questions, 2)
    assert sorted(per) == [0, 1] and per[0].questions == per[1].questions == 2
    assert per[0].generation_tokens == 0 + 1 and per[1].generation_tokens == 2 + 3
    assert sum(c.prompt_tokens or 0 for c in per.values()) == total.prompt_tokens == 4 * 104
    assert total.shared_prefix_tokens == 300 and per[0].shared_prefix_tokens == 100


def test_real_run_counts_with_the_probes_tokenizer() -> None:
    (samples,) = EMBEDDED.glob("samples_val_code_*.jsonl")
    questions = read_questions(samples)
    assert {q.tokenizer for q in questions} == {"embedded"}
    per, total = bucket_costs(questions, 8)
    assert total.questions == 32 and sum(c.questions for c in per.values()) == 32
    context = sum(q.context_tokens or 0 for q in questions)
    assert total.prompt_tokens is not None and context < total.prompt_tokens < context + 32 * 60
    assert total.generation_tokens is not None and 32 <= total.generation_tokens <= 32 * 128  # max_gen 128


@pytest.mark.parametrize(
    ("value", "expected"),
    [("170.38", 170.38), (12, 12.0), ("soon", None), (True, None), (-1, None), (None, None), ("nan", None)],
)
def test_run_seconds_reads_lm_evals_total_time(value: object, expected: float | None) -> None:
    assert run_seconds({"total_evaluation_time_seconds": value}) == expected
