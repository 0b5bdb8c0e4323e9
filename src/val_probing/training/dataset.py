"""From raw texts to a training set: the synthesis pipeline, its inputs, and the saved dataset + manifest.

``synthesize`` is pure given its inputs (texts, token counter, QA generator, random.Random): contamination
filter -> segmentation -> mixture plan -> QA generation -> context assembly -> examples and a manifest.
``save_dataset`` writes a ``datasets`` folder (``save_to_disk``) with ``prompt``/``completion`` columns
plus per-example metadata, and ``manifest.json``; it writes to a temporary folder and renames it, so a
failed run never leaves a half-written dataset.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from val_probing.errors import ValProbingError
from val_probing.records import RecordError, iter_jsonl
from val_probing.tokens import TokenCounter
from val_probing.training.assemble import (
    LengthRange,
    MixtureRatios,
    TrainingExample,
    assemble_context,
    attach,
    plan_counts,
    short_context,
    spread_targets,
)
from val_probing.training.contamination import ContaminationReport, ProbeIndex, filter_texts
from val_probing.training.qa import QAGenerator, QARequest
from val_probing.training.segment import SEGMENT_TOKENS, RawText, Segment, Segmentation, segment_corpus

log = logging.getLogger(__name__)

FILM_PROMPT = (
    "[INST] Below is a context and an instruction. Based on the information provided in the context, "
    "write a response for the instruction.\n\n### Context:\n{context}\n\n"
    "### Instruction:\n{instruction} [/INST]"
)
FILM_BODY = FILM_PROMPT.removeprefix("[INST] ").removesuffix(" [/INST]")
Template = Literal["film", "chat"]
TEXT_SUFFIXES = (".txt", ".md")


# ----------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------


def _texts_from_jsonl(path: Path) -> list[RawText]:
    out = []
    for lineno, obj in iter_jsonl(path):
        text = obj.get("text")
        if not isinstance(text, str):
            raise RecordError(f"{path}:{lineno}: field 'text': expected a string, got {type(text).__name__}")
        text_id = obj.get("id")
        out.append(RawText(f"{path}:{text_id}" if text_id is not None else f"{path}:{lineno}", text))
    return out


def read_texts(paths: Sequence[Path]) -> list[RawText]:
    """Raw texts from files and folders: each .txt/.md file is one text; each line of a .jsonl is one text
    (field ``text``, optional ``id``). Folders are searched recursively, in sorted order."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix in (*TEXT_SUFFIXES, ".jsonl")))
        elif path.is_file():
            files.append(path)
        else:
            raise ValProbingError(f"{path}: no such file or folder")
    texts: list[RawText] = []
    for path in files:
        if path.suffix == ".jsonl":
            texts.extend(_texts_from_jsonl(path))
        elif path.suffix in TEXT_SUFFIXES:
            texts.append(RawText(str(path), path.read_text(encoding="utf-8")))
        else:
            raise ValProbingError(f"{path}: expected .txt, .md or .jsonl")
    if not texts:
        raise ValProbingError(f"no raw texts found in {', '.join(map(str, paths))} (.txt, .md or .jsonl)")
    return texts


_GENERAL_SCHEMAS = (
    ("question", "response", "system_prompt"),
    ("instruction", "output", "input"),
    ("prompt", "completion", None),
)


def read_general(path: Path) -> list[TrainingExample]:
    """General instruction data, one JSON object a line, in one of three schemas: OpenOrca
    (question, response, system_prompt?), Alpaca (instruction, input?, output) or (prompt, completion)."""
    out = []
    for lineno, obj in iter_jsonl(path):
        schema = next((sch for sch in _GENERAL_SCHEMAS if sch[0] in obj and sch[1] in obj), None)
        if schema is None:
            raise RecordError(
                f"{path}:{lineno}: expected fields question/response (OpenOrca), instruction/output "
                f"(Alpaca) or prompt/completion; got {', '.join(sorted(obj))}"
            )
        q_field, a_field, extra = schema
        question, answer = obj[q_field], obj[a_field]
        for name, value in ((q_field, question), (a_field, answer)):
            if not isinstance(value, str) or not value.strip():
                raise RecordError(f"{path}:{lineno}: field {name!r}: expected a non-empty string")
        system = obj.get(extra) if extra == "system_prompt" else None
        if extra == "input" and obj.get("input"):
            question = f"{question}\n\n{obj['input']}"
        out.append(
            TrainingExample("general", question, answer, system=system or None, sources=(f"{path}:{lineno}",))
        )
    if not out:
        raise ValProbingError(f"{path}: no general instruction examples in the file")
    return out


# ----------------------------------------------------------------------------------------------------------
# Synthesis
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthesisConfig:
    n_examples: int
    ratios: MixtureRatios = field(default_factory=MixtureRatios)
    length: LengthRange = field(default_factory=LengthRange)
    segment_tokens: int = SEGMENT_TOKENS
    integration_segments: tuple[int, int] = (2, 4)  # segments per integration request, inclusive range
    short_max_tokens: int | None = None  # None: the lower end of the context range
    on_missing_general: Literal["renormalise", "error"] = "renormalise"
    seed: int = 0

    def __post_init__(self) -> None:
        lo, hi = self.integration_segments
        if not 2 <= lo <= hi:
            raise ValProbingError(f"integration segments: need 2 <= min <= max, got {lo}..{hi}")
        if self.on_missing_general not in ("renormalise", "error"):
            raise ValProbingError(f"on_missing_general: {self.on_missing_general!r}")


@dataclass(frozen=True)
class Synthesis:
    examples: tuple[TrainingExample, ...]
    manifest: dict[str, Any]


def resolve_ratios(config: SynthesisConfig, n_general: int | None) -> tuple[MixtureRatios, str | None]:
    """The mixture actually used, and a note when it differs from the configured one."""
    if config.ratios.general == 0 or n_general:
        return config.ratios, None
    if config.on_missing_general == "error":
        raise ValProbingError(
            f"the mixture asks for {config.ratios.general:.0%} general instruction data but no --general "
            "JSONL was given: pass one (e.g. OpenOrca rows), or set general=0 in --mixture, or "
            "--on-missing-general renormalise"
        )
    note = (
        f"no general instruction data given: the {config.ratios.general:.0%} general share was dropped "
        "and the other shares renormalised"
    )
    log.warning(note)
    return config.ratios.without_general(), note


def plan_requests(
    segmentation: Segmentation, n_fine: int, n_integration: int, config: SynthesisConfig, rng: random.Random
) -> list[QARequest]:
    """Distinct segments for fine-grained requests; segment groups (same text when it can) for integration."""
    segments = list(segmentation.segments)
    if n_fine > len(segments):
        raise ValProbingError(
            f"the corpus has {len(segments)} segments, fewer than the {n_fine} fine-grained QA asked for "
            "(fine-grained + short-context): add texts or lower --n-examples"
        )
    requests = [QARequest("fine_grained", (s,)) for s in rng.sample(segments, n_fine)]
    if n_integration and len(segments) < 2:
        raise ValProbingError("integration QA needs at least two segments; the corpus has one")
    by_text = segmentation.by_text()
    multi = [segs for segs in by_text.values() if len(segs) >= 2]
    lo, hi = config.integration_segments
    for _ in range(n_integration):
        source = rng.choice(multi) if multi else segments
        k = min(rng.randint(lo, hi), len(source))
        chosen = sorted(rng.sample(source, k), key=lambda s: (s.text_id, s.index))
        requests.append(QARequest("integration", tuple(chosen)))
    return requests


def _histogram(values: Sequence[float], edges: Sequence[float]) -> list[dict[str, Any]]:
    counts = Counter()
    for v in values:
        for lo, hi in itertools.pairwise(edges):
            if lo <= v < hi or (hi == edges[-1] and v == hi):
                counts[(lo, hi)] += 1
                break
        else:
            counts[("out", "of range")] += 1
    rows = [{"lo": lo, "hi": hi, "count": counts[(lo, hi)]} for lo, hi in itertools.pairwise(edges)]
    if counts[("out", "of range")]:
        rows.append({"lo": None, "hi": None, "count": counts[("out", "of range")]})
    return rows


def _build_examples(
    requests: Sequence[QARequest],
    pairs: dict[int, Any],
    n_short: int,
    segmentation: Segmentation,
    counter: TokenCounter,
    config: SynthesisConfig,
    rng: random.Random,
) -> list[TrainingExample]:
    by_text = segmentation.by_text()
    pool: Sequence[Segment] = segmentation.segments
    fine = [i for i, r in enumerate(requests) if r.kind == "fine_grained"]
    short_ids = set(fine[len(fine) - n_short :]) if n_short else set()
    long_ids = [i for i in sorted(pairs) if i not in short_ids]
    targets = dict(zip(long_ids, spread_targets(len(long_ids), config.length, rng), strict=True))
    short_max = config.short_max_tokens or config.length.min_tokens
    examples = []
    for i in sorted(pairs):
        needed = requests[i].segments
        if i in short_ids:
            seg = needed[0]
            examples.append(
                attach(
                    "short_context",
                    pairs[i],
                    needed,
                    short_context(seg, by_text[seg.text_id], short_max, counter),
                )
            )
        else:
            assembled = assemble_context(needed, pool, targets[i], counter, config.length, rng)
            examples.append(attach(requests[i].kind, pairs[i], needed, assembled))
    return examples


def synthesize(
    texts: Sequence[RawText],
    counter: TokenCounter,
    generator: QAGenerator,
    config: SynthesisConfig,
    rng: random.Random,
    *,
    general: Sequence[TrainingExample] | None = None,
    probes: ProbeIndex | None = None,
) -> Synthesis:
    contamination: ContaminationReport | None = None
    if probes is not None:
        texts, contamination = filter_texts(texts, probes)
        log.info(
            "contamination filter dropped %d of %d texts", contamination.n_dropped, contamination.n_texts
        )
    segmentation = segment_corpus(texts, counter, min_tokens=config.segment_tokens)
    ratios, note = resolve_ratios(config, len(general) if general else None)
    planned = plan_counts(config.n_examples, ratios)
    if general and planned["general"] > len(general):
        raise ValProbingError(
            f"the mixture asks for {planned['general']} general examples but the general data has "
            f"{len(general)}: give more rows or lower the general share"
        )
    requests = plan_requests(
        segmentation, planned["fine_grained"] + planned["short_context"], planned["integration"], config, rng
    )
    result = generator.generate(requests)
    examples = _build_examples(
        requests, result.pairs, planned["short_context"], segmentation, counter, config, rng
    )
    if not examples and not planned["general"] and requests:
        raise ValProbingError(
            f"no QA pair survived the checks: {len(requests)} requests, rejections "
            f"{dict(result.rejections)}: a generator that cannot answer in JSON (try --structured), "
            "or texts it cannot ask about"
        )
    if planned["general"]:
        examples.extend(rng.sample(list(general or ()), planned["general"]))
    rng.shuffle(examples)
    manifest = build_manifest(
        examples,
        planned,
        ratios,
        note,
        segmentation,
        result,
        contamination,
        generator.describe(),
        counter.name,
        config,
    )
    return Synthesis(tuple(examples), manifest)


def build_manifest(
    examples: Sequence[TrainingExample],
    planned: dict[str, int],
    ratios: MixtureRatios,
    note: str | None,
    segmentation: Segmentation,
    result: Any,
    contamination: ContaminationReport | None,
    generator: dict[str, Any],
    tokenizer: str,
    config: SynthesisConfig,
) -> dict[str, Any]:
    produced = Counter(ex.kind for ex in examples)
    lengths = [ex.context_tokens for ex in examples if ex.context is not None]
    step = (config.length.max_tokens - config.length.min_tokens) / 8
    edges = [0, *(config.length.min_tokens + step * i for i in range(9))]
    depths = [n.depth for ex in examples for n in ex.needles]
    return {
        "seed": config.seed,
        "tokenizer": tokenizer,
        "generator": generator,
        "counts": {"planned": planned, "produced": {k: produced.get(k, 0) for k in planned}},
        "n_examples": len(examples),
        "mixture": {"configured": config.ratios.as_dict(), "used": ratios.as_dict(), "note": note},
        "context_range": {
            "min_tokens": config.length.min_tokens,
            "max_tokens": config.length.max_tokens,
            "slack_tokens": config.length.slack_tokens,
        },
        "segment_tokens": config.segment_tokens,
        "corpus": {
            "segments": len(segmentation.segments),
            "texts_with_segments": len(segmentation.by_text()),
            "texts_too_short": len(segmentation.too_short),
        },
        "generation": {
            "rejections": dict(result.rejections),
            "gave_up": result.gave_up,
            "requests_sent": result.sent,
            "from_cache": result.cached,
        },
        "contamination": contamination.to_dict() if contamination else None,
        "context_length_histogram": _histogram(lengths, edges),
        "needle_depth_histogram": _histogram(depths, [i / 10 for i in range(11)]),
    }


# ----------------------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------------------


def _general_prompt(ex: TrainingExample) -> str:
    return f"{ex.system}\n\n{ex.instruction}" if ex.system else ex.instruction


def to_row(ex: TrainingExample, template: Template) -> dict[str, Any]:
    """One dataset row: prompt/completion in the FILM template (text) or as chat messages (``chat``:
    the trainer applies the model's own chat template), plus metadata columns."""
    if ex.context is None:
        body = _general_prompt(ex)
    else:
        body = FILM_BODY.format(context=ex.context, instruction=ex.instruction)
    if template == "film":
        prompt: Any = f"[INST] {body} [/INST]"
        completion: Any = f" {ex.answer}"
    elif template == "chat":
        prompt = [{"role": "user", "content": body}]
        completion = [{"role": "assistant", "content": ex.answer}]
    else:
        raise ValProbingError(f"template: {template!r} is not 'film' or 'chat'")
    return {
        "prompt": prompt,
        "completion": completion,
        "kind": ex.kind,
        "context_tokens": ex.context_tokens,
        "n_segments": ex.n_segments,
        "needle_segments": [n.segment_index for n in ex.needles],
        "needle_token_offsets": [n.token_offset for n in ex.needles],
        "needle_depths": [n.depth for n in ex.needles],
        "sources": list(ex.sources),
    }


def save_dataset(
    out_dir: Path,
    examples: Sequence[TrainingExample],
    manifest: dict[str, Any],
    template: Template,
    *,
    overwrite: bool = False,
) -> Path:
    """``out_dir`` = a ``datasets`` folder (load with ``datasets.load_from_disk``) + ``manifest.json``."""
    from datasets import Dataset

    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise ValProbingError(f"{out_dir} exists: pass --overwrite or choose another --out")
    if not examples:
        raise ValProbingError("no example was produced (see the rejection counts): nothing to save")
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        Dataset.from_list([to_row(ex, template) for ex in examples]).save_to_disk(str(tmp))
        (tmp / "manifest.json").write_text(json.dumps({**manifest, "template": template}, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
