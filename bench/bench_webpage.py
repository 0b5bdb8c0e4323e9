"""Size (and build time) of the HTML report at the official layout: N models x VaLProbing-32K.

    .venv/bin/python bench/bench_webpage.py [--models 3] [--answer-chars 2000] [--keep DIR]

Writes synthetic lm-eval runs of the official size (document and code: 4 sets x 800 positions,
16 buckets; database: 4 x 750, 15 buckets) with texts of realistic length (document keys and gold
sentences ~180 characters, code snippets ~60 and names ~25, database entities ~30, answers of
128 new tokens ~520 characters), then builds the page and prints its size. Figures: docs/plots.md.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

LAYOUT = {"document": (4, 800, 16), "code": (4, 800, 16), "database": (4, 750, 15)}
TEXT = {"document": (180, 180), "code": (60, 25), "database": (30, 30)}  # key, gold characters
ANSWER = 520
STAMP = "2026-01-02T03-04-05.678901"
WORDS = [
    "the",
    "of",
    "model",
    "context",
    "needle",
    "position",
    "answer",
    "retrieval",
    "function",
    "entity",
    "sentence",
    "code",
]


def text(rng: random.Random, chars: int) -> str:
    out: list[str] = []
    while sum(len(w) + 1 for w in out) < chars:
        out.append(rng.choice(WORDS))
    return " ".join(out)[:chars]


def write_run(root: Path, model: str, seed: int) -> None:
    rng = random.Random(seed)
    folder = root / model.replace("/", "__")
    folder.mkdir(parents=True)
    results: dict[str, dict[str, float]] = {}
    configs = {}
    for task, (sets, positions, buckets) in LAYOUT.items():
        key_chars, gold_chars = TEXT[task]
        keys = random.Random(task)  # the same questions for every model
        with (folder / f"samples_val_{task}_{STAMP}.jsonl").open("w", encoding="utf-8") as handle:
            for set_id in range(sets):
                for position in range(positions):
                    doc = {
                        "family": task,
                        "set_id": set_id,
                        "position_id": position,
                        "n_items": positions,
                        "depth": (position + 0.5) / positions,
                        "key": text(keys, key_chars),
                        "answer": text(keys, gold_chars),
                        "description": None,
                    }
                    line = {
                        "doc": doc,
                        "filtered_resps": [text(rng, ANSWER)],
                        "filter": "none",
                        "ref_score": float(rng.random() < 0.7),
                    }
                    handle.write(json.dumps(line) + "\n")
        results[f"val_{task}"] = {"avg,none": 70.0, "gap,none": 10.0}
        configs[f"val_{task}"] = {"metadata": {"n_buckets": buckets, "source": "official", "probe_hash": "x"}}
    data = {
        "results": results,
        "configs": configs,
        "config": {"model": "vllm", "model_args": {"pretrained": model}},
        "model_name": model,
        "lm_eval_version": "0.4.13",
        "date": 1795520012.0,
    }
    (folder / f"results_{STAMP}.json").write_text(json.dumps(data), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--answer-chars", type=int, default=2000)
    parser.add_argument("--keep", type=Path, help="write the runs and the page here (default: a temp folder)")
    args = parser.parse_args()

    from val_probing.webpage import write_html

    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        runs = [root / f"run{i}" for i in range(args.models)]
        for i, run in enumerate(runs):
            write_run(run, f"org/model-{i}", seed=i)
        questions = sum(s * p for s, p, _b in LAYOUT.values())
        start = time.perf_counter()
        page = write_html(runs, root / "report.html", answer_chars=args.answer_chars, n_boot=200)
        seconds = time.perf_counter() - start
        size = page.stat().st_size
        print(
            f"{args.models} models x {questions} questions (official 32K layout), answers <= "
            f"{args.answer_chars} chars: page {size / 2**20:.1f} MiB, built in {seconds:.1f} s"
        )


if __name__ == "__main__":
    main()
