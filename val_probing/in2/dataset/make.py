"""From files to a saved training set: what ``val-probing train synthesize`` runs, below the CLI.

:func:`make_dataset` reads the texts (and the general instructions), builds the contamination filter from
the VAL probe files and the official data (:func:`probe_index`), runs :func:`~.pipeline.synthesize`,
records where its inputs came from in the manifest and saves the dataset (:func:`~.save.save_dataset`).
The caller checks the paths and builds the QA generator first, so nothing is read before a bad flag
is refused.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Sequence
from pathlib import Path

from val_probing.in2.contamination import ProbeIndex
from val_probing.in2.dataset.corpus import read_corpus, read_general
from val_probing.in2.dataset.pipeline import Synthesis, SynthesisConfig, synthesize
from val_probing.in2.dataset.save import Template, save_dataset
from val_probing.in2.qa import QAGenerator
from val_probing.official import load_official
from val_probing.records import FAMILIES, read_probes
from val_probing.token_counters import TokenCounter

log = logging.getLogger(__name__)


def probe_index(probe_files: Sequence[Path], official: Path | None = None) -> ProbeIndex | None:
    """The contamination filter over the probes of ``probe_files`` (``val-probing build`` JSONL) and the
    official splits in ``official``; None, with a warning, when neither is given."""
    probes = [ex for path in probe_files for ex in read_probes(path)]
    if official:
        for family in FAMILIES:
            probes.extend(load_official(family, data=official))
    if not probes:
        log.warning("no --probes / --official given: the contamination filter is off")
        return None
    return ProbeIndex.build(probes)


def make_dataset(
    texts: Sequence[Path],
    out: Path,
    *,
    counter: TokenCounter,
    generator: QAGenerator,
    config: SynthesisConfig,
    template: Template,
    general: Path | None = None,
    probe_files: Sequence[Path] = (),
    official: Path | None = None,
    overwrite: bool = False,
) -> tuple[Synthesis, Path]:
    """The training set synthesised from ``texts`` and saved to ``out``: (the synthesis, its folder)."""
    corpus = read_corpus(texts)
    synthesis = synthesize(
        list(corpus.texts),
        counter,
        generator,
        config,
        random.Random(config.seed),
        general=read_general(general) if general else None,
        probes=probe_index(probe_files, official),
    )
    sources = {
        "texts": [str(p) for p in texts],
        "corpus": corpus.to_manifest(),
        "general": str(general) if general else None,
        "probes": [str(p) for p in probe_files],
        "official": str(official) if official else None,
    }
    synthesis = dataclasses.replace(synthesis, manifest={**synthesis.manifest, "sources": sources})
    return synthesis, save_dataset(out, synthesis, template, overwrite=overwrite)
