"""The synthetic pseudo-word regime (issue 24): language, corpus, pool, word tokenizer, scratch model."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest

from val_probing.in2 import synthetic as syn
from val_probing.in2.scratch import SPECIAL_TOKENS, word_tokenizer, write_scratch_model
from val_probing.in2.segment import split_paragraphs

WORD = re.compile(f"(?:[{syn.CONSONANTS}][{syn.VOWELS}]){{2,3}}")


@pytest.fixture(scope="module")
def language() -> syn.Language:
    return syn.Language.make(300, seed=0)


@pytest.fixture(scope="module")
def corpus(language: syn.Language) -> list[tuple[str, str]]:
    return syn.corpus_texts(language, n_texts=20, sentences_per_text=12, seed=0)


@pytest.fixture(scope="module")
def items(language: syn.Language, corpus: list[tuple[str, str]]) -> list[Any]:
    return syn.document_items(language, 200, 5, seed=0, exclude=syn.corpus_sentences(corpus))


@pytest.fixture(scope="module")
def tokenizer(language: syn.Language) -> Any:
    return word_tokenizer(language.words, syn.tokenizer_texts(language))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: Any) -> Path:
    return write_scratch_model(
        tmp_path_factory.mktemp("scratch") / "model", tokenizer, hidden=32, intermediate=64
    )


def _ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


# --------------------------------------------------------------------------------------------------
# The language


def test_pseudo_words_are_deterministic_distinct_consonant_vowel_words() -> None:
    words = syn.pseudo_words(500, seed=3)
    assert words == syn.pseudo_words(500, seed=3)
    assert words != syn.pseudo_words(500, seed=4)
    assert len(set(words)) == 500
    assert all(WORD.fullmatch(w) for w in words), [w for w in words if not WORD.fullmatch(w)][:3]
    assert {len(w) for w in words} == {4, 6}  # both syllable counts occur
    with pytest.raises(ValueError, match="pseudo-words"):
        syn.pseudo_words(10**7, seed=0)


def test_language_checks_its_words() -> None:
    with pytest.raises(ValueError, match="distinct"):
        syn.Language(("zaku",) * 10)
    with pytest.raises(ValueError, match="a-z"):
        syn.Language(tuple(f"Zaku{c}" for c in "abcdefghij"))
    with pytest.raises(ValueError, match="sentence_words"):
        syn.Language(syn.pseudo_words(20, 0), (5, 3))


def test_sentences_have_the_shape_and_are_distinct_and_seeded(language: syn.Language) -> None:
    drawn = syn.sentences(language, 400, seed=1)
    assert drawn == syn.sentences(language, 400, seed=1)
    assert drawn != syn.sentences(language, 400, seed=2)
    assert len(set(drawn)) == 400
    vocabulary = set(language.words)
    lengths = set()
    for s in drawn:
        assert re.fullmatch(r"[a-z]+( [a-z]+)*\.", s), s
        words = s.removesuffix(".").split(" ")
        lengths.add(len(words))
        assert set(words) <= vocabulary
    assert lengths == set(range(6, 10))
    excluded = syn.sentences(language, 50, seed=5, exclude=frozenset(drawn[:200]))
    assert not set(excluded) & set(drawn[:200])


def test_corpus_is_one_sentence_per_line_all_distinct(
    language: syn.Language, corpus: list[tuple[str, str]]
) -> None:
    assert corpus == syn.corpus_texts(language, 20, 12, seed=0)
    assert corpus != syn.corpus_texts(language, 20, 12, seed=1)
    assert [i for i, _t in corpus[:2]] == ["synthetic-0001", "synthetic-0002"]
    assert len({i for i, _t in corpus}) == 20
    lines = [line for _i, text in corpus for line in text.split("\n")]
    assert len(lines) == 240 and len(set(lines)) == 240
    for _i, text in corpus:
        assert split_paragraphs(text) == text.split("\n")  # the segmenter sees one sentence per paragraph
        assert all(line.endswith(".") and "." not in line[:-1] for line in text.split("\n"))
    assert syn.corpus_sentences(corpus) == frozenset(lines)


def test_document_items_are_new_sentences_with_a_unique_piece(
    language: syn.Language, corpus: list[tuple[str, str]], items: list[Any]
) -> None:
    assert len(items) == 200
    sentences = [item.sentence for item in items]
    assert len(set(sentences)) == 200
    assert not set(sentences) & syn.corpus_sentences(corpus)  # disjoint from the training corpus
    for item in items:
        words = item.sentence.split(" ")
        span = item.piece.split(" ")
        assert len(span) == 5
        assert any(words[k : k + 5] == span for k in range(len(words) - 4))  # whole, contiguous words
        assert item.sentence.count(item.piece) == 1
    assert items == syn.document_items(language, 200, 5, 0, syn.corpus_sentences(corpus))
    assert items != syn.document_items(language, 200, 5, 1, syn.corpus_sentences(corpus))
    with pytest.raises(ValueError, match="phrase_words"):
        syn.document_items(language, 1, 7, 0)  # longer than the shortest sentence


def test_the_pool_file_loads_as_a_document_pool(tmp_path: Path, items: list[Any]) -> None:
    from val_probing.pools import load_pool

    path = syn.write_document_pool(tmp_path / "pool.jsonl", items)
    assert load_pool("document", str(path)) == items
    with pytest.raises(ValueError, match="at least one"):
        syn.write_document_pool(tmp_path / "empty.jsonl", [])


# --------------------------------------------------------------------------------------------------
# The tokenizer


def test_every_pseudo_word_is_one_token(language: syn.Language, tokenizer: Any) -> None:
    assert tokenizer.convert_ids_to_tokens([0, 1, 2, 3]) == list(SPECIAL_TOKENS)
    assert (
        tokenizer.unk_token,
        tokenizer.pad_token,
        tokenizer.bos_token,
        tokenizer.eos_token,
    ) == SPECIAL_TOKENS
    for word in language.words:
        for form in (word, f" {word}"):
            ids = _ids(tokenizer, form)
            assert len(ids) == 1 and ids[0] != tokenizer.unk_token_id, form
    vocab = tokenizer.get_vocab()
    assert len(vocab) == len(tokenizer)
    assert len(tokenizer) < 4 + 2 * len(language.words) + 100  # words, plus a few template pieces
    assert _ids(tokenizer, "zzz") == [tokenizer.unk_token_id]  # not a word of it: <unk>, so the checks bite


def _spaced(text: str) -> str:
    """What a decoded text reads: the tokenizer's normalizer puts a space after newlines and quotes."""
    return text.replace("\n", "\n ").replace('"', '" ')


def test_a_word_is_one_id_in_a_context_a_quote_and_an_answer(tokenizer: Any, items: list[Any]) -> None:
    from val_probing.official import film_prompt
    from val_probing.probes.document import instruction

    item = items[0]
    first = item.piece.split()[0].strip(".")  # the quote's first word: also in the context and the answer
    context = "\n".join([item.sentence, *(i.sentence for i in items[1:5] if first not in i.sentence.split())])
    prompt = film_prompt(context, instruction(item.piece))
    (word_id,) = _ids(tokenizer, f" {first}")
    answer = _ids(tokenizer, f" {item.sentence}")
    assert word_id in answer and tokenizer.decode(answer) == f" {item.sentence}"  # answers: exact
    # at the context's start (after a newline) or inside it, and in the quote (after '"'): the same id
    assert _ids(tokenizer, prompt).count(word_id) == 2


def test_round_trip_is_exact_and_nothing_is_unknown(
    tokenizer: Any, corpus: list[tuple[str, str]], items: list[Any]
) -> None:
    from val_probing.official import film_prompt
    from val_probing.probes.document import instruction

    texts = [text for _i, text in corpus]
    for item in items[:50]:
        context = "\n".join(i.sentence for i in items[:30])
        texts += [film_prompt(context, instruction(item.piece)), item.sentence, f" {item.sentence}"]
    for text in texts:
        ids = _ids(tokenizer, text)
        assert tokenizer.unk_token_id not in ids, text
        assert tokenizer.decode(ids) == _spaced(text)


def test_saved_tokenizer_and_model_reload(
    model_dir: Path, tokenizer: Any, corpus: list[tuple[str, str]]
) -> None:
    from transformers import AutoConfig, AutoTokenizer

    again = AutoTokenizer.from_pretrained(str(model_dir))
    text = corpus[0][1]
    assert _ids(again, text) == _ids(tokenizer, text)
    assert again.decode(_ids(again, text)) == _spaced(text)
    config = AutoConfig.from_pretrained(str(model_dir))
    assert config.vocab_size == len(tokenizer) and config.tie_word_embeddings
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (2, 3, 1)


# --------------------------------------------------------------------------------------------------
# End to end: probes and IN2 data with the scratch tokenizer, and the model generates


def test_probes_and_in2_data_with_the_scratch_model(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    model_dir: Path,
    corpus: list[tuple[str, str]],
    items: list[Any],
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from val_probing.build import ProbeSpec, cached_probes
    from val_probing.in2.assemble import LengthRange, MixtureRatios
    from val_probing.in2.dataset import SynthesisConfig, synthesize, to_row
    from val_probing.in2.qa import ExtractiveLocalGenerator
    from val_probing.in2.segment import RawText
    from val_probing.official import film_prompt
    from val_probing.token_counters import HFTokenCounter

    monkeypatch.setenv("VAL_PROBING_CACHE", str(tmp_path / "cache"))
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    unk = tokenizer.unk_token_id

    pool = syn.write_document_pool(tmp_path / "pool.jsonl", items)
    spec = ProbeSpec(
        family="document", length=256, tokenizer=str(model_dir), pool=str(pool), sets=1, positions=4
    )
    probes, _digest = cached_probes(spec)
    assert len(probes) == 4 and (tmp_path / "cache" / "probes").is_dir()
    assert all(200 < ex.context_tokens <= 256 for ex in probes)
    for ex in probes:
        prompt = film_prompt(ex.context, ex.instruction)
        assert unk not in _ids(tokenizer, prompt)
        assert tokenizer.decode(_ids(tokenizer, prompt)) == _spaced(prompt)

    config = SynthesisConfig(
        n_examples=8,
        ratios=MixtureRatios.parse("fine_grained=1"),
        length=LengthRange(192, 256, 32),
        segment_tokens=24,
    )
    texts = [RawText(i, t) for i, t in corpus]
    plan = synthesize(
        texts, HFTokenCounter.load(str(model_dir)), ExtractiveLocalGenerator(seed=0), config, random.Random(0)
    )
    examples = list(plan.examples())
    assert len(examples) == 8
    for example in examples:
        row = to_row(example, "film")
        for text in (row["prompt"], row["completion"]):
            ids = _ids(tokenizer, text)
            assert unk not in ids, text
            assert tokenizer.decode(ids) == _spaced(text)
        assert 192 - 32 <= example.context_tokens <= 256 + 32

    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    prompt_ids = torch.tensor([_ids(tokenizer, film_prompt(probes[0].context, probes[0].instruction))])
    with torch.no_grad():
        out = model.generate(prompt_ids, max_new_tokens=4, do_sample=False)
    new = out[0, prompt_ids.shape[1] :].tolist()
    assert 1 <= len(new) <= 4
    assert isinstance(tokenizer.decode(new), str)


def test_integration_questions_are_covered(language: syn.Language, tokenizer: Any) -> None:
    """The offline generator's two-phrase question, with phrases that end at a sentence's '.'."""
    from val_probing.in2.qa import ExtractiveLocalGenerator, QARequest
    from val_probing.in2.segment import Segment

    texts = syn.corpus_texts(language, 2, 6, seed=9)
    segments = tuple(Segment(i, 0, t, 60) for i, t in texts)
    requests = [QARequest("integration", segments)]
    asked, at_end = 0, 0
    for seed in range(40):  # different quotes: some end inside a sentence, some at its end
        result = ExtractiveLocalGenerator(seed=seed).generate(requests)
        for pair in result.pairs.values():
            asked += 1
            at_end += '."' in pair.question
            for text in (pair.question, f" {pair.answer}"):
                ids = _ids(tokenizer, text)
                assert tokenizer.unk_token_id not in ids, text
                assert tokenizer.decode(ids) == _spaced(text)
    assert asked == 40 and 0 < at_end < 40


def test_copy_rows_ask_for_a_copy_of_their_prompt(language: Any) -> None:
    from val_probing.in2.synthetic import copy_rows

    rows = copy_rows(language, 50, (3, 7), seed=1)
    assert len(rows) == 50 and rows == copy_rows(language, 50, (3, 7), seed=1)
    assert rows != copy_rows(language, 50, (3, 7), seed=2)
    for row in rows:
        words = row["prompt"].removesuffix("\n").split(" ")
        assert row["prompt"].endswith("\n") and row["completion"] == " " + " ".join(words)
        assert 3 <= len(words) <= 7 and set(words) <= set(language.words)
    assert {len(r["prompt"].split()) for r in rows} == set(range(3, 8))  # every length of the range
    with pytest.raises(ValueError, match="words"):
        copy_rows(language, 1, (0, 2), seed=0)
