"""The page itself: the data JSON, the script and the style inlined into one HTML file, and
:func:`write_html`, which loads runs, checks the output path first and writes the file atomically."""

from __future__ import annotations

import html as html_text
import json
import logging
import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from val_probing.errors import ValProbingError
from val_probing.files import check_output_file, check_paths, write_text_atomic
from val_probing.results import DEFAULT_N_BOOT, PathLike, TaskResult, load_results
from val_probing.results.load import RUN_FILES
from val_probing.webpage.data import DEFAULT_ANSWER_CHARS, page_data

log = logging.getLogger(__name__)

# No request of any kind: the page is read offline, and a shared page must not call home.
CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"


def _asset(name: str) -> str:
    return resources.files("val_probing.webpage").joinpath(name).read_text(encoding="utf-8")


def _json_for_script(data: Mapping[str, Any]) -> str:
    """JSON that cannot end its ``<script>`` element early (``</`` and ``<!--`` escaped)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render_html(data: Mapping[str, Any]) -> str:
    """The whole page for :func:`val_probing.webpage.page_data`'s dict."""
    title = html_text.escape(str(data.get("title", "VAL probing")))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n<style>\n{_asset('page.css')}</style>\n</head>\n<body>\n"
        f'<header><h1>{title}</h1><p id="subtitle"></p></header>\n'
        '<main id="app"><noscript>This report draws its figures with JavaScript.</noscript></main>\n'
        f'<script type="application/json" id="val-data">{_json_for_script(data)}</script>\n'
        f"<script>\n{_asset('page.js')}</script>\n</body>\n</html>\n"
    )


def _order(results: Sequence[TaskResult], paths: Sequence[Path]) -> list[str]:
    """Models in the order of the paths that hold them (the first given is "before")."""

    def rank(result: TaskResult) -> int:
        source = result.source.resolve()
        for i, given in enumerate(paths):
            root = given.resolve()
            if source == root or root in source.parents:
                return i
        return len(paths)

    ordered = sorted(results, key=lambda r: (rank(r), r.model))
    return list(dict.fromkeys(r.model for r in ordered))


def gate_blocks(results: Sequence[TaskResult], baseline: Path) -> list[dict[str, Any]]:
    """The gate's verdict per model of ``results`` against ``baseline`` (its public API: read the
    baseline, check, print the verdict and its table); a model it cannot compare gets the reason."""
    from val_probing.gate import GateInputError, check, format_table, read_baseline, verdict

    base = read_baseline(baseline)
    blocks: list[dict[str, Any]] = []
    for model in sorted({r.model for r in results if not r.closed_book}):
        mine = [r for r in results if r.model == model and not r.closed_book]
        try:
            result = check(base, mine)
        except GateInputError as err:
            blocks.append({"model": model, "verdict": f"not compared: {err}", "passed": None})
            continue
        blocks.append(
            {
                "model": model,
                "verdict": verdict(result),
                "passed": result.passed,
                "notes": list(result.notes),
                "table": format_table(result),
            }
        )
    return blocks


def write_html(
    runs: PathLike | Sequence[PathLike],
    out: PathLike,
    *,
    baseline: PathLike | None = None,
    title: str | None = None,
    answer_chars: int = DEFAULT_ANSWER_CHARS,
    min_avg: float | None = None,
    max_gap: float | None = None,
    n_boot: int = DEFAULT_N_BOOT,
) -> Path:
    """Write the page of the runs under ``runs`` (folders or files, as ``load_results`` takes) to
    ``out``; return its path. The output path is checked before anything is loaded: never one of the
    runs' files, the baseline or its samples file (the one output rule, ``outputs.check_paths``)."""
    paths = [Path(runs)] if isinstance(runs, str | os.PathLike) else [Path(p) for p in runs]
    if not paths:
        raise ValProbingError("no runs given")
    inputs: dict[str, list[Path]] = {"runs": paths}
    if baseline is not None:
        from val_probing.gate import samples_files_beside

        inputs["baseline"] = [Path(baseline), *samples_files_beside(Path(baseline))]
    check_paths(inputs=inputs, outputs={"out": Path(out)}, input_files=RUN_FILES)
    target = check_output_file(Path(out), "HTML report")
    if answer_chars < 1:
        raise ValProbingError(f"answer_chars: {answer_chars} is not positive")
    results = load_results(paths, n_boot=n_boot, closed_book=True)
    if all(r.closed_book for r in results):
        raise ValProbingError(
            "only closed-book runs given: they are floors, a curve needs a run with context"
        )
    gate = gate_blocks(results, Path(baseline)) if baseline is not None else []
    data = page_data(
        results,
        order=_order(results, paths),
        title=title,
        answer_chars=answer_chars,
        min_avg=min_avg,
        max_gap=max_gap,
        gate=gate,
    )
    write_text_atomic(target, render_html(data))
    log.info("wrote %s (%.0f KiB)", target, target.stat().st_size / 1024)
    return target
