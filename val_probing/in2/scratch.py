"""A model to train from scratch: a word-level tokenizer and a random-init tiny Llama (issue 24).

The tokenizer splits text as GPT-2 does (byte-level pre-tokenizer: a leading space stays on its word,
punctuation runs apart, newlines on their own) and maps each piece to one id (``WordLevel``): every
pseudo-word of :mod:`val_probing.in2.synthetic` is one token with or without its leading space, and the
byte-level decoder gives ``decode(encode(text)) == text`` exactly for every text it covers. What it does
not cover is ``<unk>``: the vocabulary holds the pieces of the prompts' fixed texts
(:func:`val_probing.in2.synthetic.tokenizer_texts`), so no prompt of training or evaluation has one.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # transformers is heavy: imported where a tokenizer or a model is made
    from transformers import PreTrainedTokenizerFast

UNK, PAD, BOS, EOS = "<unk>", "<pad>", "<s>", "</s>"
SPECIAL_TOKENS = (UNK, PAD, BOS, EOS)  # ids 0-3


def word_tokenizer(
    words: Iterable[str], extra_texts: Iterable[str], *, model_max_length: int = 2048
) -> PreTrainedTokenizerFast:
    """A word-level fast tokenizer: the special tokens (ids 0-3), then, sorted, every word bare and
    space-prefixed (``"w"``, ``"Ġw"``) and every piece the pre-tokenizer makes of ``extra_texts``.

    A word is ONE id wherever it stands: the normalizer puts a space after every newline and quote, so a
    sentence's first word in a context, a quoted word in a question and the same word in an answer are
    all ``"Ġw"`` (a model from scratch then copies identical ids; it need not learn that ``w`` and
    ``Ġw`` are one word). Decoding an answer (words, spaces, punctuation) gives its text back exactly; a
    prompt with newlines or quotes decodes with those spaces added (prompts are never decoded)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pre = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    norm = normalizers.Sequence([normalizers.Replace("\n", "\n "), normalizers.Replace('"', '" ')])

    def pieces(text: str) -> list[str]:
        return [piece for piece, _span in pre.pre_tokenize_str(norm.normalize_str(text))]

    found: set[str] = set()
    for word in words:
        for form in (word, f" {word}"):
            split = pieces(form)
            if len(split) != 1:
                raise ValueError(f"word {word!r}: the pre-tokenizer splits {form!r} into {split}")
            found.update(split)
    for text in extra_texts:
        found.update(pieces(text))
    found.difference_update(SPECIAL_TOKENS)
    vocab = {token: i for i, token in enumerate((*SPECIAL_TOKENS, *sorted(found)))}

    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.normalizer = norm
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]  # transformers leaves it unannotated
        tokenizer_object=tok,
        unk_token=UNK,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,  # " ." stays " .": the round trip is exact
    )


def write_scratch_model(
    folder: Path,
    tokenizer: PreTrainedTokenizerFast,
    *,
    hidden: int = 128,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int = 256,
    max_positions: int = 2048,
    seed: int = 0,
) -> Path:
    """A random-init ``LlamaForCausalLM`` (float32, tied embeddings) for ``tokenizer``, saved with it in
    ``folder``; its generation config stops greedy decoding at ``</s>``."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from val_probing.files import check_output_dir, writing

    folder = check_output_dir(Path(folder), what="scratch model folder")
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    ids["pad_token_id"] = tokenizer.pad_token_id
    if any(v is None for v in ids.values()):
        raise ValueError(f"tokenizer: needs bos, eos and pad tokens, got ids {ids}")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        dtype="float32",
        **ids,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)  # type: ignore[no-untyped-call]  # transformers leaves __init__ unannotated
    model.generation_config = GenerationConfig(**ids)  # type: ignore[no-untyped-call]  # as above
    with writing(folder, "scratch model"):
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return folder
