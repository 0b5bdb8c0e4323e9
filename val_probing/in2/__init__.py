"""IN2 data synthesis (arXiv 2404.16811, Section 2): information-intensive data for FILM-style models.

Modules, in pipeline order:

* ``segment``: raw texts -> 128-token segments (Algorithm 1).
* ``contamination``: drop raw texts sharing a word 10-gram with any evaluation probe.
* ``qa``: fine-grained and integration QA through an OpenAI-compatible endpoint (or an offline,
  deterministic ``ExtractiveLocalGenerator``), with retries, a resumable cache and rejection checks.
* ``assemble``: long contexts (needed segments among random fillers, 4K-32K tokens) and the data mixture.
* ``dataset``: the pipeline (``synthesize``), its inputs, and the saved ``datasets`` folder + manifest;
  ``make_dataset``, from files to that folder (what ``val-probing train synthesize`` runs).
* ``recipe_settings``: the training recipe's settings (``training/recipes/in2_sft.py``) and its length
  checks.
* ``experiment``: issue 13's placement experiment (``val-probing train experiment``), stage by stage.

``qa``, ``dataset`` and ``experiment`` are subpackages; each re-exports its public names.

The recipes live in the top-level ``training/`` (installed as ``val_probing.training``); ``val-probing train``
drives both halves.
"""
