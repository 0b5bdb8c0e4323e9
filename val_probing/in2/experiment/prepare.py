"""The stages before training: the model, the probes, the offline corpus and the data of both arms.

The probes stage records the simulated power (``power``); the corpus is the long descriptions of the
installed Python distributions; the data stage saves one synthesis plan twice (``uniform``, ``edges``).
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from val_probing.files import write_jsonl
from val_probing.in2.experiment.design import EMBEDDED, SCRATCH, TINY_LLAMA, ExperimentConfig, ExperimentError
from val_probing.in2.experiment.package_prose import installed_distributions, package_texts
from val_probing.in2.experiment.power import simulated_power
from val_probing.in2.experiment.stages import Run, Stage
from val_probing.records import Family

SYNTHETIC_POOL = "document_pool.jsonl"  # the corpus stage's probe pool (corpus.source synthetic)
DEPTH_BINS = 20  # of each arm's needle-depth histogram in its manifest


def _model_inputs(run: Run) -> dict[str, Any]:
    c = run.config
    if c.model == SCRATCH:
        return {"model": c.model, "seeds": list(c.seeds), "scratch": c.section("scratch")}
    return {"model": c.model, "seed": c.seed}


def _model_body(run: Run, folder: Path) -> dict[str, Any]:
    from val_probing.embedded import embedded_model_dir, make_tiny_llama

    model = run.config.model
    if model == SCRATCH:
        return _scratch_models(run, folder)
    if model == TINY_LLAMA:
        make_tiny_llama(folder / "model", seed=run.config.seed)
        return {"path": "model", "kind": "tiny random Llama (hidden 64, 2 layers), SmolLM2 tokenizer"}
    path = embedded_model_dir() if model == EMBEDDED else Path(model)
    return {"path": str(path), "kind": model}


def _scratch_models(run: Run, folder: Path) -> dict[str, Any]:
    """One random initialisation per seed (``model/sSEED``), all with the word-level tokenizer of the
    corpus stage's language."""
    from val_probing.in2.scratch import word_tokenizer, write_scratch_model
    from val_probing.in2.synthetic import tokenizer_texts

    language = language_of(run)
    tokenizer = word_tokenizer(language.words, tokenizer_texts(language))
    m = run.config.scratch
    for seed in run.config.seeds:
        write_scratch_model(
            folder / "model" / f"s{seed}",
            tokenizer,
            hidden=m.hidden,
            layers=m.layers,
            heads=m.heads,
            kv_heads=m.kv_heads,
            intermediate=m.intermediate,
            max_positions=m.max_positions,
            seed=seed,
        )
    return {
        "path": "model",
        "per_seed": True,
        "vocabulary": len(tokenizer),
        "kind": f"random Llama (hidden {m.hidden}, {m.layers} layers), word-level tokenizer, one per seed",
    }


def base_model(run: Run, seed: int | None = None) -> str:
    """The base model's folder (or hub name): inside the model stage for the tiny and scratch Llamas
    (scratch: the initialisation of ``seed``, the first seed's when None: the tokenizer is the same); the
    embedded model's cache folder, verified (and converted again if it was removed) on every use."""
    from val_probing.embedded import embedded_model_dir

    if run.config.model == EMBEDDED:
        return str(embedded_model_dir())
    summary = run.summary("model")
    path = str(summary["path"])
    if summary.get("per_seed"):
        return str(run.stage_dir("model") / path / f"s{run.config.seed if seed is None else seed}")
    return str(run.stage_dir("model") / path) if path == "model" else path


def probe_spec(run: Run, family: Family) -> Any:
    from val_probing.build import ProbeSpec

    p = run.config.probes
    return ProbeSpec(
        family=family,
        length=p.context_length,
        tokenizer=base_model(run),
        pool=probe_pool(run),
        seed=p.seed,
        sets=p.sets,
        positions=p.positions,
    )


def probe_pool(run: Run) -> str:
    """The probes' pool: the corpus stage's synthetic document pool, or the configured pool name/path."""
    if run.config.probes.pool == "synthetic":
        return str(run.stage_dir("corpus") / SYNTHETIC_POOL)
    return run.config.probes.pool


def _probes_inputs(run: Run) -> dict[str, Any]:
    return {"probes": run.config.section("probes"), "power": run.config.section("comparison")}


def _probes_body(run: Run, folder: Path) -> dict[str, Any]:
    from val_probing.build import cached_probes
    from val_probing.records import write_probes

    p = run.config.probes
    out: dict[str, Any] = {"families": {}}
    for family in p.families:
        examples, probe_hash = cached_probes(probe_spec(run, family))
        write_probes(folder / f"{family}.jsonl", examples)
        per_bucket = len(examples) // p.n_buckets
        out["families"][family] = {
            "questions": len(examples),
            "probe_hash": probe_hash,
            "questions_per_bucket": per_bucket,
            "context_tokens": max(e.context_tokens for e in examples),
        }
    out["power"] = simulated_power(run.config, {f: v["questions"] for f, v in out["families"].items()})
    return out


def _corpus_inputs(run: Run) -> dict[str, Any]:
    if run.config.corpus.source == "synthetic":
        s = run.config.synthesis
        return {
            "corpus": run.config.section("corpus"),
            "language": run.config.section("language"),
            "phrase": [s.phrase_words, s.phrase_from],
        }
    return {"corpus": run.config.section("corpus"), "distributions": installed_distributions()}


def language_of(run: Run) -> Any:
    from val_probing.in2.synthetic import Language

    g = run.config.language
    return Language.make(g.words, g.seed, g.sentence_words)


def _corpus_body(run: Run, folder: Path) -> dict[str, Any]:
    if run.config.corpus.source == "synthetic":
        return _synthetic_corpus(run, folder)
    c = run.config.corpus
    texts = package_texts(c.min_words, c.max_texts)
    if not texts:
        raise ExperimentError(f"no installed distribution has a description of {c.min_words}+ words")
    write_jsonl(folder / "corpus.jsonl", ({"id": i, "text": t} for i, t in texts))
    return {
        "texts": len(texts),
        "words": sum(len(t.split()) for _i, t in texts),
        "source": "long descriptions (METADATA) of the installed Python distributions",
        "ids": [i for i, _t in texts],
    }


def _synthetic_corpus(run: Run, folder: Path) -> dict[str, Any]:
    """The pseudo-word corpus (one sentence per line) and, from sentences it does not hold, the
    document-probe pool."""
    from val_probing.in2.synthetic import corpus_sentences, corpus_texts, document_items, write_document_pool

    g = run.config.language
    language = language_of(run)
    texts = corpus_texts(language, g.texts, g.sentences_per_text, g.seed)
    write_jsonl(folder / "corpus.jsonl", ({"id": i, "text": t} for i, t in texts))
    s = run.config.synthesis  # the probes quote what the training questions quote
    items = document_items(
        language, g.pool_items, s.phrase_words, g.seed, corpus_sentences(texts), phrase_from=s.phrase_from
    )
    write_document_pool(folder / SYNTHETIC_POOL, items)
    return {
        "texts": len(texts),
        "words": sum(len(t.split()) for _i, t in texts),
        "vocabulary": len(language.words),
        "pool_items": len(items),
        "source": "synthetic pseudo-word language (val_probing.in2.synthetic)",
    }


def _data_inputs(run: Run, *, seed: int) -> dict[str, Any]:
    return {"synthesis": run.config.section("synthesis"), "seed": seed, "arms": list(run.config.arms)}


def data(run: Run, folder: Path, *, seed: int) -> dict[str, Any]:
    """One synthesis plan of this seed, saved once per arm (only the needed segments' places differ)."""
    from val_probing.in2.assemble import LengthRange, MixtureRatios
    from val_probing.in2.contamination import ProbeIndex
    from val_probing.in2.dataset import SynthesisConfig, read_corpus, save_dataset, synthesize
    from val_probing.in2.qa import ExtractiveLocalGenerator
    from val_probing.records import read_probes
    from val_probing.token_counters import HFTokenCounter

    s = run.config.synthesis
    corpus_file = run.stage_dir("corpus") / "corpus.jsonl"
    corpus = read_corpus([corpus_file])
    # A text's id seeds the QA generator and names the examples' sources: it must not depend on where
    # OUT is (read_corpus prefixes the file's path), or the same settings make other data elsewhere.
    texts = [
        dataclasses.replace(t, text_id="corpus.jsonl:" + t.text_id.removeprefix(f"{corpus_file}:"))
        for t in corpus.texts
    ]
    probes = ProbeIndex.build(
        ex for f in run.config.probes.families for ex in read_probes(run.stage_dir("probes") / f"{f}.jsonl")
    )
    config = SynthesisConfig(
        n_examples=s.n_examples,
        ratios=MixtureRatios.parse(s.mixture),
        length=LengthRange(s.min_context, s.max_context, s.slack_tokens),
        segment_tokens=s.segment_tokens,
        integration_segments=(s.integration_segments[0], s.integration_segments[-1]),
        seed=seed,
    )
    plan = synthesize(
        texts,
        HFTokenCounter.load(base_model(run, seed)),
        ExtractiveLocalGenerator(seed=seed, phrase_words=s.phrase_words, phrase_from=s.phrase_from),
        config,
        random.Random(seed),
        probes=probes,
    )
    plan = dataclasses.replace(plan, manifest={**plan.manifest, "sources": {"corpus": corpus.to_manifest()}})
    arms = {}
    for placement in run.config.arms:
        # s.template is the config's str; save_dataset refuses any name but film or chat
        out = save_dataset(
            folder / placement,
            plan.with_placement(placement),
            s.template,  # type: ignore[arg-type]
            depth_bins=DEPTH_BINS,
        )
        manifest = json.loads((out / "manifest.json").read_text())
        arms[placement] = {
            "path": placement,
            **{
                k: manifest[k]
                for k in ("needle_depth_histogram", "needle_depth_regions", "needle_depth_range")
            },
        }
    first, *rest = run.config.arms
    for other in rest:
        check_arms(folder / first, folder / other)
    return {
        "arms": arms,
        "counts": plan.manifest["counts"],
        "contamination": plan.manifest["contamination"],
        "examples": len(plan),
    }


def check_arms(a: Path, b: Path) -> None:
    """The two arms hold the same examples (question, answer, needed segments, the same multiset of
    context segments), in the same order; only where the needed segments sit may differ."""
    from datasets import load_from_disk

    from val_probing.in2.assemble import SEGMENT_SEPARATOR

    da, db = load_from_disk(str(a)), load_from_disk(str(b))
    if len(da) != len(db):
        raise ExperimentError(f"{a} and {b} hold {len(da)} and {len(db)} examples")
    for i, (x, y) in enumerate(zip(da, db, strict=True)):
        same = x["completion"] == y["completion"] and x["sources"] == y["sources"]
        ctx = [sorted(_context(r).split(SEGMENT_SEPARATOR)) for r in (x, y)]
        if not same or ctx[0] != ctx[1]:
            raise ExperimentError(f"arms differ beyond placement at example {i} ({a}, {b})")


def _context(row: Mapping[str, Any]) -> str:
    prompt = row["prompt"] if isinstance(row["prompt"], str) else row["prompt"][0]["content"]
    return prompt.partition("### Context:\n")[2].partition("\n\n### Instruction:")[0]


def prepare_stages(config: ExperimentConfig) -> tuple[Stage, ...]:
    """model, probes, corpus, then one data stage per seed (``data_sSEED``). The synthetic regime makes
    its corpus first: the scratch model's tokenizer and the probes' pool come from its language."""
    corpus = Stage("corpus", (), _corpus_inputs, _corpus_body, version=2)  # 2: long paragraphs cut
    if config.corpus.source == "synthetic":
        head = (
            corpus,
            Stage("model", ("corpus",), _model_inputs, _model_body),
            Stage("probes", ("model", "corpus"), _probes_inputs, _probes_body),
        )
    else:
        head = (
            Stage("model", (), _model_inputs, _model_body),
            Stage("probes", ("model",), _probes_inputs, _probes_body),
            corpus,
        )
    per_seed = tuple(
        Stage(f"data_s{seed}", ("model", "probes", "corpus"), _data_inputs, data, {"seed": seed})
        for seed in config.seeds
    )
    return (*head, *per_seed)
