"""What produced a run, read from its lm-eval results file: the environment and its own aggregates.

The environment is what can change greedy outputs without a code change: the backend, the serving
settings (dtype, prefix caching, tensor / data parallel size), the model revision, the chat template
and the package versions (``configs.<task>.metadata.versions``, written by val-probing's tasks from
:func:`val_probing.environment.package_versions`; lm-eval itself records only its own and
transformers' versions). A field the file does not record is ``None`` ("unknown"), never guessed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from val_probing.results import TaskResult
from val_probing.typed import is_number

# model_args keys that can change outputs, under the name the baseline records them by
_MODEL_ARGS = {
    "dtype": "dtype",
    "enable_prefix_caching": "prefix_caching",
    "tensor_parallel_size": "tensor_parallel_size",
    "data_parallel_size": "data_parallel_size",
    "revision": "revision",
    "quantization": "quantization",
    "max_model_len": "max_model_len",
}
# the recorded fields, in the order they are printed (versions.<package> follow)
FIELDS = ("backend", *_MODEL_ARGS.values(), "chat_template_sha", "transformers", "lm-eval")


def _results_json(path: Path) -> Mapping[str, Any] | None:
    """The results file as a mapping, or None where the result did not come from one."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("results"), dict) else None


def _model_args(value: object) -> dict[str, Any]:
    """lm-eval's ``config.model_args``: a mapping, or its command-line form ``k=v,k=v``."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        pairs = (part.split("=", 1) for part in value.split(",") if "=" in part)
        return {k.strip(): v.strip() for k, v in pairs}
    return {}


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text.lower() if text.lower() in ("true", "false") else text  # True (JSON) = True (k=v form)


def environment_of(data: Mapping[str, Any]) -> dict[str, str | None]:
    """The environment recorded in one lm-eval results file (see the module docstring)."""
    config: Mapping[str, Any] = data["config"] if isinstance(data.get("config"), dict) else {}
    args = _model_args(config.get("model_args"))
    env: dict[str, str | None] = {"backend": _text(config.get("model"))}
    for key, name in _MODEL_ARGS.items():
        env[name] = _text(args.get(key))
    env["chat_template_sha"] = _text(data.get("chat_template_sha"))
    env["transformers"] = _text(data.get("transformers_version"))
    env["lm-eval"] = _text(data.get("lm_eval_version"))
    configs: Mapping[str, Any] = data["configs"] if isinstance(data.get("configs"), dict) else {}
    for task_config in configs.values():
        meta = task_config.get("metadata") if isinstance(task_config, dict) else None
        versions = meta.get("versions") if isinstance(meta, dict) else None
        if isinstance(versions, dict):
            for package, version in sorted(versions.items()):
                env.setdefault(f"versions.{package}", _text(version))
    for package in ("vllm", "torch"):  # unknown in runs made before the tasks recorded versions
        env.setdefault(f"versions.{package}", None)
    return env


def run_environment(results: Sequence[TaskResult]) -> dict[str, str | None]:
    """The environment of a run: that of its results files (empty when none is an lm-eval file)."""
    env: dict[str, str | None] = {}
    for source in sorted({r.source for r in results}):
        data = _results_json(source)
        if data is not None:
            for key, value in environment_of(data).items():
                if env.get(key) is None:
                    env[key] = value
    return env


def environment_differences(baseline: Mapping[str, str | None], run: Mapping[str, str | None]) -> list[str]:
    """``name: baseline X, run Y`` for every field that differs (unknown on one side counts)."""
    out = []
    ordered = [*FIELDS, *sorted(k for k in {*baseline, *run} if k not in FIELDS)]
    for key in ordered:
        if key not in baseline and key not in run:
            continue
        old, new = baseline.get(key), run.get(key)
        if old != new:
            out.append(f"{key}: baseline {old or 'unknown'}, run {new or 'unknown'}")
    return out


def self_disagreements(results: Sequence[TaskResult]) -> list[str]:
    """Tasks whose results file reports other aggregates than its own samples give (x100, 0.01)."""
    out = []
    for r in results:
        if not r.has_samples:
            continue
        data = _results_json(r.source)
        block = (data or {}).get("results", {}).get(f"val_{r.task}")
        if not isinstance(block, dict):
            continue
        lengths = r.metadata.get("context_length")
        if isinstance(lengths, list) and len(lengths) > 1:
            continue  # several lengths in one task: the file's aggregates pool them
        actual = {"avg": r.summary.avg, **{f"bucket_{b.index:02d}": b.mean for b in r.summary.buckets}}
        wrong = []
        for k, value in actual.items():
            got = block.get(f"{k},none")
            if not is_number(got):
                continue  # not recorded (a predict-only run): nothing to disagree with
            if not (math.isfinite(got) and abs(got - value) <= 0.01):
                wrong.append(f"{k} {got:.2f} in the file, {value:.2f} from the samples")
        if wrong:
            out.append(
                f"the run's results file {r.source} disagrees with its own samples for {r.task}: "
                f"{'; '.join(wrong[:3])}{' ...' if len(wrong) > 3 else ''} (the samples are what is checked)"
            )
    return out
