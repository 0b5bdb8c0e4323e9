"""``val-probing build``: write VAL probes (one fixed context per set, one question per position) as JSONL."""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from pathlib import Path

from val_probing.commands.args import non_negative_int, positive_int
from val_probing.pools import EMBEDDED, FILM
from val_probing.records import FAMILIES

log = logging.getLogger(__name__)

HELP = "build VAL probes for a task at a context length, counted with your model's tokenizer"

EPILOG = """\
Each set is one fixed context filled from the pool to at most --length tokens (counted with
--tokenizer); every question of a set shares that context as its prefix, the instruction comes last.
The same arguments always give a byte-identical file. Built probes are cached under
$VAL_PROBING_CACHE/probes (default ~/.cache/val-probing), each file checked on read (a damaged one
is rebuilt with a warning); --no-cache rebuilds without it. An --out that cannot be written, or a
cache folder that cannot (without --no-cache), is exit 2 before any work.

examples:
  # the official layout (4 sets, one question per item) at 32K tokens, SmolLM2's tokenizer, offline pool
  val-probing build --task document --length 32768 --tokenizer embedded --out probes/document-32k.jsonl

  # 8K-token contexts for your model, 32 evenly spread needle positions, the authors' pools (downloaded)
  val-probing build --task code --length 8192 --tokenizer mistralai/Mistral-7B-Instruct-v0.2 \\
      --pool film --positions 32 --out probes/code-8k.jsonl

  # your own pool in the authors' schema ({id, label, dcpt} per line), a local tokenizer folder
  val-probing build --task database --length 4096 --tokenizer ./my-model --pool my_entities.jsonl \\
      --sets 2 --seed 1 --out probes/db-4k.jsonl

pools:
  embedded   shipped with the package (stdlib docstrings and functions, Unicode names); offline
  film       the authors' pools (github.com/microsoft/FILM, VaLProbing/pieces), downloaded once;
             set VAL_PROBING_FILM_URL to a mirror folder (file:// works) when GitHub is unreachable
  PATH       a JSONL (or .jsonl.gz) file in the authors' schema for the task

Every built set is checked (each key once in its context, each gold read back at its key, golds not
empty once the metric normalises them) and its constant-answer floor printed: what one answer given
to every question scores. Above the family's threshold it is a warning; --strict refuses the set.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, choices=FAMILIES, help="probe family")
    parser.add_argument("--length", required=True, type=positive_int, help="context budget in tokens")
    parser.add_argument(
        "--tokenizer",
        required=True,
        type=non_empty,
        help="Hugging Face tokenizer name or folder, 'embedded' (SmolLM2's) or 'whitespace' (words)",
    )
    parser.add_argument(
        "--pool", default=EMBEDDED, type=non_empty, help=f"{EMBEDDED} | {FILM} | PATH (default: %(default)s)"
    )
    parser.add_argument(
        "--sets", type=positive_int, default=4, help="contexts to build (default: %(default)s)"
    )
    parser.add_argument(
        "--positions",
        type=positive_int,
        default=None,
        help="needle positions per set, spread evenly (default: every item, the official layout)",
    )
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, help="shuffles the pool (default: %(default)s)"
    )
    parser.add_argument("--out", required=True, type=Path, help="probes JSONL to write")
    parser.add_argument("--no-cache", action="store_true", help="build even if cached, and do not cache")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="refuse (exit 2) probes on which one constant answer scores above the family's threshold "
        "(default: a warning; see docs/probes.md, 'The constant-answer floor')",
    )


def non_empty(text: str) -> str:
    """A name or path that is not empty (argparse names the flag)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a name or a path, got an empty string")
    return text


def run(args: argparse.Namespace) -> int:
    from val_probing.build import ProbeSpec, cached_probes
    from val_probing.files import check_output_file, check_paths
    from val_probing.probes.checks import probe_floor
    from val_probing.records import write_probes

    pool_file = None if args.pool in (EMBEDDED, FILM) else args.pool
    check_paths(inputs={"--pool": pool_file}, outputs={"--out": args.out})
    check_output_file(args.out, "probes file")
    spec = ProbeSpec(
        family=args.task,
        length=args.length,
        tokenizer=args.tokenizer,
        pool=args.pool,
        seed=args.seed,
        sets=args.sets,
        positions=args.positions,
    )
    examples, digest = cached_probes(spec, use_cache=not args.no_cache, progress=True, strict=args.strict)
    write_probes(args.out, examples)
    per_set = Counter(ex.set_id for ex in examples)
    shapes = {ex.set_id: (ex.n_items, ex.context_tokens) for ex in examples}
    for set_id in sorted(per_set):
        n_items, tokens = shapes[set_id]
        print(f"set {set_id}: {n_items} items, {tokens} tokens, {per_set[set_id]} questions")
    print(f"wrote {len(examples)} {spec.family} probes to {args.out} (probe hash {digest})")
    floor = probe_floor(examples)
    print(
        f"constant-answer floor {floor.score:.1f} of 100 (the answer {floor.answer[:60]!r} to every question)"
    )
    return 0
