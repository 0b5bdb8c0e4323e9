"""Can a model look a sentence up by its content? Teacher-forced accuracy on a repeated sentence, by distance.

The precondition of the from-scratch regime (issue 24): to answer an IN2 question the model must find
the sentence its quoted words open, wherever it sits, and go on with it. A text of ``n_sentences`` (12)
pseudo-word sentences ends with a repeat of one of them: the one just before (``near``), the middle one
(``middle``) or the first (``far``); the accuracy is over the repeat's words after its first
``key_words`` (what only a lookup by content predicts). A model that copies at a fixed offset, what the
copy warm-up teaches (docs/in2-experiment.md, measured), scores on ``near`` and not on ``far``.

Pure but for ``model_lookup``, which loads a saved model.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from val_probing.in2.synthetic import Language, sentences

Distance = Literal["near", "middle", "far"]
DISTANCES: tuple[Distance, ...] = ("near", "middle", "far")

Predict = Callable[[Sequence[int]], Sequence[int]]  # token ids -> the argmax next token at each position
Encode = Callable[[str], list[int]]  # text -> token ids (no special tokens)


@dataclass(frozen=True)
class LookupText:
    """A text whose last line repeats the sentence at ``distance``; ``prefix`` is everything before it."""

    prefix: str
    repeat: str
    distance: Distance

    @property
    def text(self) -> str:
        return f"{self.prefix}\n{self.repeat}"


def lookup_texts(language: Language, per_distance: int, n_sentences: int, seed: int) -> list[LookupText]:
    """``per_distance`` texts of ``n_sentences`` distinct sentences (and the repeat) for each distance."""
    if n_sentences < 3 or per_distance < 1:
        raise ValueError(
            f"expected n_sentences >= 3 and per_distance >= 1, got {n_sentences}, {per_distance}"
        )
    drawn = sentences(language, len(DISTANCES) * per_distance * n_sentences, seed)
    index = {"near": n_sentences - 1, "middle": n_sentences // 2, "far": 0}
    out = []
    for k in range(len(DISTANCES) * per_distance):
        distance = DISTANCES[k // per_distance]
        lines = drawn[k * n_sentences : (k + 1) * n_sentences]
        out.append(LookupText("\n".join(lines), lines[index[distance]], distance))
    return out


def lookup_accuracy(
    predict: Predict, encode: Encode, texts: Sequence[LookupText], key_words: int = 3
) -> dict[Distance, float]:
    """The share of the repeats' tokens after their first ``key_words`` words that ``predict`` gets right
    (each predicted from the true tokens before it; the final ``"."`` is not scored: its place needs no
    lookup), per distance present in ``texts``."""
    hits: dict[Distance, list[int]] = {}
    for t in texts:
        keyed = encode(t.prefix + "\n" + " ".join(t.repeat.split(" ")[:key_words]))
        full = encode(t.text)
        if full[: len(keyed)] != keyed:
            raise ValueError(f"the tokenizer does not split {t.text[-60:]!r} after the repeat's key")
        start, end = len(keyed), len(encode(t.text.removesuffix(".")))  # the final "." says nothing
        if start >= end:
            raise ValueError(f"key_words {key_words}: the repeat {t.repeat!r} has nothing after its key")
        predicted = predict(full)
        hits.setdefault(t.distance, []).extend(int(predicted[j - 1] == full[j]) for j in range(start, end))
    return {d: sum(h) / len(h) for d, h in hits.items()}


def model_lookup(
    model_dir: Path, language: Language, *, per_distance: int = 30, n_sentences: int = 12, seed: int = 0
) -> dict[Distance, float]:
    """``lookup_accuracy`` of the saved causal LM in ``model_dir`` (its tokenizer; BOS first), on CPU."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    model.eval()  # type: ignore[no-untyped-call]  # transformers leaves it unannotated
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []

    def encode(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    def predict(ids: Sequence[int]) -> list[int]:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([[*bos, *ids]])).logits[0, len(bos) :]
        return [int(i) for i in logits.argmax(-1)]

    rng = random.Random(f"val-probing lookup {seed}")
    texts = lookup_texts(language, per_distance, n_sentences, rng.randrange(2**31))
    return lookup_accuracy(predict, encode, texts)
