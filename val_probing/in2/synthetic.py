"""A synthetic pseudo-word language: training texts and a document pool a tiny model can learn from scratch.

Issue 24's regime: a random-init Llama with a word-level tokenizer (:mod:`val_probing.in2.scratch`) over
a language of consonant-vowel pseudo-words learns retrieval on a 2-core CPU in minutes, so that an IN2
placement experiment is decidable there. Everything here is pure and deterministic in its seed:

* ``pseudo_words`` / ``Language``: the words and the sentence shape (6-9 words by default: the offline
  QA generator, ``ExtractiveLocalGenerator``, only quotes sentences of 6 words or more);
* ``sentences``: distinct sentences, ``"zaku miro tefa."`` (single spaces, a final ``"."``);
* ``corpus_texts``: the training corpus, ONE SENTENCE PER LINE, so the IN2 segmenter
  (:func:`val_probing.in2.segment.split_paragraphs`) treats each sentence as a paragraph;
* ``document_items`` / ``write_document_pool``: a ``document`` probe pool whose sentences are not in
  the corpus (the one writer here);
* ``tokenizer_texts``: every fixed text a prompt of training or evaluation is made of (the FILM
  template, the plain layout, the offline generator's questions, the document probe's instruction),
  filled with pseudo-words, for the word-level tokenizer's vocabulary.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass
from pathlib import Path

from val_probing.in2.qa.local import PhraseFrom
from val_probing.probes.document import DocumentItem

CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"
SYLLABLES = (2, 3)  # syllables per pseudo-word, inclusive range
_WORD = re.compile(r"[a-z]+")
_QUOTED = re.compile(r'"[^"]*"')


def pseudo_words(n: int, seed: int) -> tuple[str, ...]:
    """``n`` distinct lowercase pseudo-words of 2-3 consonant-vowel syllables (``"zaku"``, ``"mirote"``),
    in a fixed order for each seed."""
    n_syllables = len(CONSONANTS) * len(VOWELS)
    capacity = sum(n_syllables**k for k in range(SYLLABLES[0], SYLLABLES[1] + 1))
    if not 0 <= n <= capacity // 2:  # half the space: rejection sampling stays fast
        raise ValueError(f"n: expected 0 <= n <= {capacity // 2} pseudo-words, got {n}")
    rng = random.Random(f"val-probing pseudo-words {seed}")
    seen: set[str] = set()
    words: list[str] = []
    while len(words) < n:
        k = rng.randint(*SYLLABLES)
        word = "".join(rng.choice(CONSONANTS) + rng.choice(VOWELS) for _ in range(k))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return tuple(words)


@dataclass(frozen=True)
class Language:
    """The words of the language and how many words a sentence has (inclusive range)."""

    words: tuple[str, ...]
    sentence_words: tuple[int, int] = (6, 9)

    def __post_init__(self) -> None:
        lo, hi = self.sentence_words
        if not 1 <= lo <= hi:
            raise ValueError(f"sentence_words: need 1 <= min <= max, got {lo}..{hi}")
        if len(set(self.words)) != len(self.words):
            raise ValueError("words: expected distinct words")
        if len(self.words) < hi:
            raise ValueError(f"words: a sentence of {hi} distinct words needs at least {hi}")
        bad = [w for w in self.words if not _WORD.fullmatch(w)]
        if bad:
            raise ValueError(f"words: expected lowercase a-z only, got {bad[:3]}")

    @classmethod
    def make(cls, n_words: int, seed: int, sentence_words: tuple[int, int] = (6, 9)) -> Language:
        return cls(pseudo_words(n_words, seed), sentence_words)


def _draw_sentences(language: Language, n: int, rng: random.Random, exclude: Set[str]) -> list[str]:
    """``n`` distinct sentences not in ``exclude``; words are distinct within a sentence."""
    if n < 0:
        raise ValueError(f"n: expected a non-negative int, got {n}")
    lo, hi = language.sentence_words
    seen: set[str] = set()
    out: list[str] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 100 * n + 1000:
            raise ValueError(
                f"could make only {len(out)} of {n} distinct sentences from {len(language.words)} words "
                f"({lo}-{hi} per sentence, {len(exclude)} excluded): use more words"
            )
        sentence = " ".join(rng.sample(language.words, rng.randint(lo, hi))) + "."
        if sentence not in seen and sentence not in exclude:
            seen.add(sentence)
            out.append(sentence)
    return out


def sentences(language: Language, n: int, seed: int, exclude: Set[str] = frozenset()) -> list[str]:
    """``n`` distinct sentences (``"zaku miro tefa."``), none in ``exclude``, in a fixed order per seed."""
    return _draw_sentences(language, n, random.Random(f"val-probing sentences {seed}"), exclude)


def corpus_texts(
    language: Language, n_texts: int, sentences_per_text: int, seed: int
) -> list[tuple[str, str]]:
    """``(id, text)`` of ``n_texts`` texts (ids ``synthetic-0001``, ...), one sentence per line; every
    sentence of the corpus is distinct."""
    if n_texts < 1 or sentences_per_text < 1:
        raise ValueError(
            f"n_texts and sentences_per_text: expected positive ints, got {n_texts}, {sentences_per_text}"
        )
    drawn = sentences(language, n_texts * sentences_per_text, seed)
    width = max(4, len(str(n_texts)))
    return [
        (
            f"synthetic-{i + 1:0{width}d}",
            "\n".join(drawn[i * sentences_per_text : (i + 1) * sentences_per_text]),
        )
        for i in range(n_texts)
    ]


def corpus_sentences(texts: Iterable[tuple[str, str]]) -> frozenset[str]:
    """Every sentence (line) of ``corpus_texts`` output: what a pool must not reuse."""
    return frozenset(line for _id, text in texts for line in text.split("\n") if line)


def document_items(
    language: Language,
    n: int,
    phrase_words: int,
    seed: int,
    exclude: Set[str] = frozenset(),
    phrase_from: PhraseFrom = "anywhere",
) -> list[DocumentItem]:
    """``n`` document probe items: a sentence not in ``exclude`` (the training corpus) and a piece of
    ``phrase_words`` contiguous words of it that occurs exactly once in it (``phrase_from="start"``: its
    first words)."""
    lo, _hi = language.sentence_words
    if not 1 <= phrase_words <= lo:
        raise ValueError(
            f"phrase_words: expected 1..{lo} (the shortest sentence has {lo} words), got {phrase_words}"
        )
    rng = random.Random(f"val-probing document items {seed}")
    items: list[DocumentItem] = []
    used: set[str] = set(exclude)
    while len(items) < n:
        for sentence in _draw_sentences(language, n - len(items), rng, used):
            used.add(sentence)
            words = sentence.split(" ")
            starts = list(range(len(words) - phrase_words + 1))
            rng.shuffle(starts)
            if phrase_from == "start":  # the piece opens the sentence, as the generator's phrase then does
                starts = [0]
            for start in starts:  # a piece can occur twice only inside longer words ("zaku" in "bazaku")
                piece = " ".join(words[start : start + phrase_words])
                if sentence.count(piece) == 1:
                    items.append(DocumentItem(sentence=sentence, piece=piece))
                    break
    return items


def write_document_pool(path: Path, items: Sequence[DocumentItem]) -> Path:
    """Write ``items`` as a ``document`` pool (``{"sentence", "piece"}`` per line, atomically), the
    schema ``val_probing.pools.load_pool("document", str(path))`` reads."""
    from val_probing.files import write_jsonl

    if not items:
        raise ValueError("items: a pool needs at least one item")
    path = Path(path)
    write_jsonl(path, ({"sentence": item.sentence, "piece": item.piece} for item in items))
    return path


def copy_rows(language: Language, n: int, words: tuple[int, int], seed: int) -> list[dict[str, str]]:
    """``n`` copy examples ``{"prompt": "w1 ... wk\n", "completion": " w1 ... wk"}`` of ``words`` (an
    inclusive range) random words: every completion token is a copy of a prompt token, at every
    distance, so a model from scratch learns to copy (the induction circuit) before the IN2 data asks it
    to find a sentence. Position-neutral by construction: it favours no depth of a later context."""
    lo, hi = words
    if not 1 <= lo <= hi:
        raise ValueError(f"words: expected 1 <= min <= max, got {lo}..{hi}")
    rng = random.Random(f"val-probing copy rows {seed}")
    rows = []
    for _ in range(n):
        drawn = " ".join(rng.choice(language.words) for _ in range(rng.randint(lo, hi)))
        rows.append({"prompt": drawn + "\n", "completion": " " + drawn})
    return rows


# --------------------------------------------------------------------------------------------------
# The fixed texts prompts are made of


def _generator_questions() -> tuple[str, str]:
    """The offline generator's two question forms, with ``{0}``/``{1}`` where it quotes phrases: read
    off its own output on a made-up request, so a change of its wording reaches the vocabulary."""
    from val_probing.in2.qa import ExtractiveLocalGenerator, QARequest
    from val_probing.in2.segment import Segment

    text = "\n".join(" ".join(f"w{i}x{j}" for j in range(8)) + "." for i in range(4))
    segments = tuple(Segment(f"template-{k}", 0, text, 1) for k in range(2))
    requests = [QARequest("fine_grained", segments[:1]), QARequest("integration", segments)]
    result = ExtractiveLocalGenerator(seed=0).generate(requests)
    forms = []
    for i, expected in enumerate((1, 2)):
        question = result.pairs[i].question
        parts = _QUOTED.split(question)
        if len(parts) != expected + 1 or "{" in question or "}" in question:
            raise ValueError(f"the offline generator's question {question!r} is not a form with {expected}")
        form = parts[0]
        for k, rest in enumerate(parts[1:]):
            form += f'"{{{k}}}"{rest}'
        forms.append(form)
    return forms[0], forms[1]


def tokenizer_texts(language: Language) -> list[str]:
    """Every fixed text of the prompts of training and evaluation, filled with the language's words: the
    FILM template (IN2 datasets and the probes' ``film`` template) with an IN2-style context and a
    completion, the ``plain`` layout, the offline generator's questions and the document instruction,
    each with phrases that end inside a sentence and at its final ``"."``."""
    from val_probing.in2.dataset import FILM_PROMPT
    from val_probing.official import film_prompt
    from val_probing.probes.document import instruction

    w = language.words
    a, b = f"{w[0]} {w[1]}", f"{w[2]} {w[3]}."  # a phrase inside a sentence, one at its end
    fine, integration = _generator_questions()
    questions = [
        *(fine.format(p) for p in (a, b)),
        *(integration.format(p, q) for p in (a, b) for q in (a, b)),
        *(instruction(p) for p in (a, b)),
    ]
    sentence = " ".join(w[: language.sentence_words[0]]) + "."
    context = f"{sentence}\n{sentence}\n\n{sentence}"  # segment lines, and segments joined by a blank line
    texts = [context, f" {sentence} {sentence}"]  # completions: " answer", two sentences for integration
    for question in questions:
        texts += [
            FILM_PROMPT.format(context=context, instruction=question),
            film_prompt(context, question),
            f"{context}\n\n{question}",  # the probes' plain template
            question,  # closed book
        ]
    return texts
