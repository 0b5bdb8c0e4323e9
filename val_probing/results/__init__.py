"""Saved VAL results as typed records; the public names of the four modules, re-exported.

* :mod:`~val_probing.results.task_result`: :class:`TaskResult`, :class:`ResultsError`, task/model names;
* :mod:`~val_probing.results.readers`: lm-eval samples files, aggregates and ``score --json`` summaries;
* :mod:`~val_probing.results.load`: :func:`load_results` over files and folders (what is accepted,
  how bad input is reported: its docstring);
* :mod:`~val_probing.results.frame`: CIs on request and the DataFrame of the notebooks.
"""

from val_probing.results.frame import (
    DEFAULT_N_BOOT,
    FRAME_COLUMNS,
    ensure_ci,
    frame_records,
    has_ci,
    results_frame,
    with_ci,
)
from val_probing.results.load import (
    PathLike,
    find_results_files,
    keep_latest,
    load_results,
    load_results_file,
)
from val_probing.results.readers import (
    bucket_count,
    read_samples,
    score_response,
    summary_from_aggregates,
    summary_from_dict,
)
from val_probing.results.task_result import (
    NAN,
    TASK_PREFIX,
    ResultsError,
    TaskResult,
    display_name,
    run_stamp,
    task_family,
)

__all__ = [
    "DEFAULT_N_BOOT",
    "FRAME_COLUMNS",
    "NAN",
    "TASK_PREFIX",
    "PathLike",
    "ResultsError",
    "TaskResult",
    "bucket_count",
    "display_name",
    "ensure_ci",
    "find_results_files",
    "frame_records",
    "has_ci",
    "keep_latest",
    "load_results",
    "load_results_file",
    "read_samples",
    "results_frame",
    "run_stamp",
    "score_response",
    "summary_from_aggregates",
    "summary_from_dict",
    "task_family",
    "with_ci",
]
