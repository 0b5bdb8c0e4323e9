"""The lookup check of issue 24's scratch regime: does a model find a sentence by its content, by distance?"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from val_probing.in2 import synthetic as syn
from val_probing.in2.experiment.lookup import DISTANCES, lookup_accuracy, lookup_texts, model_lookup
from val_probing.in2.scratch import word_tokenizer, write_scratch_model

_PIECE = re.compile(r"[a-z]+|\.|\n")


class WordIds:
    """A whitespace encoder (words, ".", newlines), one id per distinct piece."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def __call__(self, text: str) -> list[int]:
        return [self.ids.setdefault(p, len(self.ids)) for p in _PIECE.findall(text)]


def content_lookup(ids: Sequence[int]) -> list[int]:
    """An oracle that finds the last earlier occurrence of the current 3 tokens and predicts what followed."""
    out = []
    for j in range(len(ids)):
        guess = -1
        for i in range(j - 1, 1, -1):
            if ids[i - 2 : i + 1] == ids[j - 2 : j + 1]:
                guess = ids[i + 1]
                break
        out.append(guess)
    return out


def offset_copy(offset: int) -> Callable[[Sequence[int]], list[int]]:
    """A copier at a fixed offset: what a model that copied only its training rows' layout does."""
    return lambda ids: [ids[j + 1 - offset] if j + 1 >= offset else -1 for j in range(len(ids))]


@pytest.fixture(scope="module")
def language() -> syn.Language:
    return syn.Language.make(2000, seed=0, sentence_words=(8, 8))


def test_texts_repeat_the_sentence_at_their_distance(language: syn.Language) -> None:
    texts = lookup_texts(language, per_distance=4, n_sentences=6, seed=1)
    assert [t.distance for t in texts] == [d for d in DISTANCES for _ in range(4)]
    where = {"near": 5, "middle": 3, "far": 0}
    for t in texts:
        lines = t.prefix.split("\n")
        assert len(lines) == len(set(lines)) == 6
        assert t.repeat == lines[where[t.distance]]
        assert t.text.split("\n")[-1] == t.repeat
    assert texts == lookup_texts(language, per_distance=4, n_sentences=6, seed=1)
    assert texts != lookup_texts(language, per_distance=4, n_sentences=6, seed=2)


def test_a_content_lookup_scores_everywhere_and_an_offset_copier_only_near(language: syn.Language) -> None:
    texts = lookup_texts(language, per_distance=10, n_sentences=8, seed=0)
    assert lookup_accuracy(content_lookup, WordIds(), texts) == {d: 1.0 for d in DISTANCES}
    line = 8 + 2  # 8 words, ".", the newline
    copier = lookup_accuracy(offset_copy(line), WordIds(), texts)
    assert copier["near"] == 1.0
    assert copier["middle"] < 0.1 and copier["far"] < 0.1


def test_only_the_words_after_the_key_are_scored(language: syn.Language) -> None:
    """The key's words are not looked up: a predictor right on them and wrong after scores 0."""
    texts = lookup_texts(language, per_distance=3, n_sentences=4, seed=0)
    encode = WordIds()

    def right_until_the_key(ids: Sequence[int]) -> list[int]:
        end = len(ids) - (8 + 1 - 3)  # the repeat's 5 words after its 3 key words, and its "."
        return [ids[j + 1] if j + 1 < end else -1 for j in range(len(ids))]

    assert set(lookup_accuracy(right_until_the_key, encode, texts).values()) == {0.0}
    with pytest.raises(ValueError, match="nothing after its key"):
        lookup_accuracy(content_lookup, encode, texts, key_words=9)


def test_a_tokenizer_that_splits_across_the_key_is_refused(language: syn.Language) -> None:
    texts = lookup_texts(language, per_distance=1, n_sentences=3, seed=0)
    joined = WordIds()

    def encode(text: str) -> list[int]:  # merges the last two pieces: a prefix encodes differently
        ids = joined(text)
        return [*ids[:-2], 10_000 + ids[-1]] if len(ids) > 2 else ids

    with pytest.raises(ValueError, match="does not split"):
        lookup_accuracy(content_lookup, encode, texts)


def test_a_saved_scratch_model_is_measured_at_every_distance(tmp_path: Path, language: syn.Language) -> None:
    tokenizer = word_tokenizer(language.words, syn.tokenizer_texts(language))
    folder = write_scratch_model(tmp_path / "m", tokenizer, hidden=32, intermediate=64, layers=1)
    first = model_lookup(folder, language, per_distance=3, n_sentences=4)
    assert set(first) == set(DISTANCES)
    assert all(0.0 <= v < 0.5 for v in first.values())  # a random model looks nothing up
    assert model_lookup(folder, language, per_distance=3, n_sentences=4) == first
