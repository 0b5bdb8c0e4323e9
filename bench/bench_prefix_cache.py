"""Prefix caching on the VAL layout: one shared context per set, many needle positions.

Every question of a set repeats the set's context as its prefix, so with prefix caching vLLM computes
that context once per set instead of once per question. This bench runs the same chat-templated prompts
(built offline from the embedded pool, SmolLM2's tokenizer) through

* ``vllm.LLM`` with prefix caching off,
* ``vllm.LLM`` with prefix caching on,
* transformers ``generate`` (one prompt at a time, what ``lm_eval --model hf`` does at batch size 1),

each in its own subprocess (vLLM engines do not release the CPU cleanly inside one process), greedy,
``--max-new-tokens`` new tokens. It prints wall times, the ratios, and the fraction of prompt tokens
served from the prefix cache (``RequestOutput.num_cached_tokens``) against the ideal: every question
after the first of its set reuses the whole shared prefix (rounded down to vLLM's block size).

    python bench/bench_prefix_cache.py                       # ~10 min on 2 cores
    python bench/bench_prefix_cache.py --length 1024 --positions 8 --skip-hf
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from val_probing.build import ProbeSpec, cached_probes
from val_probing.embedded import embedded_model_dir
from val_probing.records import ProbeExample
from val_probing.serving import apply_serving_env, vllm_is_cpu_build

BLOCK_SIZE = 128  # vLLM's default KV block on CPU; only whole blocks are cached


@dataclass(frozen=True)
class Workload:
    prompts: list[str]
    set_ids: list[int]


def chat_prompt(tokenizer: object, example: ProbeExample) -> str:
    """The probe as one user turn (the FILM wording without its [INST] tags), chat template applied."""
    user = (
        "Below is a context and an instruction. Based on the information provided in the context, "
        f"write a response for the instruction.\n\n### Context:\n{example.context}\n\n"
        f"### Instruction:\n{example.instruction}"
    )
    return str(
        tokenizer.apply_chat_template(  # type: ignore[attr-defined]
            [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
        )
    )


def workload(model_dir: Path, args: argparse.Namespace) -> Workload:
    from transformers import AutoTokenizer

    spec = ProbeSpec(
        family=args.family,
        length=args.length,
        tokenizer="embedded",
        sets=args.sets,
        positions=args.positions,
    )
    examples, _ = cached_probes(spec)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    return Workload([chat_prompt(tokenizer, ex) for ex in examples], [ex.set_id for ex in examples])


def shared_prefix_tokens(token_lists: list[list[int]]) -> int:
    """Length of the longest common token prefix of ``token_lists``."""
    first = token_lists[0]
    n = len(first)
    for other in token_lists[1:]:
        n = min(n, len(other))
        for i in range(n):
            if first[i] != other[i]:
                n = i
                break
    return n


def ideal_cached_tokens(token_lists: list[list[int]], set_ids: list[int]) -> int:
    """Tokens a perfect block cache would reuse: every prompt after the first of its set, whole blocks."""
    total = 0
    for set_id in sorted(set(set_ids)):
        group = [t for t, s in zip(token_lists, set_ids, strict=True) if s == set_id]
        if len(group) > 1:
            total += (len(group) - 1) * (shared_prefix_tokens(group) // BLOCK_SIZE * BLOCK_SIZE)
    return total


def run_vllm(model_dir: Path, work: Workload, args: argparse.Namespace, prefix_caching: bool) -> dict:
    from vllm import LLM, SamplingParams

    cpu = vllm_is_cpu_build()
    t0 = time.perf_counter()
    llm = LLM(
        model=str(model_dir),
        max_model_len=args.length + 512,
        enable_prefix_caching=prefix_caching,
        dtype="float32" if cpu else "auto",
        enforce_eager=cpu,
        seed=0,
    )
    startup = time.perf_counter() - t0
    params = SamplingParams(temperature=0.0, max_tokens=args.max_new_tokens)
    t0 = time.perf_counter()
    outputs = llm.generate(work.prompts, params)
    wall = time.perf_counter() - t0
    token_lists = [list(o.prompt_token_ids or []) for o in outputs]
    return {
        "startup_s": startup,
        "wall_s": wall,
        "prompt_tokens": sum(len(t) for t in token_lists),
        "cached_tokens": sum(o.num_cached_tokens or 0 for o in outputs),
        "ideal_cached_tokens": ideal_cached_tokens(token_lists, work.set_ids),
        "texts": [o.outputs[0].text for o in outputs],
    }


def run_hf(model_dir: Path, work: Workload, args: argparse.Namespace) -> dict:
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    startup = time.perf_counter() - t0
    texts = []
    t0 = time.perf_counter()
    with torch.inference_mode():
        for prompt in tqdm(work.prompts, desc="transformers generate"):
            ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
            out = model.generate(
                **ids,
                max_new_tokens=args.max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.eos_token_id,
            )
            texts.append(tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True))
    return {"startup_s": startup, "wall_s": time.perf_counter() - t0, "texts": texts}


def worker(args: argparse.Namespace) -> None:
    apply_serving_env()
    model_dir = embedded_model_dir()
    work = workload(model_dir, args)
    if args.worker == "hf":
        result = run_hf(model_dir, work, args)
    else:
        result = run_vllm(model_dir, work, args, prefix_caching=args.worker == "vllm-on")
    Path(args.result).write_text(json.dumps(result))


def spawn(mode: str, args: argparse.Namespace, out: Path) -> dict:
    """Run one mode in a fresh interpreter; return its JSON result."""
    result = out / f"{mode}.json"
    cmd = [sys.executable, __file__, "--worker", mode, "--result", str(result), *args.forward]
    print(f"[bench] {mode} ...", flush=True)
    subprocess.run(cmd, check=True, timeout=args.timeout)
    data = json.loads(result.read_text())
    print(f"[bench] {mode}: {data['wall_s']:.1f} s (start-up {data['startup_s']:.1f} s)", flush=True)
    return data


def report(results: dict[str, dict], n_prompts: int, args: argparse.Namespace) -> None:
    off, on = results["vllm-off"], results["vllm-on"]
    print()
    print(
        f"VAL layout: {args.family}, {args.sets} set(s) x {args.positions} positions, "
        f"context <= {args.length} tokens, {n_prompts} prompts, {args.max_new_tokens} new tokens, greedy"
    )
    print(f"prompt tokens: {on['prompt_tokens']}")
    print(f"{'run':<26}{'wall s':>9}{'start-up s':>12}")
    for name, label in (
        ("vllm-off", "vLLM, prefix caching off"),
        ("vllm-on", "vLLM, prefix caching on"),
        ("hf", "transformers generate"),
    ):
        if name in results:
            r = results[name]
            print(f"{label:<26}{r['wall_s']:>9.1f}{r['startup_s']:>12.1f}")
    print(f"speed-up from prefix caching: {off['wall_s'] / on['wall_s']:.2f}x")
    if "hf" in results:
        print(
            f"vLLM (prefix caching) vs transformers generate: {results['hf']['wall_s'] / on['wall_s']:.2f}x"
        )
    frac = on["cached_tokens"] / on["prompt_tokens"]
    ideal = on["ideal_cached_tokens"] / on["prompt_tokens"]
    print(
        f"cached prompt tokens: {on['cached_tokens']} of {on['prompt_tokens']} ({frac:.1%}); "
        f"ideal {on['ideal_cached_tokens']} ({ideal:.1%}) = (positions-1)/positions of each shared "
        f"prefix in whole {BLOCK_SIZE}-token blocks; with caching off: {off['cached_tokens']}"
    )
    same = sum(a == b for a, b in zip(off["texts"], on["texts"], strict=True))
    print(f"identical greedy outputs, caching on vs off: {same}/{n_prompts}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--family", default="document", choices=["document", "code", "database"])
    parser.add_argument("--length", type=int, default=2048, help="context tokens (default: %(default)s)")
    parser.add_argument("--sets", type=int, default=1, help="contexts (default: %(default)s)")
    parser.add_argument("--positions", type=int, default=16, help="questions per set (default: %(default)s)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="(default: %(default)s)")
    parser.add_argument("--skip-hf", action="store_true", help="skip the transformers run")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per run (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("bench/.out/prefix_cache"))
    parser.add_argument("--worker", choices=["vllm-off", "vllm-on", "hf"], help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.forward = [
        f"--family={args.family}",
        f"--length={args.length}",
        f"--sets={args.sets}",
        f"--positions={args.positions}",
        f"--max-new-tokens={args.max_new_tokens}",
    ]
    return args


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    modes = ["vllm-on", "vllm-off"] + ([] if args.skip_hf else ["hf"])
    results = {mode: spawn(mode, args, args.out) for mode in modes}
    report(results, len(results["vllm-on"]["texts"]), args)


if __name__ == "__main__":
    main()
