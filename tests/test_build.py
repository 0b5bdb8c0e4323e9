"""Probe building: budgets, exact token offsets, unique keys, determinism, errors, the cache and the CLI."""

from __future__ import annotations

import json
import random
import re
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest

from val_probing import build as build_module
from val_probing.buckets import bucket_of
from val_probing.build import (
    BudgetTooSmall,
    PoolTooSmall,
    ProbeSpec,
    TooFewItems,
    build_probes,
    cached_probes,
    needle_positions,
    tokenizer_fingerprint,
)
from val_probing.cli import main
from val_probing.official import skip_rows
from val_probing.pools import CodeItem, DatabaseItem, DocumentItem, load_pool
from val_probing.probes import get_family
from val_probing.records import FAMILIES, ProbeExample, read_probes, write_probes
from val_probing.token_counters import HFTokenCounter, TokenCounter, TokenizerNotFound, WhitespaceCounter


@pytest.fixture(scope="module")
def smollm2(smollm2_tokenizer_dir: Path) -> HFTokenCounter:
    return HFTokenCounter.load(str(smollm2_tokenizer_dir))


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAL_PROBING_CACHE", str(tmp_path / "cache"))


def _build(family: str, counter: TokenCounter, length: int, **kwargs: object) -> list[ProbeExample]:
    spec = ProbeSpec(family=family, length=length, tokenizer=counter.name, **kwargs)  # type: ignore[arg-type]
    return build_probes(spec, counter, load_pool(family, "embedded"), random.Random(spec.seed))


def _needle_start(ex: ProbeExample) -> int:
    """Where the needle item starts, found without the builder's bookkeeping."""
    if ex.family == "document":
        text = ex.answer
    elif ex.family == "code":
        text = f"def {ex.answer}:"
    else:
        text = f"<id: {ex.key},"
    assert ex.context.count(text) == 1
    return ex.context.index(text)


def _sets(examples: list[ProbeExample]) -> dict[int, list[ProbeExample]]:
    out: dict[int, list[ProbeExample]] = {}
    for ex in examples:
        out.setdefault(ex.set_id, []).append(ex)
    return out


# --------------------------------------------------------------------------------------------------
# Budget, offsets, uniqueness (real tokenizer)


@pytest.mark.parametrize("family", FAMILIES)
def test_budget_offsets_and_unique_keys_with_smollm2(family: str, smollm2: HFTokenCounter) -> None:
    length = 1500
    examples = _build(family, smollm2, length, sets=2)
    fam = get_family(family)
    max_cost = max(
        smollm2.count_batch(["\n" + fam.render(item) for item in load_pool(family, "embedded")[:2000]])
    )
    sets = _sets(examples)
    assert sorted(sets) == [0, 1]
    assert sets[0][0].context != sets[1][0].context
    for set_examples in sets.values():
        context = set_examples[0].context
        starts = smollm2.token_starts(context)  # re-tokenized here, independently of the builder
        n_items = set_examples[0].n_items
        assert len(set_examples) == n_items  # positions=None: one question per item
        assert [ex.position_id for ex in set_examples] == list(range(n_items))
        assert all(ex.context == context and ex.n_items == n_items for ex in set_examples)
        assert all(ex.context_tokens == len(starts) for ex in set_examples)
        assert len(starts) <= length  # the budget holds
        assert length - len(starts) < max_cost  # and is used: another item would not have fit
        assert len(context.split("\n" if family != "code" else "\ndef ")) == n_items
        offsets = [ex.needle_token_offset for ex in set_examples]
        assert offsets == sorted(offsets) and offsets[0] == 0
        for ex in set_examples:
            assert starts[ex.needle_token_offset] == _needle_start(ex)  # the needle's first token
            assert ex.instruction == fam.instruction(ex.key)
            marker = f"<id: {ex.key}," if family == "database" else ex.key
            assert context.count(marker) == 1
            assert ex.tokenizer == smollm2.name and ex.source == "built"
    assert skip_rows(examples) == set()  # the scorers' own ambiguity rule agrees
    assert [ex.row for ex in examples] == list(range(len(examples)))


def test_sets_are_disjoint(smollm2: HFTokenCounter) -> None:
    examples = _build("database", smollm2, 800, sets=3)
    keys = [{ex.key for ex in s} for s in _sets(examples).values()]
    assert all(not (a & b) for i, a in enumerate(keys) for b in keys[i + 1 :])


# --------------------------------------------------------------------------------------------------
# The fill rule, exactly (whitespace counter, synthetic pools)


def _doc_pool(n: int, words: int = 10) -> list[DocumentItem]:
    """Sentences of exactly ``words`` distinct words, unique across the pool."""
    items = []
    for i in range(n):
        sentence = " ".join(f"w{i}x{j}" for j in range(words))
        items.append(DocumentItem(sentence=sentence, piece=" ".join(sentence.split()[2:5])))
    return items


@pytest.mark.parametrize(("length", "n_items"), [(10, 1), (19, 1), (20, 2), (105, 10), (999, 99)])
def test_greedy_fill_is_maximal(length: int, n_items: int) -> None:
    spec = ProbeSpec("document", length, "whitespace", sets=2)
    examples = build_probes(spec, WhitespaceCounter(), _doc_pool(300), random.Random(0))
    for set_examples in _sets(examples).values():
        assert set_examples[0].n_items == n_items
        assert set_examples[0].context_tokens == 10 * n_items


def test_conflicting_items_are_skipped_not_truncated() -> None:
    pool = _doc_pool(60)
    # items whose piece repeats another's, whose sentence holds another's piece, exact duplicates
    pool += [DocumentItem(sentence=f"new words {p.piece} here", piece=p.piece) for p in pool[:20]]
    pool += [DocumentItem(sentence=f"{p.sentence} again", piece="again") for p in pool[20:25]]
    pool += pool[30:40]
    spec = ProbeSpec("document", 300, "whitespace", sets=2)
    examples = build_probes(spec, WhitespaceCounter(), pool, random.Random(3))
    for ex in examples:
        assert ex.context.count(ex.key) == 1
        assert ex.context.count(ex.answer) == 1
    assert skip_rows(examples) == set()


def test_code_keys_and_names_are_unique() -> None:
    body = "    a = 1\n    b = compute(a)\n    return b"
    pool = [CodeItem(f"fn{i}", body.replace("a = 1", f"a = {i}"), f"a = {i}") for i in range(40)]
    pool += [
        CodeItem(f"dup{i}", body.replace("a = 1", f"a = {i}"), f"a = {i}") for i in range(40)
    ]  # same keys
    pool += [CodeItem("fn1", "    z = 9\n    y = 8", "y = 8")]  # same name as another function
    spec = ProbeSpec("code", 120, "whitespace", sets=2)
    examples = build_probes(spec, WhitespaceCounter(), pool, random.Random(0))
    for ex in examples:
        assert ex.context.count(ex.key) == 1  # "a = 1" also occurs in "a = 10": such pairs never meet
        assert ex.context.count(f"def {ex.answer}") == 1
    assert skip_rows(examples) == set()


def test_database_ids_are_unique() -> None:
    pool = [DatabaseItem(f"Q{i}", f"label {i}", "thing") for i in range(30)]
    pool += [DatabaseItem(f"Q{i}", f"other label {i}", "other thing") for i in range(30)]
    spec = ProbeSpec("database", 100, "whitespace", sets=2)
    examples = build_probes(spec, WhitespaceCounter(), pool, random.Random(0))
    for ex in examples:
        assert ex.context.count(f"<id: {ex.key},") == 1  # "<id: Q1," is not in "<id: Q10,"
        assert f"<id: {ex.key}, label: {ex.answer}, description: {ex.description}>" in ex.context
    for set_examples in _sets(examples).values():
        assert len({ex.key for ex in set_examples}) == len(set_examples)


# --------------------------------------------------------------------------------------------------
# Positions


def test_needle_positions() -> None:
    assert needle_positions(5, None) == [0, 1, 2, 3, 4]
    assert needle_positions(800, 16)[:3] == [24, 74, 124] and needle_positions(800, 16)[-1] == 774
    assert needle_positions(7, 7) == list(range(7))
    assert needle_positions(10, 1) == [4]
    assert needle_positions(10, 2) == [2, 7]
    for n in range(1, 80):
        for p in range(1, n + 1):
            got = needle_positions(n, p)
            assert len(set(got)) == p and got == sorted(got) and got[0] >= 0 and got[-1] < n
            # every bucket count that divides P gets exactly P / B questions
            for b in (b for b in range(1, p + 1) if p % b == 0):
                per_bucket = Counter(bucket_of(pos, n, b) for pos in got)
                assert sorted(per_bucket) == list(range(b)) and set(per_bucket.values()) == {p // b}
    with pytest.raises(TooFewItems, match="positions=11"):
        needle_positions(10, 11)


def test_positions_subset_shares_the_context(smollm2: HFTokenCounter) -> None:
    every = _build("code", smollm2, 1200, sets=1)
    some = _build("code", smollm2, 1200, sets=1, positions=5)
    assert len(some) == 5 and {ex.context for ex in some} == {every[0].context}
    by_position = {ex.position_id: ex for ex in every}
    for ex in some:
        assert ex.needle_token_offset == by_position[ex.position_id].needle_token_offset
        assert ex.key == by_position[ex.position_id].key
    with pytest.raises(TooFewItems):
        _build("code", smollm2, 1200, sets=1, positions=every[0].n_items + 1)


# --------------------------------------------------------------------------------------------------
# Determinism


def test_same_seed_same_bytes_other_seed_other_probes(tmp_path: Path, smollm2: HFTokenCounter) -> None:
    paths = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        paths.append(tmp_path / f"{name}.jsonl")
        write_probes(paths[-1], _build("document", smollm2, 600, sets=2, seed=seed))
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()


# --------------------------------------------------------------------------------------------------
# Errors


def test_pool_too_small_says_what_was_reachable() -> None:
    spec = ProbeSpec("document", 100, "whitespace", sets=3)
    with pytest.raises(
        PoolTooSmall, match=r"set 2: the pool ran out \(25 items.*after 5 items and about 50 of 100"
    ):
        build_probes(spec, WhitespaceCounter(), _doc_pool(25), random.Random(0))


def test_pool_too_small_after_uniqueness_filtering() -> None:
    pool = [DocumentItem(f"same piece here number {i}", "same piece here") for i in range(50)]
    spec = ProbeSpec("document", 20, "whitespace", sets=1)
    with pytest.raises(PoolTooSmall, match=r"49 of those tried for this set were rejected"):
        build_probes(spec, WhitespaceCounter(), pool, random.Random(0))


def test_budget_below_one_item() -> None:
    spec = ProbeSpec("document", 9, "whitespace", sets=1)
    with pytest.raises(BudgetTooSmall, match=r"length=9 tokens cannot hold one item.*10 tokens"):
        build_probes(spec, WhitespaceCounter(), _doc_pool(5), random.Random(0))


def test_unknown_tokenizer() -> None:
    with pytest.raises(TokenizerNotFound, match="the path /no/such/tokenizer-folder does not exist"):
        cached_probes(ProbeSpec("document", 100, "/no/such/tokenizer-folder"))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"family": "poem"},
        {"length": 0},
        {"sets": 0},
        {"positions": 0},
        {"seed": -1},
        {"tokenizer": ""},
        {"length": True},
    ],
)
def test_spec_validation(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"family": "document", "length": 100, "tokenizer": "whitespace", **kwargs}
    with pytest.raises(ValueError):
        ProbeSpec(**args)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# Cache and fingerprints


def test_cache_hit_returns_the_same_examples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ProbeSpec("database", 400, "whitespace", sets=2)
    first, digest = cached_probes(spec)
    assert [p.name for p in (tmp_path / "cache" / "probes").iterdir()] == [f"database-400-{digest}.jsonl"]

    def no_build(*args: object, **kwargs: object) -> list[ProbeExample]:
        raise AssertionError("a cache hit must not build")

    monkeypatch.setattr(build_module, "build_probes", no_build)
    again, digest_again = cached_probes(spec)
    assert (again, digest_again) == (first, digest)
    with pytest.raises(AssertionError, match="must not build"):
        cached_probes(ProbeSpec("database", 400, "whitespace", sets=2, seed=1))  # another key: a miss
    with pytest.raises(AssertionError, match="must not build"):
        cached_probes(spec, use_cache=False)


def test_cache_key_follows_pool_content(tmp_path: Path) -> None:
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"id": f"Q{i}", "label": "x", "dcpt": "y"}) + "\n" for i in range(50)))
    spec = ProbeSpec("database", 40, "whitespace", pool=str(pool), sets=1)
    _, first = cached_probes(spec)
    pool.write_text("".join(json.dumps({"id": f"Q{i}", "label": "z", "dcpt": "y"}) + "\n" for i in range(50)))
    examples, second = cached_probes(spec)
    assert first != second and {ex.answer for ex in examples} == {"z"}


def test_tokenizer_fingerprint_covers_folder_files(tmp_path: Path, smollm2_tokenizer_dir: Path) -> None:
    folder = tmp_path / "tok"
    shutil.copytree(smollm2_tokenizer_dir, folder)
    before = tokenizer_fingerprint(str(folder))
    assert before == tokenizer_fingerprint(str(smollm2_tokenizer_dir))  # content, not path
    config = folder / "tokenizer_config.json"
    config.write_text(config.read_text().replace("{", '{"model_max_length_note": 1,', 1))
    assert tokenizer_fingerprint(str(folder)) != before
    assert tokenizer_fingerprint("whitespace") == "whitespace"


def test_tokenizer_fingerprint_ignores_how_the_tokenizer_was_loaded(
    tmp_path: Path, smollm2_tokenizer_dir: Path
) -> None:
    # transformers writes local_files_only=true into tokenizer_config.json when it saves under
    # HF_HUB_OFFLINE=1: the same tokenizer converted on a CI machine must give the same probe hash
    folder = tmp_path / "tok"
    shutil.copytree(smollm2_tokenizer_dir, folder)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    before = tokenizer_fingerprint(str(folder))
    config["local_files_only"] = not config.get("local_files_only", False)
    config["name_or_path"] = "/somewhere/else"
    config_path.write_text(json.dumps(config))
    assert tokenizer_fingerprint(str(folder)) == before
    config["clean_up_tokenization_spaces"] = not config.get("clean_up_tokenization_spaces", False)
    config_path.write_text(json.dumps(config))
    assert tokenizer_fingerprint(str(folder)) != before


# --------------------------------------------------------------------------------------------------
# CLI


def _cli_build(out: Path, *extra: str) -> int:
    args = ["build", "--task", "code", "--length", "300", "--tokenizer", "whitespace", "--sets", "2"]
    return main([*args, "--positions", "4", "--out", str(out), *extra])


def test_cli_writes_byte_identical_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli_build(tmp_path / "a.jsonl") == 0
    assert _cli_build(tmp_path / "b.jsonl", "--no-cache") == 0
    assert _cli_build(tmp_path / "c.jsonl") == 0  # from the cache
    data = (tmp_path / "a.jsonl").read_bytes()
    assert data == (tmp_path / "b.jsonl").read_bytes() == (tmp_path / "c.jsonl").read_bytes()
    examples = read_probes(tmp_path / "a.jsonl")
    assert len(examples) == 8 and {ex.set_id for ex in examples} == {0, 1}
    first_line = json.loads(data.split(b"\n")[0])
    assert list(first_line) == sorted(first_line)
    assert "wrote 8 code probes" in capsys.readouterr().out


def test_cli_error_leaves_no_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.jsonl"
    assert _cli_build(out, "--pool", str(tmp_path / "missing.jsonl")) == 2
    assert "error: pool" in capsys.readouterr().err
    assert not out.exists()
    assert (
        main(["build", "--task", "code", "--length", "5", "--tokenizer", "whitespace", "--out", str(out)])
        == 2
    )
    assert "cannot hold one item" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))


def test_cli_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["build", "--help"])
    assert "val-probing build --task document --length 32768" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------
# The exact correction: counters whose per-item estimate is off


class _NewlineTokens(WhitespaceCounter):
    """Words, plus one token per newline in a whole context; per-item counts miss or add those."""

    name = "newline-tokens"

    def __init__(self, item_extra: int) -> None:
        self.item_extra = item_extra

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) + self.item_extra for t in texts]

    def token_starts(self, text: str) -> list[int]:
        return sorted(
            [m.start() for m in re.finditer(r"\S+", text)] + [m.start() for m in re.finditer("\n", text)]
        )


@pytest.mark.parametrize("item_extra", [0, 2])
def test_exact_count_corrects_the_estimate(item_extra: int) -> None:
    """item_extra=0 underestimates (the newline tokens are missed): trailing items are dropped.
    item_extra=2 overestimates by one per item: filling resumes from the exact count."""
    counter = _NewlineTokens(item_extra)
    length = 205
    spec = ProbeSpec("document", length, counter.name, sets=2)
    examples = build_probes(spec, counter, _doc_pool(100), random.Random(0))
    for set_examples in _sets(examples).values():
        context = set_examples[0].context
        exact = len(counter.token_starts(context))
        assert set_examples[0].context_tokens == exact <= length
        assert exact + 11 > length  # one more item (10 words + 1 newline) would not fit
        for ex in set_examples:
            assert counter.token_starts(context)[ex.needle_token_offset] == context.index(ex.answer)
