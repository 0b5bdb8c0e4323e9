"""VAL probing: where in the context does a long-context LLM stop reading?

The package's rooms are its modules, each imported by name (docs/architecture.md): ``val_probing.build``
for probes, ``val_probing.lm_eval_adapter`` for the lm-eval task, ``val_probing.evaluate`` to run it,
``val_probing.results`` / ``plots`` / ``tables`` for what a run gave, ``val_probing.gate`` for CI.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
