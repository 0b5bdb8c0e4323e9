"""The oracle test: a reader that finds the key in the context answers every built probe perfectly.

For every family and pool, probes are built with SmolLM2's tokenizer, answered by the family's
``oracle(context, instruction)`` (which reads only the context and the question, never the gold),
scored with the paper's reference metric and bucketed: every bucket must be 100. This checks the
whole chain at once: keys unique in the context, instructions in the official wording that the
scorers parse, gold answers that the reference metric accepts, positions that bucket correctly.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from val_probing.buckets import ScoredSample, summarize
from val_probing.build import ProbeSpec, cached_probes
from val_probing.metrics import reference_score
from val_probing.pools import FILM_URL_ENV, load_pool
from val_probing.probes import get_family
from val_probing.records import FAMILIES, ProbeExample

N_BUCKETS = 8


def _oracle_summary(examples: list[ProbeExample], answers: list[str]) -> tuple[float, list[float]]:
    samples = [
        ScoredSample(
            set_id=ex.set_id,
            position_id=ex.position_id,
            n_items=ex.n_items,
            key=ex.key,
            score=reference_score(ex.family, answer, ex.answer, ex.description),
        )
        for ex, answer in zip(examples, answers, strict=True)
    ]
    summary = summarize(samples, n_buckets=N_BUCKETS, n_boot=50)
    return summary.avg, [b.mean for b in summary.buckets]


@pytest.fixture(params=["embedded", "film"])
def pool(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("VAL_PROBING_CACHE", str(tmp_path / "cache"))
    if request.param == "film":
        film_dir: Path = request.getfixturevalue("film_pieces_dir")
        monkeypatch.setenv(FILM_URL_ENV, film_dir.as_uri())  # the real download path, from a local mirror
    return str(request.param)


@pytest.mark.parametrize("family", FAMILIES)
def test_oracle_scores_100_in_every_bucket(family: str, pool: str, smollm2_tokenizer_dir: Path) -> None:
    spec = ProbeSpec(family=family, length=3000, tokenizer=str(smollm2_tokenizer_dir), pool=pool, sets=3)
    examples, _digest = cached_probes(spec)
    oracle = get_family(family).oracle
    answers = [oracle(ex.context, ex.instruction) for ex in examples]
    avg, buckets = _oracle_summary(examples, answers)
    assert len(buckets) == N_BUCKETS
    assert buckets == [100.0] * N_BUCKETS
    assert avg == 100.0
    # The same pipeline scores a wrong answer (the next question's) below 100: the check can fail.
    shifted = answers[1:] + answers[:1]
    wrong_avg, _ = _oracle_summary(examples, shifted)
    assert wrong_avg < 50.0


@pytest.mark.parametrize("family", FAMILIES)
def test_oracle_refuses_ambiguous_or_missing_keys(family: str) -> None:
    fam = get_family(family)
    items = load_pool(family, "embedded")[:5]
    context = fam.SEPARATOR.join(fam.render(item) for item in items)
    item = items[2]
    question = fam.instruction(fam.key(item))
    assert fam.oracle(context, question) != ""
    assert fam.oracle(context + fam.SEPARATOR + fam.render(item), question) == ""  # twice: no answer
    assert fam.oracle(context.replace(fam.key(item), "gone"), question) == ""
