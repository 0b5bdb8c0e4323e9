"""From raw texts to a training set: the synthesis pipeline, its inputs, and the saved dataset + manifest.

``synthesize`` is pure given its inputs (texts, token counter, QA generator, random.Random): contamination
filter -> segmentation -> mixture plan -> QA generation -> context assembly -> examples and a manifest.
``save_dataset`` writes a ``datasets`` folder (``save_to_disk``) with ``prompt``/``completion`` columns
plus per-example metadata, and ``manifest.json``; it writes to a temporary folder and renames it, so a
failed run never leaves a half-written dataset.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import itertools
import json
import logging
import random
import shutil
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from val_probing.errors import ValProbingError
from val_probing.in2.assemble import (
    PLACEMENTS,
    ContextRangeError,
    ExampleKind,
    LengthRange,
    MixtureRatios,
    Placement,
    TrainingExample,
    assemble_context,
    attach,
    plan_counts,
    short_context,
    spread_targets,
)
from val_probing.in2.contamination import ContaminationReport, ProbeIndex, filter_texts
from val_probing.in2.qa import QAGenerator, QAPair, QARequest
from val_probing.in2.segment import SEGMENT_TOKENS, RawText, Segment, Segmentation, segment_corpus
from val_probing.outputs import check_output_dir, writing
from val_probing.records import RecordError, iter_jsonl
from val_probing.tokens import TokenCounter

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


@dataclass(frozen=True)
class Corpus:
    """The raw texts read from ``--texts``, and the files that were not read, by reason."""

    texts: tuple[RawText, ...]
    not_read: tuple[str, ...] = ()  # files in the folders without a .txt, .md or .jsonl suffix
    undecodable: tuple[str, ...] = ()  # .txt/.md files that are not UTF-8 text (skipped, with a warning)

    def to_manifest(self) -> dict[str, Any]:
        """Counts (and the file names, up to 100 of each) for the dataset manifest."""
        return {
            "texts": len(self.texts),
            "not_read": {"count": len(self.not_read), "files": list(self.not_read[:100])},
            "undecodable": {"count": len(self.undecodable), "files": list(self.undecodable[:100])},
        }


def _listed(files: Sequence[str], limit: int = 20) -> str:
    more = f" and {len(files) - limit} more" if len(files) > limit else ""
    return ", ".join(files[:limit]) + more


def read_corpus(paths: Sequence[Path]) -> Corpus:
    """Raw texts from files and folders: each .txt/.md file is one text; each line of a .jsonl is one text
    (field ``text``, optional ``id``). Folders are searched recursively, in sorted order.

    Files in the folders with another suffix are not read: they are listed in the log and counted in the
    result. A .txt/.md file that is not UTF-8 text (a binary file, another encoding) is skipped with a
    warning naming it (convert it with ``iconv -t UTF-8`` to use it); a .jsonl file that is not UTF-8 is
    an error naming it and the line. A file named directly must have one of the three suffixes."""
    files: list[Path] = []
    not_read: list[str] = []
    for path in map(Path, paths):
        if path.is_dir():
            for found in sorted(p for p in path.rglob("*") if p.is_file()):
                if found.suffix in (*TEXT_SUFFIXES, ".jsonl"):
                    files.append(found)
                else:
                    not_read.append(str(found))
        elif path.is_file():
            if path.suffix not in (*TEXT_SUFFIXES, ".jsonl"):
                raise ValProbingError(f"{path}: expected .txt, .md or .jsonl")
            files.append(path)
        else:
            raise ValProbingError(f"{path}: no such file or folder")
    if not_read:
        log.info("%d file(s) not read (not .txt, .md or .jsonl): %s", len(not_read), _listed(not_read))
    texts: list[RawText] = []
    undecodable: list[str] = []
    for path in files:
        if path.suffix == ".jsonl":
            texts.extend(_texts_from_jsonl(path))
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            log.warning(
                "%s: skipped, not UTF-8 text (byte %d: %s); convert it (iconv -t UTF-8) or remove it",
                path,
                err.start,
                err.reason,
            )
            undecodable.append(str(path))
            continue
        except OSError as err:
            raise ValProbingError(f"{path}: cannot read ({err.strerror or err})") from err
        texts.append(RawText(str(path), text))
    if not texts:
        skipped = f"; skipped as not UTF-8: {_listed(undecodable)}" if undecodable else ""
        raise ValProbingError(
            f"no raw texts found in {', '.join(map(str, paths))} (.txt, .md or .jsonl){skipped}"
        )
    return Corpus(tuple(texts), tuple(not_read), tuple(undecodable))


def read_texts(paths: Sequence[Path]) -> list[RawText]:
    """The texts of :func:`read_corpus` (without the account of the files not read)."""
    return list(read_corpus(paths).texts)


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
    # Where long contexts put their needed segments (assemble.place_needed): a property of assembly
    # only, so one plan (QA, segments, fillers, seeds) gives both arms of the placement experiment.
    placement: Placement = "uniform"

    def __post_init__(self) -> None:
        lo, hi = self.integration_segments
        if not 2 <= lo <= hi:
            raise ValProbingError(f"integration segments: need 2 <= min <= max, got {lo}..{hi}")
        if self.on_missing_general not in ("renormalise", "error"):
            raise ValProbingError(f"on_missing_general: {self.on_missing_general!r}")
        if self.placement not in PLACEMENTS:
            raise ValProbingError(f"placement: {self.placement!r} is not one of {', '.join(PLACEMENTS)}")


@dataclass(frozen=True, slots=True)
class Planned:
    """One example to assemble: its QA pair, the needed segments, the target context length (None: a
    short context, the segment in its original text) and its own seed (reproducible in any order)."""

    kind: ExampleKind
    pair: QAPair
    needed: tuple[Segment, ...]
    target: int | None
    seed: int


@dataclass(frozen=True, eq=False)
class Synthesis:
    """The plan of a dataset: QA pairs and segment references (small). Contexts are assembled lazily by
    ``examples()``, one at a time, so a paper-scale set (1.75M examples of up to 32K tokens) never has to
    sit in memory. ``manifest`` holds what is known before assembly; ``save_dataset`` adds the context
    length and needle depth histograms as it writes."""

    items: tuple[Planned | TrainingExample, ...]  # in dataset order; TrainingExample = general data
    segmentation: Segmentation
    counter: TokenCounter
    config: SynthesisConfig
    manifest: dict[str, Any]

    def __len__(self) -> int:
        return len(self.items)

    def examples(self) -> Iterator[TrainingExample]:
        by_text = self.segmentation.by_text()
        pool = self.segmentation.segments
        short_max = self.config.short_max_tokens or self.config.length.min_tokens
        for item in self.items:
            if isinstance(item, TrainingExample):
                yield item
            elif item.target is None:
                seg = item.needed[0]
                assembled = short_context(seg, by_text[seg.text_id], short_max, self.counter)
                yield attach("short_context", item.pair, item.needed, assembled)
            else:
                rng = random.Random(item.seed)
                config = self.config
                assembled = assemble_context(
                    item.needed, pool, item.target, self.counter, config.length, rng, config.placement
                )
                yield attach(item.kind, item.pair, item.needed, assembled)

    def with_placement(self, placement: Placement) -> Synthesis:
        """The same plan (QA pairs, needed segments, fillers, seeds) assembled with another placement."""
        return dataclasses.replace(self, config=dataclasses.replace(self.config, placement=placement))


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


def check_fillable(segmentation: Segmentation, length: LengthRange) -> None:
    """Fail before any QA is generated when the corpus cannot fill the longest contexts (a cheap bound:
    the largest text's segments are excluded from its own fillers, so they may not count)."""
    total = sum(s.n_tokens for s in segmentation.segments)
    largest = max(sum(s.n_tokens for s in segs) for segs in segmentation.by_text().values())
    if total - largest < length.max_tokens - length.slack_tokens:
        raise ContextRangeError(
            f"could not fill contexts of up to {length.max_tokens} tokens: the corpus holds "
            f"{total} tokens in {len(segmentation.segments)} segments, and fillers come from other texts "
            f"than the needle's; lower --max-context or add texts"
        )


def _plan_examples(
    requests: Sequence[QARequest],
    pairs: dict[int, QAPair],
    n_short: int,
    config: SynthesisConfig,
    rng: random.Random,
) -> list[Planned]:
    """Accepted pairs -> planned examples; the last ``n_short`` fine-grained requests get short contexts,
    the others target lengths spread evenly over the range."""
    fine = [i for i, r in enumerate(requests) if r.kind == "fine_grained"]
    short_ids = set(fine[len(fine) - n_short :]) if n_short else set()
    long_ids = [i for i in sorted(pairs) if i not in short_ids]
    targets = dict(zip(long_ids, spread_targets(len(long_ids), config.length, rng), strict=True))
    return [
        Planned(
            kind="short_context" if i in short_ids else requests[i].kind,
            pair=pairs[i],
            needed=requests[i].segments,
            target=targets.get(i),
            seed=rng.getrandbits(64),
        )
        for i in sorted(pairs)
    ]


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
    """Filter, segment, plan the mixture, generate the QA pairs and plan every example (contexts are
    assembled later, lazily, by ``Synthesis.examples``)."""
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
    check_fillable(segmentation, config.length)
    requests = plan_requests(
        segmentation, planned["fine_grained"] + planned["short_context"], planned["integration"], config, rng
    )
    result = generator.generate(requests)
    if not result.pairs and requests:
        raise ValProbingError(
            f"no QA pair survived the checks: {len(requests)} requests, rejections "
            f"{dict(result.rejections)}: a generator that cannot answer in JSON (try --structured), "
            "or texts it cannot ask about"
        )
    items: list[Planned | TrainingExample] = [
        *_plan_examples(requests, result.pairs, planned["short_context"], config, rng)
    ]
    if planned["general"]:
        items.extend(rng.sample(list(general or ()), planned["general"]))
    rng.shuffle(items)
    produced = Counter(item.kind for item in items)
    manifest = {
        "seed": config.seed,
        "tokenizer": counter.name,
        "generator": generator.describe(),
        "counts": {"planned": planned, "produced": {k: produced.get(k, 0) for k in planned}},
        "n_examples": len(items),
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
    }
    return Synthesis(tuple(items), segmentation, counter, config, manifest)


class Histogram:
    """Counts of values in [edges[i], edges[i+1]) (the last bin closed); values outside are counted apart."""

    def __init__(self, edges: Sequence[float]) -> None:
        self.edges = list(edges)
        self.counts = [0] * (len(self.edges) - 1)
        self.outside = 0

    def add(self, value: float) -> None:
        i = bisect.bisect_right(self.edges, value) - 1
        if value == self.edges[-1]:
            i = len(self.counts) - 1
        if 0 <= i < len(self.counts):
            self.counts[i] += 1
        else:
            self.outside += 1

    def to_list(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = [
            {"lo": lo, "hi": hi, "count": n}
            for (lo, hi), n in zip(itertools.pairwise(self.edges), self.counts, strict=True)
        ]
        if self.outside:
            rows.append({"lo": None, "hi": None, "count": self.outside})
        return rows


class ExampleStats:
    """Context length and needle depth histograms (depth = first needle token / context tokens), counted
    one example at a time."""

    def __init__(self, length: LengthRange) -> None:
        step = (length.max_tokens - length.min_tokens) / 8
        self.lengths = Histogram([0, *(length.min_tokens + step * i for i in range(9))])
        self.depths = Histogram([i / 10 for i in range(11)])

    def add(self, ex: TrainingExample) -> None:
        if ex.context is not None:
            self.lengths.add(ex.context_tokens)
        for needle in ex.needles:
            self.depths.add(needle.depth)

    def to_dict(self) -> dict[str, Any]:
        return {
            "context_length_histogram": self.lengths.to_list(),
            "needle_depth_histogram": self.depths.to_list(),
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


def _features(template: Template) -> Any:
    from datasets import Features, List, Value

    text = Value("string")
    message = {"role": text, "content": text}
    turn = List(message) if template == "chat" else text
    return Features(
        {
            "prompt": turn,
            "completion": turn,
            "kind": text,
            "context_tokens": Value("int64"),
            "n_segments": Value("int64"),
            "needle_segments": List(Value("int64")),
            "needle_token_offsets": List(Value("int64")),
            "needle_depths": List(Value("float64")),
            "sources": List(text),
        }
    )


def check_dataset_out(out_dir: Path, *, overwrite: bool) -> Path:
    """Before any work: ``out_dir`` can be written (a folder, writable) and does not exist unless
    ``overwrite``; ``OutputError`` / ``ValProbingError`` naming it otherwise."""
    out_dir = check_output_dir(out_dir, "dataset folder")
    if out_dir.exists() and not overwrite:
        raise ValProbingError(f"{out_dir} exists: pass --overwrite or choose another --out")
    return out_dir


def save_dataset(out_dir: Path, synthesis: Synthesis, template: Template, *, overwrite: bool = False) -> Path:
    """``out_dir`` = a ``datasets`` folder (``datasets.load_from_disk``) + ``manifest.json``.

    Examples are assembled and written one at a time (Arrow files on disk, never the whole set in memory);
    everything is built in ``OUT.build`` and renamed into place at the end.
    """
    from datasets import Dataset
    from datasets.exceptions import DatasetGenerationError
    from tqdm.auto import tqdm

    out_dir = check_dataset_out(out_dir, overwrite=overwrite)
    if not len(synthesis):
        raise ValProbingError("no example was planned: nothing to save")
    if template not in ("film", "chat"):
        raise ValProbingError(f"template: {template!r} is not 'film' or 'chat'")
    work = out_dir.with_name(out_dir.name + ".build")
    shutil.rmtree(work, ignore_errors=True)
    stats = ExampleStats(synthesis.config.length)

    def rows() -> Iterator[dict[str, Any]]:
        for ex in tqdm(synthesis.examples(), total=len(synthesis), desc="assembling contexts"):
            stats.add(ex)
            yield to_row(ex, template)

    try:
        placement = synthesis.config.placement
        keyed: list[Any] = [synthesis.manifest, template, out_dir.name]
        if placement != "uniform":  # uniform data keeps the fingerprint (and bytes) it always had
            keyed.append(placement)
        fingerprint = hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:16]
        try:
            dataset = Dataset.from_generator(
                rows, features=_features(template), cache_dir=str(work / "cache"), fingerprint=fingerprint
            )
        except DatasetGenerationError as err:  # errors of our own assembly come out wrapped
            if isinstance(err.__cause__, ValProbingError):
                raise err.__cause__ from None
            raise
        with writing(out_dir, "dataset"):  # a full disk or a vanished folder names --out
            dataset.save_to_disk(str(work / "dataset"))
            manifest = {**synthesis.manifest, **stats.to_dict(), "template": template, "placement": placement}
            (work / "dataset" / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            if out_dir.exists():
                shutil.rmtree(out_dir)
            (work / "dataset").rename(out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out_dir
