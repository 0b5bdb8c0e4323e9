"""Benchmark: build probes of the official size with SmolLM2's fast tokenizer, against naive tokenization.

Official size: 3 families x 4 sets at 32K tokens, one question per item (every position; the paper's
800 / 750 positions are a subset). The builder tokenizes each pool item once and each context once.
The naive way tokenizes every prompt (context + instruction); its cost is measured on a sample of
prompts and extrapolated to all of them (said so in the output). Target: the whole build < 60 s.

    .venv/bin/python bench/bench_build.py [--length 32768] [--sets 4] [--sample 6] [--pool embedded]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

from val_probing.build import ProbeSpec, build_probes
from val_probing.embedded import embedded_tokenizer_dir
from val_probing.pools import load_pool
from val_probing.records import FAMILIES
from val_probing.token_counters import HFTokenCounter

TARGET_S = 60.0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--length", type=int, default=32768)
    parser.add_argument("--sets", type=int, default=4)
    parser.add_argument("--sample", type=int, default=6, help="prompts per family timed the naive way")
    parser.add_argument("--pool", default="embedded", help="embedded | film | PATH (default: %(default)s)")
    args = parser.parse_args()

    t0 = time.perf_counter()
    counter = HFTokenCounter.load(str(embedded_tokenizer_dir()))
    load_s = time.perf_counter() - t0
    print(f"tokenizer: SmolLM2-135M-Instruct (fast), loaded in {load_s:.2f} s")
    print(
        f"size: {len(FAMILIES)} families x {args.sets} sets x every item, {args.length} tokens, "
        f"{args.pool} pools\n"
    )
    head = ("family", "prompts", "items/set", "tokens/set", "build s", "naive s*", "ratio")
    print(f"{head[0]:<9} {head[1]:>7} {head[2]:>9} {head[3]:>10} {head[4]:>8} {head[5]:>9} {head[6]:>7}")

    total_build = total_naive = 0.0
    total_prompts = 0
    for family in FAMILIES:
        items = load_pool(family, args.pool)
        spec = ProbeSpec(
            family=family, length=args.length, tokenizer=counter.name, pool=args.pool, sets=args.sets
        )
        t0 = time.perf_counter()
        examples = build_probes(spec, counter, items, random.Random(spec.seed))
        build_s = time.perf_counter() - t0

        sample = random.Random(1).sample(examples, min(args.sample, len(examples)))
        per_prompt = []
        for ex in sample:
            t0 = time.perf_counter()
            counter.count(f"{ex.context}\n\n{ex.instruction}")
            per_prompt.append(time.perf_counter() - t0)
        naive_s = statistics.mean(per_prompt) * len(examples)

        per_set = {ex.set_id: (ex.n_items, ex.context_tokens) for ex in examples}
        items_per_set = statistics.mean(n for n, _ in per_set.values())
        tokens_per_set = statistics.mean(t for _, t in per_set.values())
        print(
            f"{family:<9} {len(examples):>7} {items_per_set:>9.0f} {tokens_per_set:>10.0f} {build_s:>8.2f} "
            f"{naive_s:>9.1f} {naive_s / build_s:>6.0f}x"
        )
        total_build += build_s
        total_naive += naive_s
        total_prompts += len(examples)

    print(
        f"{'total':<9} {total_prompts:>7} {'':>9} {'':>10} {total_build:>8.2f} {total_naive:>9.1f} "
        f"{total_naive / total_build:>6.0f}x"
    )
    print(
        f"\n* naive = tokenizing every prompt once (context + instruction), extrapolated from {args.sample} "
        "timed prompts per family;\n  it would still need one more tokenization per prompt for the "
        "needle offset."
    )
    verdict = "OK" if total_build < TARGET_S else "OVER TARGET"
    print(
        f"whole build: {total_build:.1f} s (+ {load_s:.1f} s tokenizer load); "
        f"target < {TARGET_S:.0f} s: {verdict}"
    )
    return 0 if total_build < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
