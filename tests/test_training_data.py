"""IN2 data synthesis: segmentation, context assembly, mixture, contamination filter, saved dataset."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from val_probing.errors import ValProbingError
from val_probing.files import RecordError
from val_probing.in2.assemble import (
    ContextRangeError,
    LengthRange,
    MixtureRatios,
    assemble_context,
    edge_band,
    place_needed,
    plan_counts,
    short_context,
    spread_targets,
)
from val_probing.in2.contamination import ProbeIndex, filter_texts, normalise_words
from val_probing.in2.dataset import (
    FILM_PROMPT,
    ExampleStats,
    SynthesisConfig,
    read_corpus,
    read_general,
    read_texts,
    save_dataset,
    synthesize,
    to_row,
)
from val_probing.in2.qa import ExtractiveLocalGenerator
from val_probing.in2.segment import RawText, Segment, segment_corpus, segment_text, split_paragraphs
from val_probing.records import ProbeExample
from val_probing.token_counters import WhitespaceCounter

WS = WhitespaceCounter()
_VOCAB = [
    "river",
    "stone",
    "light",
    "ancient",
    "market",
    "harbor",
    "signal",
    "winter",
    "copper",
    "garden",
    "theory",
    "engine",
    "window",
    "silver",
    "mountain",
    "letter",
    "voice",
    "paper",
    "orbit",
    "valley",
    "bridge",
    "forest",
    "candle",
    "marble",
    "planet",
    "thunder",
    "velvet",
    "island",
    "compass",
    "lantern",
    "meadow",
    "falcon",
    "crystal",
    "ember",
    "glacier",
    "harvest",
    "journal",
    "kettle",
    "ladder",
    "mirror",
    "needle",
    "oyster",
    "pepper",
    "quartz",
    "ribbon",
    "saddle",
    "tunnel",
    "umbrella",
    "violin",
    "walnut",
    "yarrow",
    "zephyr",
    "anchor",
    "basket",
    "cedar",
]


def make_sentence(rng: random.Random, n_words: int = 12) -> str:
    return " ".join(rng.choice(_VOCAB) for _ in range(n_words)).capitalize() + "."


def make_corpus(n_texts: int, paragraphs: int, rng: random.Random, sentences: int = 3) -> list[RawText]:
    """Texts of random sentences: every word 10-gram is unique to its text (no accidental overlap)."""
    return [
        RawText(
            f"text{t}",
            "\n\n".join(" ".join(make_sentence(rng) for _ in range(sentences)) for _ in range(paragraphs)),
        )
        for t in range(n_texts)
    ]


# ---------------------------------------------------------------------------------------------- segmentation


def test_algorithm_1_accumulates_paragraphs_and_the_tail_joins_the_last_segment() -> None:
    # paragraphs of 50, 50, 40 | 100, 30 | 20 (tail: joins the last segment) tokens, min 128
    sizes = [50, 50, 40, 100, 30, 20]
    text = "\n\n".join(" ".join(f"p{i}w{j}" for j in range(n)) for i, n in enumerate(sizes))
    segs = segment_text(RawText("t", text), WS, min_tokens=128)
    assert [s.n_tokens for s in segs] == [140, 150]
    assert [s.index for s in segs] == [0, 1]
    assert segs[1].text.split("\n")[-1].startswith("p5w0")  # the short tail is in the last segment
    assert " ".join(s.text.replace("\n", " ") for s in segs).split() == text.split()  # nothing lost


def test_text_shorter_than_a_segment_gives_none_and_is_reported() -> None:
    short = RawText("short", "only a few words here")
    assert segment_text(short, WS, min_tokens=128) == []
    corpus = make_corpus(2, 20, random.Random(0))
    seg = segment_corpus([*corpus, short], WS, min_tokens=128)
    assert seg.too_short == ("short",)
    assert {s.text_id for s in seg.segments} == {"text0", "text1"}
    assert all(s.n_tokens >= 128 for s in seg.segments)


def test_paragraphs_split_on_blank_lines_else_on_newlines() -> None:
    assert split_paragraphs("a b\nc\n\n  \n d e ") == ["a b\nc", "d e"]
    assert split_paragraphs("a\nb\n\nc") == ["a\nb", "c"]
    assert split_paragraphs("x\ny\nz") == ["x", "y", "z"]


@pytest.mark.parametrize("texts", [[], [RawText("a", "tiny"), RawText("b", "")]])
def test_empty_or_tiny_corpus_is_a_clear_error(texts: list[RawText]) -> None:
    with pytest.raises(ValProbingError, match=r"empty|no text of the corpus"):
        segment_corpus(texts, WS, min_tokens=128)


# ---------------------------------------------------------------------------------------------- assembly


def test_targets_are_spread_evenly_over_the_range() -> None:
    length = LengthRange(4096, 32768)
    targets = spread_targets(80, length, random.Random(0))
    assert all(4096 <= t <= 32768 for t in targets)
    per_bin = [sum(4096 + 3584 * i <= t < 4096 + 3584 * (i + 1) for t in targets) for i in range(8)]
    assert per_bin == [10] * 8  # stratified: exactly even


def _segments(n: int, tokens: int, rng: random.Random) -> list[Segment]:
    return [
        Segment(f"t{i}", 0, " ".join(rng.choice(_VOCAB) for _ in range(tokens)), tokens) for i in range(n)
    ]


def test_context_holds_the_needed_segments_at_recorded_positions() -> None:
    rng = random.Random(1)
    pool = _segments(200, 130, rng)
    needed = [Segment("needA", 0, "alpha " * 130, 130), Segment("needB", 3, "beta " * 140, 140)]
    length = LengthRange(2000, 3000, slack_tokens=200)
    assembled = assemble_context(needed, pool, 2500, WS, length, rng)
    words = assembled.context.split()
    assert assembled.context_tokens == len(words)
    assert 2300 <= assembled.context_tokens <= 2700
    assert len(assembled.needles) == 2
    parts = assembled.context.split("\n\n")
    assert len(parts) == assembled.n_segments
    for needle, seg in zip(assembled.needles, needed, strict=True):
        assert parts[needle.segment_index] == seg.text
        assert words[needle.token_offset] == seg.text.split()[0]
        assert needle.depth == pytest.approx(needle.token_offset / assembled.context_tokens)
    # no filler comes from the text of a needed segment, and no segment appears twice
    assert len(set(parts)) == len(parts)


def test_needles_land_at_every_depth() -> None:
    rng = random.Random(2)
    pool = _segments(300, 130, rng)
    depths = []
    for _ in range(60):
        needed = [Segment("need", 0, "needle " * 130, 130)]
        depths.append(assemble_context(needed, pool, 3000, WS, LengthRange(2000, 4000), rng).needles[0].depth)
    assert min(depths) < 0.15 and max(depths) > 0.8


def test_a_corpus_too_small_for_the_range_is_an_error() -> None:
    rng = random.Random(0)
    pool = _segments(5, 130, rng)
    needed = [Segment("need", 0, "x " * 130, 130)]
    with pytest.raises(ContextRangeError, match="could not fill"):
        assemble_context(needed, pool, 4000, WS, LengthRange(4000, 8000, max_rejections=500), rng)
    with pytest.raises(ContextRangeError, match="needed segments alone"):
        assemble_context(needed * 3, pool, 300, WS, LengthRange(200, 300, slack_tokens=50), rng)


def test_short_context_is_the_original_text_around_the_segment() -> None:
    rng = random.Random(3)
    text = make_corpus(1, 30, rng)[0]
    segs = segment_text(text, WS, min_tokens=64)
    target = segs[len(segs) // 2]
    assembled = short_context(target, segs, 400, WS)
    assert assembled.context_tokens <= 400
    assert target.text in assembled.context
    (needle,) = assembled.needles
    assert assembled.context.split()[needle.token_offset] == target.text.split()[0]
    assert (
        assembled.context.replace("\n", " ").split()
        == " ".join(s.text for s in segs if s.text in assembled.context).split()
    )  # contiguous, in the original order


# ---------------------------------------------------------------------------------------------- mixture


def test_default_mixture_is_the_papers_and_counts_sum_to_the_total() -> None:
    counts = plan_counts(1_750_000, MixtureRatios())
    assert counts == {
        "fine_grained": 1_102_500,
        "integration": 297_500,
        "short_context": 157_500,
        "general": 192_500,
    }
    odd = plan_counts(7, MixtureRatios())
    assert sum(odd.values()) == 7


def test_mixture_parse_validate_and_renormalise() -> None:
    mix = MixtureRatios.parse("fine_grained=0.5,integration=0.5")
    assert mix.as_dict() == {"fine_grained": 0.5, "integration": 0.5, "short_context": 0.0, "general": 0.0}
    with pytest.raises(ValProbingError, match="sum to 1"):
        MixtureRatios.parse("fine_grained=0.5")
    with pytest.raises(ValProbingError, match="KIND=RATIO"):
        MixtureRatios.parse("finegrained=1")
    renorm = MixtureRatios().without_general().as_dict()
    assert renorm["general"] == 0 and sum(renorm.values()) == pytest.approx(1)
    assert renorm["fine_grained"] == pytest.approx(0.63 / 0.89)


# ---------------------------------------------------------------------------------------------- contamination


def _probe(context: str, answer: str = "gold answer") -> ProbeExample:
    return ProbeExample(
        "document",
        0,
        0,
        1,
        0,
        len(context.split()),
        "whitespace",
        context,
        "In above context, which sentence contains the piece?",
        "key",
        answer,
    )


def test_texts_sharing_a_10_gram_with_a_probe_are_dropped() -> None:
    rng = random.Random(4)
    corpus = make_corpus(6, 4, rng)
    leaked = " ".join(corpus[2].text.split()[20:30])  # exactly 10 words of text2
    nine = " ".join(corpus[4].text.split()[5:14])  # only 9 words of text4: not a hit
    index = ProbeIndex.build([_probe(f"Some probe. {leaked.upper()}!! more"), _probe(f"x {nine} y")])
    kept, report = filter_texts(corpus, index)
    assert report.dropped_ids == ("text2",)
    assert [t.text_id for t in kept] == ["text0", "text1", "text3", "text4", "text5"]
    assert report.to_dict()["texts_kept"] == 5 and report.n_probe_contexts == 2
    assert normalise_words("Hello, World!  it's") == ["hello", "world", "it", "s"]
    with pytest.raises(ValProbingError, match="empty"):
        ProbeIndex.build([])


def test_contamination_against_probes_built_from_the_authors_pool(film_pieces_dir: Path) -> None:
    with (film_pieces_dir / "document_sentences.jsonl").open() as handle:
        sentences = [json.loads(line)["sentence"] for line in handle][:400]
    texts = [RawText(f"doc{i}", " ".join(sentences[i * 20 : i * 20 + 20])) for i in range(20)]
    # a probe whose context holds sentences 100..119 (text 5) and 300..302 (inside text 15)
    probe = _probe(" ".join(sentences[100:120] + sentences[300:303]), answer=sentences[301])
    _kept, report = filter_texts(texts, ProbeIndex.build([probe]))
    assert set(report.dropped_ids) == {"doc5", "doc15"}


# ------------------------------------------------------------------------------------- pipeline + output


def _config(n: int, **kw: object) -> SynthesisConfig:
    base = {"length": LengthRange(300, 600, slack_tokens=100), "segment_tokens": 64}
    return SynthesisConfig(n_examples=n, **{**base, **kw})  # type: ignore[arg-type]


def test_synthesis_is_deterministic_and_follows_the_mixture(tmp_path: Path) -> None:
    corpus = make_corpus(30, 12, random.Random(5))
    general_file = tmp_path / "orca.jsonl"
    general_file.write_text(
        "".join(
            json.dumps({"system_prompt": "Be brief.", "question": f"Q{i}?", "response": f"A{i}"}) + "\n"
            for i in range(10)
        )
    )
    general = read_general(general_file)
    runs = [
        synthesize(corpus, WS, ExtractiveLocalGenerator(), _config(40), random.Random(7), general=general)
        for _ in range(2)
    ]
    examples = [list(run.examples()) for run in runs]
    assert examples[0] == examples[1] and runs[0].manifest == runs[1].manifest
    assert list(runs[0].examples()) == examples[0]  # assembly is reproducible, lazily, any number of times
    syn = runs[0]
    assert syn.manifest["counts"]["planned"] == {
        "fine_grained": 25,
        "integration": 7,
        "short_context": 4,
        "general": 4,
    }
    assert syn.manifest["counts"]["produced"] == syn.manifest["counts"]["planned"]
    for ex in examples[0]:
        if ex.kind in ("fine_grained", "integration"):
            assert 200 <= ex.context_tokens <= 700
            assert len(ex.needles) == (1 if ex.kind == "fine_grained" else len(ex.sources))
        if ex.kind == "short_context":
            assert ex.context_tokens <= 300
        if ex.kind == "general":
            assert ex.context is None and ex.system == "Be brief."
    stats = ExampleStats(syn.config.length)
    for ex in examples[0]:
        stats.add(ex)
    hist = stats.to_dict()
    assert sum(b["count"] for b in hist["needle_depth_histogram"]) == sum(
        len(ex.needles) for ex in examples[0]
    )
    assert sum(b["count"] for b in hist["context_length_histogram"]) == 36  # every example with a context


def test_missing_general_data_renormalises_or_errors() -> None:
    corpus = make_corpus(30, 12, random.Random(6))
    syn = synthesize(corpus, WS, ExtractiveLocalGenerator(), _config(20), random.Random(0))
    assert syn.manifest["counts"]["planned"]["general"] == 0
    assert sum(syn.manifest["counts"]["planned"].values()) == 20
    assert "renormalised" in syn.manifest["mixture"]["note"]
    with pytest.raises(ValProbingError, match="no --general"):
        synthesize(
            corpus, WS, ExtractiveLocalGenerator(), _config(20, on_missing_general="error"), random.Random(0)
        )


def test_more_questions_than_segments_is_an_error() -> None:
    corpus = make_corpus(10, 6, random.Random(7))
    with pytest.raises(ValProbingError, match="fewer than the"):
        synthesize(corpus, WS, ExtractiveLocalGenerator(), _config(500), random.Random(0))


class _MustNotRun:
    def describe(self) -> dict[str, str]:
        return {"kind": "test"}

    def generate(self, requests: object) -> None:
        raise AssertionError("QA generation must not start when the contexts cannot be filled")


def test_a_corpus_that_cannot_fill_the_range_fails_before_any_qa_is_generated(tmp_path: Path) -> None:
    corpus = make_corpus(3, 6, random.Random(7))  # ~650 words in all
    with pytest.raises(ContextRangeError, match="could not fill contexts of up to 2000 tokens"):
        synthesize(corpus, WS, _MustNotRun(), _config(4, length=LengthRange(1000, 2000)), random.Random(0))


def test_saved_dataset_has_film_prompts_and_a_manifest(tmp_path: Path) -> None:
    from datasets import load_from_disk

    corpus = make_corpus(30, 12, random.Random(8))
    syn = synthesize(corpus, WS, ExtractiveLocalGenerator(), _config(12), random.Random(0))
    out = save_dataset(tmp_path / "data", syn, "film")
    ds = load_from_disk(str(out))
    assert len(ds) == 12
    row = ds[0]
    ex = next(syn.examples())
    assert row["prompt"] == FILM_PROMPT.format(context=ex.context, instruction=ex.instruction)
    assert row["completion"] == " " + ex.answer
    assert row["needle_token_offsets"] == [n.token_offset for n in ex.needles]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["template"] == "film" and manifest["generator"]["kind"] == "extractive-local"
    assert sum(b["count"] for b in manifest["context_length_histogram"]) == 12
    with pytest.raises(ValProbingError, match="exists"):
        save_dataset(out, syn, "film")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no build folder left behind
    chat_out = save_dataset(tmp_path / "chat", syn, "chat")
    assert load_from_disk(str(chat_out))[0]["prompt"][0]["role"] == "user"
    chat = to_row(ex, "chat")
    assert chat["prompt"][0]["role"] == "user" and chat["completion"] == [
        {"role": "assistant", "content": ex.answer}
    ]


def test_inputs_errors_name_the_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "texts.jsonl"
    bad.write_text(json.dumps({"text": "fine"}) + "\n" + json.dumps({"body": "x"}) + "\n")
    with pytest.raises(RecordError, match=r"texts\.jsonl:2: field 'text'"):
        read_texts([bad])
    with pytest.raises(ValProbingError, match="no such file"):
        read_texts([tmp_path / "missing"])
    general = tmp_path / "g.jsonl"
    general.write_text(json.dumps({"question": "q?", "answer": "a"}) + "\n")
    with pytest.raises(RecordError, match=r"g\.jsonl:1: expected fields"):
        read_general(general)
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_text("one text")
    (folder / "b.jsonl").write_text(json.dumps({"text": "two", "id": "x"}) + "\n")
    assert [t.text for t in read_texts([folder])] == ["one text", "two"]


def test_no_surviving_pair_is_an_error_with_the_rejection_counts() -> None:
    corpus = [RawText(f"t{i}", " ".join(["word"] * 200)) for i in range(10)]  # one sentence = whole segment
    with pytest.raises(ValProbingError, match=r"no QA pair survived.*answer_copies_segment.: 5"):
        synthesize(corpus, WS, ExtractiveLocalGenerator(), _config(5), random.Random(0))


def test_contamination_against_probes_built_by_this_project(tmp_path: Path, film_pieces_dir: Path) -> None:
    from val_probing.build import ProbeSpec, build_probes
    from val_probing.pools import load_pool
    from val_probing.records import read_probes, write_probes

    probes = []
    for family, pool in (("document", "document_sentences.jsonl"), ("code", "code_functions.jsonl")):
        pool_path = str(film_pieces_dir / pool)
        spec = ProbeSpec(family, length=400, tokenizer="whitespace", pool=pool_path, sets=1)
        probes += build_probes(spec, WS, load_pool(family, pool_path), random.Random(0))
    path = tmp_path / "probes.jsonl"
    write_probes(path, probes)
    index = ProbeIndex.build(read_probes(path))
    clean = make_corpus(4, 4, random.Random(9))
    doc_needle = next(p for p in probes if p.family == "document")
    code_needle = next(p for p in probes if p.family == "code")
    code_lines = code_needle.context.split("\n")[
        :6
    ]  # the start of the first function, as a user would paste it
    leaked = [
        RawText("leak-doc", f"{clean[0].text}\n\nAs noted before, {doc_needle.answer}"),
        RawText("leak-code", "Here is a snippet:\n" + "\n".join(code_lines)),
    ]
    kept, report = filter_texts([*clean, *leaked], index)
    assert set(report.dropped_ids) == {"leak-doc", "leak-code"}
    assert [t.text_id for t in kept] == [t.text_id for t in clean]
    assert report.n_probes == len(probes) and report.n_probe_contexts == 2


def test_an_assembly_failure_while_saving_is_reported_as_such_and_leaves_nothing(tmp_path: Path) -> None:
    corpus = make_corpus(30, 12, random.Random(8))
    strict = LengthRange(300, 600, slack_tokens=1, max_rejections=3)  # almost no filler fits exactly
    syn = synthesize(corpus, WS, ExtractiveLocalGenerator(), _config(12, length=strict), random.Random(0))
    with pytest.raises(ContextRangeError, match="could not fill"):
        save_dataset(tmp_path / "data", syn, "film")
    assert list(tmp_path.iterdir()) == []


def test_context_lengths_land_on_their_targets_without_bias() -> None:
    rng = random.Random(0)
    pool = [
        Segment(f"t{i}", 0, " ".join(["w"] * n), n)
        for i, n in enumerate(rng.randint(128, 200) for _ in range(500))
    ]
    length = LengthRange(4096, 8192)
    diffs = []
    for target in spread_targets(60, length, rng):
        needed = [Segment("need", 0, "x " * 150, 150)]
        diffs.append(assemble_context(needed, pool, target, WS, length, rng).context_tokens - target)
    assert all(abs(d) <= length.slack_tokens for d in diffs)
    assert abs(sum(diffs) / len(diffs)) < 30  # neither short nor long on average (segments are ~164 tokens)


def test_read_corpus_accounts_for_files_not_read(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("one text")
    (folder / "sub" / "b.md").write_text("two")
    (folder / "sub" / "c.pdf").write_bytes(b"%PDF")
    (folder / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with caplog.at_level("INFO"):
        corpus = read_corpus([folder])
    assert [t.text for t in corpus.texts] == ["one text", "two"]
    assert corpus.not_read == (str(folder / "sub" / "c.pdf"),)
    assert corpus.undecodable == (str(folder / "latin1.txt"),)
    assert corpus.to_manifest()["undecodable"] == {"count": 1, "files": [str(folder / "latin1.txt")]}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(folder / "latin1.txt") in warnings[0] and "iconv" in warnings[0]
    bad_jsonl = tmp_path / "bad.jsonl"
    bad_jsonl.write_bytes(b'{"text": "\xff"}\n')
    with pytest.raises(RecordError, match=rf"{bad_jsonl}: not UTF-8"):
        read_corpus([bad_jsonl])


# ---------------------------------------------------------------------------------------------- placement


def _fillers_to_nearer_end(order: list[tuple[Segment, int | None]], i: int) -> int:
    before = sum(rank is None for _seg, rank in order[:i])
    after = sum(rank is None for _seg, rank in order[i + 1 :])
    return min(before, after)


@pytest.mark.parametrize("n_needed", [1, 2, 4])
def test_edge_placement_keeps_needed_segments_in_the_edge_band(n_needed: int) -> None:
    rng = random.Random(5)
    seen_head = seen_tail = 0
    for n_fillers in (0, 1, 5, 9, 10, 37, 250):
        fillers = _segments(n_fillers, 10, rng) if n_fillers else []
        needed = [Segment(f"need{k}", k, f"need{k} " * 10, 10) for k in range(n_needed)]
        for seed in range(40):
            order = place_needed(fillers, needed, random.Random(seed), "edges")
            assert [s for s, r in order if r is None] == fillers  # fillers untouched, in their order
            assert sorted(r for _s, r in order if r is not None) == list(range(n_needed))
            for i, (_seg, rank) in enumerate(order):
                if rank is not None:
                    assert _fillers_to_nearer_end(order, i) <= edge_band(n_fillers)
                    before = sum(r is None for _s, r in order[:i])
                    seen_head += before <= edge_band(n_fillers)
                    seen_tail += n_fillers - before <= edge_band(n_fillers)
    assert edge_band(250) == 25 and edge_band(9) == 0
    assert seen_head and seen_tail  # both ends are used


def test_uniform_and_edge_placement_draw_the_same_fillers_from_one_seed() -> None:
    rng = random.Random(3)
    pool = _segments(300, 130, rng)
    needed = [Segment("needA", 0, "alpha " * 130, 130), Segment("needB", 3, "beta " * 140, 140)]
    length = LengthRange(2000, 4000)
    depths = {"uniform": [], "edges": []}
    for seed in range(50):
        parts = {}
        for placement in ("uniform", "edges"):
            got = assemble_context(needed, pool, 3000, WS, length, random.Random(seed), placement)
            parts[placement] = got.context.split("\n\n")
            depths[placement] += [n.depth for n in got.needles]
            for needle, seg in zip(got.needles, needed, strict=True):
                assert parts[placement][needle.segment_index] == seg.text
        assert sorted(parts["uniform"]) == sorted(parts["edges"])  # the same segments, moved
        fillers = [[p for p in parts[k] if p not in {s.text for s in needed}] for k in parts]
        assert fillers[0] == fillers[1]  # the same fillers in the same order
    # edges: at most 10% of the ~20 fillers (2) and the other needed segment lie between a needed segment
    # and its end of the context (~4 x 4% of a 3000-token context); uniform: the middle too
    assert all(d < 0.2 or d > 0.8 for d in depths["edges"])
    assert min(depths["edges"]) == 0.0 and max(depths["edges"]) > 0.9
    assert sum(0.25 < d < 0.75 for d in depths["uniform"]) > len(depths["uniform"]) / 4


def test_a_placement_that_does_not_exist_is_refused() -> None:
    with pytest.raises(ValProbingError, match="placement"):
        SynthesisConfig(n_examples=1, placement="center")  # type: ignore[arg-type]
    with pytest.raises(ValProbingError, match="placement"):
        place_needed([], [Segment("n", 0, "n", 1)], random.Random(0), "center")  # type: ignore[arg-type]
