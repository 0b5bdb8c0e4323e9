"""The stages before training: the model, the probes, the offline corpus and the data of both arms.

The probes stage records the simulated power (``power``); the corpus is the long descriptions of the
installed Python distributions; the data stage saves one synthesis plan twice (``uniform``, ``edges``).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata as md
import json
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from val_probing.files import write_jsonl
from val_probing.in2.experiment.design import ARMS, EMBEDDED, TINY_LLAMA, ExperimentError
from val_probing.in2.experiment.power import simulated_power
from val_probing.in2.experiment.stages import Run, Stage
from val_probing.records import FAMILIES, Family


def _model_inputs(run: Run) -> dict[str, Any]:
    return {"model": run.config.model, "seed": run.config.seed}


def _model_body(run: Run, folder: Path) -> dict[str, Any]:
    from val_probing.embedded import embedded_model_dir, make_tiny_llama

    model = run.config.model
    if model == TINY_LLAMA:
        make_tiny_llama(folder / "model", seed=run.config.seed)
        return {"path": "model", "kind": "tiny random Llama (hidden 64, 2 layers), SmolLM2 tokenizer"}
    path = embedded_model_dir() if model == EMBEDDED else Path(model)
    return {"path": str(path), "kind": model}


def base_model(run: Run) -> str:
    """The base model's folder (or hub name): inside the model stage for the tiny Llama; the embedded
    model's cache folder, verified (and converted again if it was removed) on every use."""
    from val_probing.embedded import embedded_model_dir

    if run.config.model == EMBEDDED:
        return str(embedded_model_dir())
    path = str(run.summary("model")["path"])
    return str(run.stage_dir("model") / path) if path == "model" else path


def probe_spec(run: Run, family: Family) -> Any:
    from val_probing.build import ProbeSpec

    p = run.config.probes
    return ProbeSpec(
        family=family,
        length=p.context_length,
        tokenizer=base_model(run),
        pool=p.pool,
        seed=p.seed,
        sets=p.sets,
        positions=p.positions,
    )


def _probes_inputs(run: Run) -> dict[str, Any]:
    return {"probes": run.config.section("probes"), "power": run.config.section("comparison")}


def _probes_body(run: Run, folder: Path) -> dict[str, Any]:
    from val_probing.build import cached_probes
    from val_probing.records import write_probes

    p = run.config.probes
    out: dict[str, Any] = {"families": {}}
    for family in FAMILIES:
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
    return {"corpus": run.config.section("corpus"), "distributions": installed_distributions()}


def installed_distributions() -> list[str]:
    return sorted({f"{d.metadata['Name']}=={d.version}" for d in md.distributions() if d.metadata["Name"]})


_FENCE = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1[ \t]*$", re.M | re.S)
_MARKUP = re.compile(r"^\s*(\.\. |:[a-z]+:|<|\[!\[|!\[|\|)")


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
PARAGRAPH_CHARS = 600  # longer paragraphs are cut at sentence ends: segments stay near 128 tokens


def _short_paragraphs(paragraph: str, limit: int = PARAGRAPH_CHARS) -> list[str]:
    """A paragraph as pieces of at most about ``limit`` characters, cut at sentence ends; a piece still
    over ``2 x limit`` (no sentence end: a table row, a list of links) is left out."""
    pieces: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(paragraph):
        if current and len(current) + 1 + len(sentence) > limit:
            pieces.append(current)
            current = ""
        current = f"{current} {sentence}" if current else sentence
    if current:
        pieces.append(current)
    return [p for p in pieces if len(p) <= 2 * limit]


def _prose(body: str) -> str:
    """A long description without code blocks, images, tables, directives or HTML lines, in paragraphs of
    at most about :data:`PARAGRAPH_CHARS` characters."""
    body = _FENCE.sub("", body)
    lines = [ln for ln in body.splitlines() if not _MARKUP.match(ln) and not ln.startswith("    ")]
    paragraphs = re.split(r"\n\s*\n", "\n".join(lines))
    flat = [" ".join(para.split()) for para in paragraphs if para.strip()]
    kept = [piece for para in flat for piece in _short_paragraphs(para)]
    return "\n\n".join(kept)


def package_texts(min_words: int, max_texts: int | None = None) -> list[tuple[str, str]]:
    """(id, text) of the long descriptions of the installed distributions, prose only, one per name.

    Every install has them (the METADATA body of each ``*.dist-info``: mostly README prose); they are
    not the embedded probe pools' sources (standard-library docstrings, generated code and tables).
    """
    seen: dict[str, tuple[str, str]] = {}
    for dist in md.distributions():
        name = dist.metadata["Name"]
        raw = dist.read_text("METADATA") or ""
        _headers, _sep, body = raw.partition("\n\n")
        text = _prose(body)
        if not name or len(text.split()) < min_words:
            continue
        key = re.sub(r"[-_.]+", "-", name).lower()
        seen.setdefault(key, (f"{key}=={dist.version}", text))
    texts = [seen[k] for k in sorted(seen)]
    return texts[:max_texts] if max_texts is not None else texts


def _corpus_body(run: Run, folder: Path) -> dict[str, Any]:
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


def _data_inputs(run: Run) -> dict[str, Any]:
    return {"synthesis": run.config.section("synthesis"), "seed": run.config.seed}


def _data_body(run: Run, folder: Path) -> dict[str, Any]:
    from val_probing.in2.assemble import LengthRange, MixtureRatios
    from val_probing.in2.contamination import ProbeIndex
    from val_probing.in2.dataset import SynthesisConfig, read_corpus, save_dataset, synthesize
    from val_probing.in2.qa import ExtractiveLocalGenerator
    from val_probing.records import read_probes
    from val_probing.token_counters import HFTokenCounter

    s, seed = run.config.synthesis, run.config.seed
    corpus_file = run.stage_dir("corpus") / "corpus.jsonl"
    corpus = read_corpus([corpus_file])
    # A text's id seeds the QA generator and names the examples' sources: it must not depend on where
    # OUT is (read_corpus prefixes the file's path), or the same settings make other data elsewhere.
    texts = [
        dataclasses.replace(t, text_id="corpus.jsonl:" + t.text_id.removeprefix(f"{corpus_file}:"))
        for t in corpus.texts
    ]
    probes = ProbeIndex.build(
        ex for f in FAMILIES for ex in read_probes(run.stage_dir("probes") / f"{f}.jsonl")
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
        HFTokenCounter.load(base_model(run)),
        ExtractiveLocalGenerator(seed=seed),
        config,
        random.Random(seed),
        probes=probes,
    )
    plan = dataclasses.replace(plan, manifest={**plan.manifest, "sources": {"corpus": corpus.to_manifest()}})
    arms = {}
    for placement in ARMS:
        # s.template is the config's str; save_dataset refuses any name but film or chat
        out = save_dataset(folder / placement, plan.with_placement(placement), s.template)  # type: ignore[arg-type]
        manifest = json.loads((out / "manifest.json").read_text())
        arms[placement] = {"path": placement, "needle_depth_histogram": manifest["needle_depth_histogram"]}
    check_arms(folder / ARMS[0], folder / ARMS[1])
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


PREPARE_STAGES: tuple[Stage, ...] = (
    Stage("model", (), _model_inputs, _model_body),
    Stage("probes", ("model",), _probes_inputs, _probes_body),
    Stage("corpus", (), _corpus_inputs, _corpus_body, version=2),  # 2: long paragraphs cut
    Stage("data", ("model", "probes", "corpus"), _data_inputs, _data_body),
)
