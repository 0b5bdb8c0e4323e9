"""The saved ``datasets`` folder and its manifest: the rows in the FILM or chat template."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from val_probing.errors import ValProbingError
from val_probing.files import (
    check_output_dir,
    check_removable,
    remove_orphans,
    write_folder_manifest,
    writing,
)
from val_probing.in2.assemble import TrainingExample
from val_probing.in2.dataset.pipeline import ExampleStats, Synthesis

FILM_PROMPT = (
    "[INST] Below is a context and an instruction. Based on the information provided in the context, "
    "write a response for the instruction.\n\n### Context:\n{context}\n\n"
    "### Instruction:\n{instruction} [/INST]"
)
FILM_BODY = FILM_PROMPT.removeprefix("[INST] ").removesuffix(" [/INST]")
Template = Literal["film", "chat"]
# the key of the folder manifest (paths.FOLDER_MANIFEST) that marks a dataset as val-probing's own:
# --overwrite removes nothing else
DATASET_KEY = "in2 training dataset"


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
    ``overwrite``, and then only as a dataset val-probing wrote (never the current folder or one
    above it); ``OutputError`` / ``ValProbingError`` naming it otherwise."""
    out_dir = check_output_dir(out_dir, "dataset folder", temporary=True)
    if out_dir.exists() and not overwrite:
        raise ValProbingError(f"{out_dir} exists: pass --overwrite or choose another --out")
    if out_dir.exists():
        real, here = Path(os.path.realpath(out_dir)), Path.cwd().resolve()
        if real == here or here.is_relative_to(real):
            raise ValProbingError(f"{out_dir}: the current folder (or one above it): choose another --out")
        check_removable(out_dir, DATASET_KEY)
    return out_dir


def save_dataset(
    out_dir: Path,
    synthesis: Synthesis,
    template: Template,
    *,
    overwrite: bool = False,
    depth_bins: int = 10,
) -> Path:
    """``out_dir`` = a ``datasets`` folder (``datasets.load_from_disk``) + ``manifest.json``.

    Examples are assembled and written one at a time (Arrow files on disk, never the whole set in memory);
    everything is built in ``OUT.build`` and renamed into place at the end. The manifest's needle depth
    histogram has ``depth_bins`` equal bins (see ``ExampleStats``).
    """
    from datasets import Dataset
    from datasets.exceptions import DatasetGenerationError
    from tqdm.auto import tqdm

    stats = ExampleStats(synthesis.config.length, depth_bins)  # a bad depth_bins fails before any work
    out_dir = check_dataset_out(out_dir, overwrite=overwrite)
    if not len(synthesis):
        raise ValProbingError("no example was planned: nothing to save")
    if template not in ("film", "chat"):
        raise ValProbingError(f"template: {template!r} is not 'film' or 'chat'")
    asked, out_dir = out_dir, Path(os.path.realpath(out_dir))  # a symbolic link: its target is written
    # the work folder is named like records.atomic_path's temporary files, so a killed run's is removed
    work = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.tmp")
    remove_orphans(out_dir.parent, out_dir.name)

    def rows() -> Iterator[dict[str, Any]]:
        for ex in tqdm(synthesis.examples(), total=len(synthesis), desc="assembling contexts"):
            stats.add(ex)
            yield to_row(ex, template)

    try:
        placement = synthesis.config.placement
        keyed: list[Any] = [synthesis.manifest, template, asked.name]
        if placement != "uniform":  # uniform data keeps the fingerprint (and bytes) it always had
            keyed.append(placement)
        fingerprint = hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:16]
        # a full disk, a vanished folder or one the checks could not foresee (/proc) names --out
        with writing(out_dir, "dataset"):
            try:
                dataset = Dataset.from_generator(
                    rows, features=_features(template), cache_dir=str(work / "cache"), fingerprint=fingerprint
                )
            except DatasetGenerationError as err:  # errors of our own assembly come out wrapped
                if isinstance(err.__cause__, ValProbingError):
                    raise err.__cause__ from None
                raise
            dataset.save_to_disk(str(work / "dataset"))
            manifest = {**synthesis.manifest, **stats.to_dict(), "template": template, "placement": placement}
            (work / "dataset" / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            write_folder_manifest(work / "dataset", DATASET_KEY, record_times=False)
            if out_dir.exists():
                check_removable(out_dir, DATASET_KEY)  # again: the user may have added files since
                shutil.rmtree(out_dir)
            (work / "dataset").rename(out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return asked
