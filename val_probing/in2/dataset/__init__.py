"""From raw texts to a training set: the synthesis pipeline, its inputs, and the saved dataset + manifest.

``synthesize`` is pure given its inputs (texts, token counter, QA generator, random.Random): contamination
filter -> segmentation -> mixture plan -> QA generation -> context assembly -> examples and a manifest.
``save_dataset`` writes a ``datasets`` folder (``save_to_disk``) with ``prompt``/``completion`` columns
plus per-example metadata, and ``manifest.json``; it writes to a temporary folder and renames it, so a
failed run never leaves a half-written dataset. ``make_dataset`` is the two from files (what
``val-probing train synthesize`` runs).
"""

from val_probing.in2.dataset.corpus import TEXT_SUFFIXES, Corpus, read_corpus, read_general, read_texts
from val_probing.in2.dataset.make import make_dataset, probe_index
from val_probing.in2.dataset.pipeline import (
    ExampleStats,
    Histogram,
    Planned,
    Synthesis,
    SynthesisConfig,
    check_fillable,
    plan_requests,
    resolve_ratios,
    synthesize,
)
from val_probing.in2.dataset.save import (
    FILM_BODY,
    FILM_PROMPT,
    Template,
    check_dataset_out,
    save_dataset,
    to_row,
)

__all__ = [
    "FILM_BODY",
    "FILM_PROMPT",
    "TEXT_SUFFIXES",
    "Corpus",
    "ExampleStats",
    "Histogram",
    "Planned",
    "Synthesis",
    "SynthesisConfig",
    "Template",
    "check_dataset_out",
    "check_fillable",
    "make_dataset",
    "plan_requests",
    "probe_index",
    "read_corpus",
    "read_general",
    "read_texts",
    "resolve_ratios",
    "save_dataset",
    "synthesize",
    "to_row",
]
