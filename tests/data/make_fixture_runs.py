"""Write the small synthetic VAL runs under tests/data/ (deterministic; re-run to regenerate).

    .venv/bin/python tests/data/make_fixture_runs.py

Layout written (exactly what ``lm_eval --output_path tests/data/runs/synthetic --log_samples`` writes):

    runs/synthetic/<model_name_sanitized>/results_<stamp>.json
    runs/synthetic/<model_name_sanitized>/samples_val_<task>_<stamp>.jsonl
    runs/lengths/org__u-model/...     an OLDER run: document only, 3 context lengths in one file
    score/mistral-like_document.json   (a ``val-probing score --json`` file, no samples)

Two models ("org/flat-model": nearly flat; "org/u-model": lost in the middle, a U-shape), three
tasks, 2 sets x 16 positions, 8 buckets. Scores are a closed-form U-shape plus a per-set offset,
not random, so the expected numbers are easy to reason about. The aggregates in results_*.json
are computed from the samples with ``val_probing.buckets.summarize``, as the lm-eval tasks do.
No data from the authors' pools is used: keys and answers are placeholders.
"""

from __future__ import annotations

import json
from pathlib import Path

from val_probing.buckets import ScoredSample, summarize

HERE = Path(__file__).resolve().parent
N_SETS = 2
N_ITEMS = 16
N_BUCKETS = 8
STAMP = "2026-01-02T03-04-05.678901"
OLDER_STAMP = "2026-01-01T00-00-00.000001"
TASKS = ("document", "code", "database")
LM_EVAL_VERSION = "0.4.13"


def score(model: str, task: str, set_id: int, position_id: int, length: int = 4096) -> float:
    """A U-shaped curve: high at both ends, a dip in the middle whose depth grows with ``length``."""
    depth = (position_id + 0.5) / N_ITEMS  # 0 .. 1
    edge = (2 * depth - 1) ** 2  # 1 at the ends, 0 in the middle
    dip = {"org/flat-model": 0.1, "org/u-model": 0.6}[model] * (length / 4096)
    base = {"document": 0.9, "code": 0.8, "database": 0.85}[task]
    value = base - dip * (1 - edge) + (0.04 if set_id == 1 else -0.04)
    return round(min(1.0, max(0.0, value)), 6)


def sample_line(task: str, doc_id: int, set_id: int, position_id: int, length: int, value: float) -> dict:
    doc = {
        "set_id": set_id,
        "position_id": position_id,
        "n_items": N_ITEMS,
        "bucket": position_id * N_BUCKETS // N_ITEMS,
        "context_tokens": length - 7,
        "needle_token_offset": (length - 7) * position_id // N_ITEMS,
        "context_length": length,
        "key": f"{task}-key-{set_id}-{position_id}",
        "answer": f"{task}-answer-{set_id}-{position_id}",
    }
    return {
        "doc_id": doc_id,
        "doc": doc,
        "target": doc["answer"],
        "arguments": {"gen_args_0": {"arg_0": "<prompt>", "arg_1": {"max_gen_toks": 128}}},
        "resps": [[f"placeholder answer {doc_id}"]],
        "filtered_resps": [f"placeholder answer {doc_id}"],
        "filter": "none",
        "metrics": ["ref_score"],
        "ref_score": value,
        "doc_hash": f"{doc_id:064x}",
        "prompt_hash": f"{doc_id:064x}",
        "target_hash": f"{doc_id:064x}",
    }


def _summary(lines: list[dict]):
    # one context per (length, set), as the tasks number them (context_index)
    contexts = {
        key: i
        for i, key in enumerate(sorted({(ln["doc"]["context_length"], ln["doc"]["set_id"]) for ln in lines}))
    }
    samples = [
        ScoredSample(
            contexts[(ln["doc"]["context_length"], ln["doc"]["set_id"])],
            ln["doc"]["position_id"],
            N_ITEMS,
            ln["doc"]["key"],
            ln["ref_score"],
        )
        for ln in lines
    ]
    return summarize(samples, n_buckets=N_BUCKETS, n_boot=None)


def task_block(lines: list[dict], lengths: tuple[int, ...]) -> dict:
    """The task's results block as the tasks write it: ref_score a fraction with lm-eval's stderr
    (sample std / sqrt(n)), avg/gap/buckets x100, and avg_<L>/gap_<L> for several lengths."""
    scores = [ln["ref_score"] for ln in lines]
    mean = sum(scores) / len(scores)
    stderr = (sum((x - mean) ** 2 for x in scores) / (len(scores) - 1) / len(scores)) ** 0.5
    summary = _summary(lines)
    block: dict = {"alias": "", "ref_score,none": mean, "ref_score_stderr,none": stderr}
    block["avg,none"] = summary.avg
    block["gap,none"] = summary.gap
    if len(lengths) > 1:
        for length in lengths:
            at = _summary([ln for ln in lines if ln["doc"]["context_length"] == length])
            block[f"avg_{length},none"] = at.avg
            block[f"gap_{length},none"] = at.gap
    for b in summary.buckets:
        block[f"bucket_{b.index:02d},none"] = b.mean
    return block


def write_run(
    root: Path, model: str, tasks: tuple[str, ...], lengths: tuple[int, ...], stamp: str = STAMP
) -> None:
    sanitized = model.replace("/", "__")
    out = root / sanitized
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    configs: dict = {}
    n_samples: dict = {}
    for task in tasks:
        name = f"val_{task}"
        lines = []
        for length in lengths:
            for set_id in range(N_SETS):
                for pos in range(N_ITEMS):
                    value = score(model, task, set_id, pos, length)
                    lines.append(sample_line(task, len(lines), set_id, pos, length, value))
        with (out / f"samples_{name}_{stamp}.jsonl").open("w", encoding="utf-8") as handle:
            for line in lines:
                handle.write(json.dumps(line) + "\n")
        block = task_block(lines, lengths)
        block["alias"] = name
        results[name] = block
        configs[name] = {
            "task": name,
            "output_type": "generate_until",
            "metadata": {
                "source": "built",
                "context_length": lengths[0] if len(lengths) == 1 else list(lengths),
                "pool": "embedded",
                "seed": 0,
                "n_buckets": N_BUCKETS,
                "probe_version": 1,
                "probe_hash": "0" * 16,
            },
        }
        n_samples[name] = {"original": len(lines), "effective": len(lines)}
    if len(tasks) > 1:
        results = {
            "valprobing": {
                "alias": "valprobing",
                "avg,none": sum(b["avg,none"] for b in results.values()) / len(results),
                "gap,none": sum(b["gap,none"] for b in results.values()) / len(results),
            },
            **results,
        }
    data = {
        "results": results,
        "groups": {"valprobing": results.get("valprobing", {})},
        "group_subtasks": {"valprobing": [f"val_{t}" for t in tasks]},
        "configs": configs,
        "versions": {f"val_{t}": 1.0 for t in tasks},
        "n-shot": {f"val_{t}": 0 for t in tasks},
        "n-samples": n_samples,
        "config": {
            "model": "vllm",
            "model_args": {"pretrained": model, "max_model_len": 8192},  # a dict, as lm-eval 0.4.13 writes
            "batch_size": "auto",
            "limit": None,
        },
        "lm_eval_version": LM_EVAL_VERSION,
        "model_source": "vllm",
        "model_name": model,
        "model_name_sanitized": sanitized,
        "date": 1767322245.0,
    }
    (out / f"results_{stamp}.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def write_score_json(path: Path) -> None:
    samples = [
        ScoredSample(s, p, N_ITEMS, "", score("org/u-model", "document", s, p, 8192))
        for s in range(N_SETS)
        for p in range(N_ITEMS)
    ]
    data = {"task": "document", **summarize(samples, n_buckets=N_BUCKETS, n_boot=200).to_dict()}
    data.update(n_rows=len(samples), n_skipped=0, skip_source="data")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def main() -> None:
    for model in ("org/flat-model", "org/u-model"):
        write_run(HERE / "runs" / "synthetic", model, TASKS, (4096,))
    # an OLDER run of the same model at three lengths: its 4096 result is superseded by the run above
    write_run(HERE / "runs" / "lengths", "org/u-model", ("document",), (1024, 2048, 4096), OLDER_STAMP)
    write_score_json(HERE / "score" / "mistral-like_document.json")


if __name__ == "__main__":
    main()
