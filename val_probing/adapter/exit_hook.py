"""A VAL error raised inside lm-eval's own CLI ends as one line and exit status 2, as in ``val-probing``.

lm-eval's ``lm_eval`` command has no error handler: an exception from a task (bad metadata, a
prompt longer than the model) reaches the interpreter, which prints lm-eval's whole traceback and
exits 1. :func:`install` (called when a VAL task is constructed, never at import) chains a
``sys.excepthook`` that, for an error of ours (:class:`val_probing.errors.ValProbingError`, also
when lm-eval re-raised it from another exception), prints ``lm_eval: error: <message>`` and exits 2;
every other exception goes to the previous hook unchanged. Only under the ``lm_eval`` command itself:
the Python API (``simple_evaluate``), notebooks and ``val-probing eval`` keep their own handling.
``VAL_PROBING_TRACEBACK=1`` keeps the full traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import TracebackType

from val_probing.errors import ValProbingError

TRACEBACK_ENV = "VAL_PROBING_TRACEBACK"
EXIT_USAGE = 2


def _ours(exc: BaseException | None) -> ValProbingError | None:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, ValProbingError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _under_lm_eval_cli() -> bool:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(spec, "name", "") == "lm_eval.__main__":
        return True
    return Path(sys.argv[0]).name in ("lm_eval", "lm-eval") if sys.argv else False


def install() -> None:
    """Chain the hook once, only when the process is lm-eval's ``lm_eval`` command."""
    if getattr(sys.excepthook, "_val_probing", False) or not _under_lm_eval_cli():
        return
    previous = sys.excepthook

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        ours = _ours(exc)
        if ours is None or os.environ.get(TRACEBACK_ENV):
            previous(kind, exc, tb)
            return
        print(f"lm_eval: error: {ours} (a VAL probing error; {TRACEBACK_ENV}=1 shows the traceback)",
              file=sys.stderr, flush=True)  # fmt: skip
        sys.exit(EXIT_USAGE)  # raised inside the hook, the interpreter exits with this status

    hook._val_probing = True  # type: ignore[attr-defined]
    sys.excepthook = hook
