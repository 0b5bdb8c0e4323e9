"""Generate the embedded offline pools shipped in ``val_probing/data/`` (the authors' schema).

Real text that every Python installation has, so the default probes need no download:

* document: sentences of the docstrings of the Python standard library (and its test suite) and of
  the language reference topics it ships for ``help()`` (``pydoc_data``; PSF licence), each with a
  piece of 8 contiguous words from its middle (the authors' pieces are 8 words too);
* code: functions of the standard library and its test suite: ``function_name``, the first 3
  statement lines of the body (stripped, indented 4 spaces, as the authors did) and one of those
  lines as the piece;
* database: Unicode characters from ``unicodedata``: id ``U+XXXX``, label = the character's name,
  dcpt = its general category in words and its rank among the characters whose name starts with the
  same word ("other symbol, the 12th of the 40 DOMINO characters"), so descriptions are distinct.

The snapshot is generated once and committed, so builds are byte-identical whatever Python runs them
(the standard library and the Unicode version differ between Pythons; ``pools.json`` records which
were used). Re-run only on purpose, then bump ``build.PROBE_VERSION``::

    .venv/bin/python scripts/make_embedded_pools.py            # writes val_probing/data/
"""

from __future__ import annotations

import argparse
import ast
import gzip
import hashlib
import io
import json
import random
import re
import sys
import sysconfig
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from val_probing.pools import FILE_NAMES, read_pool
from val_probing.probes import get_family
from val_probing.probes.base import Target

OUT = Path(__file__).resolve().parents[1] / "val_probing" / "data"
SIZES = {"document": 7000, "code": 6000, "database": 9000}
PIECE_WORDS = 8
_SKIP_PARTS = {"site-packages", "dist-packages", "__pycache__", "turtledemo"}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_PRINTABLE = re.compile(r"[ -~]+")
_GENERATED_NAMES = (
    "CJK UNIFIED IDEOGRAPH-",
    "CJK COMPATIBILITY IDEOGRAPH-",
    "HANGUL SYLLABLE ",
    "TANGUT IDEOGRAPH-",
    "TANGUT COMPONENT-",
    "KHITAN SMALL SCRIPT CHARACTER-",
    "NUSHU CHARACTER-",
    "EGYPTIAN HIEROGLYPH ",
    "CUNEIFORM SIGN ",
    "ANATOLIAN HIEROGLYPH ",
    "LINEAR A SIGN ",
    "LINEAR B ",
    "BAMUM LETTER PHASE",
    "VARIATION SELECTOR",
)
_CATEGORIES = {
    "Lu": "uppercase letter",
    "Ll": "lowercase letter",
    "Lt": "titlecase letter",
    "Lm": "modifier letter",
    "Lo": "other letter",
    "Mn": "nonspacing mark",
    "Mc": "spacing combining mark",
    "Me": "enclosing mark",
    "Nd": "decimal digit",
    "Nl": "letter number",
    "No": "other number",
    "Pc": "connector punctuation",
    "Pd": "dash punctuation",
    "Ps": "opening punctuation",
    "Pe": "closing punctuation",
    "Pi": "initial quotation mark",
    "Pf": "final quotation mark",
    "Po": "other punctuation",
    "Sm": "math symbol",
    "Sc": "currency symbol",
    "Sk": "modifier symbol",
    "So": "other symbol",
    "Zs": "space separator",
}


def stdlib_files() -> list[Path]:
    """Standard-library modules and its test suite (installed third-party packages excluded)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.rglob("*.py") if not _SKIP_PARTS & set(p.relative_to(root).parts))


def parsed_files() -> Iterator[tuple[str, ast.Module]]:
    for path in stdlib_files():
        try:
            source = path.read_text(encoding="utf-8")
            yield source, ast.parse(source)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue  # a few stdlib files are templates or Python 2 examples


# --------------------------------------------------------------------------------------------------
# document


def prose_sentences(text: str) -> Iterator[str]:
    """Sentences of the prose paragraphs of a text (code, lists and reST directives are skipped)."""
    for paragraph in text.split("\n\n"):
        lines = paragraph.strip("\n").split("\n")
        if any(
            line[:1].isspace() or line.lstrip().startswith((">>>", "-", "*", "+", "..")) for line in lines
        ):
            continue
        yield from _SENTENCE_END.split(" ".join(line.strip() for line in lines))


def docstring_sentences(tree: ast.Module) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            yield from prose_sentences(ast.get_docstring(node) or "")


def reference_sentences() -> Iterator[str]:
    """Sentences of the language reference topics that ``help()`` shows (``pydoc_data.topics``)."""
    from pydoc_data.topics import topics

    for _name, text in sorted(topics.items()):
        yield from prose_sentences(text)


def good_sentence(sentence: str) -> bool:
    words = sentence.split()
    return (
        12 <= len(words) <= 50
        and sentence[0].isupper()
        and sentence.endswith(".")
        and _PRINTABLE.fullmatch(sentence) is not None
        and not any(mark in sentence for mark in ("``", "::", ">>>", "http", "  "))
        and sentence.count("(") == sentence.count(")")
        and sentence.count('"') % 2 == 0
    )


def document_rows(trees: list[ast.Module], rng: random.Random, size: int) -> list[dict[str, str]]:
    found = [s for tree in trees for s in docstring_sentences(tree)] + list(reference_sentences())
    sentences = sorted({s for s in found if good_sentence(s)})
    rng.shuffle(sentences)
    rows, pieces = [], set()
    for sentence in sentences:
        words = sentence.split()
        start = rng.randrange(1, len(words) - PIECE_WORDS)  # never the first or the last word
        piece = " ".join(words[start : start + PIECE_WORDS])
        if sentence.count(piece) == 1 and piece not in pieces:
            pieces.add(piece)
            rows.append({"sentence": sentence, "piece": piece})
        if len(rows) == size:
            return rows
    raise SystemExit(f"only {len(rows)} document rows available, wanted {size}")


# --------------------------------------------------------------------------------------------------
# code


def statement_lines(func: ast.FunctionDef | ast.AsyncFunctionDef, source_lines: list[str]) -> list[str]:
    """The first physical line of each body statement that is complete on that line, in order."""
    body = func.body[1:] if ast.get_docstring(func) else func.body
    lines = []
    for stmt in body:
        for node in ast.walk(stmt):
            if not isinstance(node, ast.stmt) or isinstance(
                node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
            ):
                continue
            text = source_lines[node.lineno - 1].strip()
            simple = node.lineno == node.end_lineno and not hasattr(node, "body")
            if simple or (hasattr(node, "body") and text.endswith(":")):
                lines.append((node.lineno, text))
    return [text for _lineno, text in sorted(set(lines))]


def good_line(line: str) -> bool:
    return (
        6 <= len(line) <= 90
        and _PRINTABLE.fullmatch(line) is not None
        and "#" not in line
        and ";" not in line
    )


def code_rows(files: list[tuple[str, ast.Module]], rng: random.Random, size: int) -> list[dict[str, str]]:
    by_name: dict[str, tuple[str, ...]] = {}
    for source, tree in files:
        source_lines = source.split("\n")
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or node.name in by_name:
                continue
            if node.name.startswith("__") or len(node.name) < 4 or not node.name.isascii():
                continue
            lines = statement_lines(node, source_lines)[:3]
            if len(lines) == 3 and len(set(lines)) == 3 and all(good_line(line) for line in lines):
                by_name[node.name] = tuple(lines)
    names = sorted(by_name)
    rng.shuffle(names)
    rows, pieces = [], set()
    for name in names:
        lines = by_name[name]
        define = "\n".join(f"    {line}" for line in lines)
        piece = rng.choice(lines)
        if len(piece) < 12 or define.count(piece) != 1 or piece in pieces:
            continue  # short or repeated lines make ambiguous needles
        pieces.add(piece)
        rows.append({"function_name": name, "function_define": define, "piece": piece})
        if len(rows) == size:
            return rows
    raise SystemExit(f"only {len(rows)} code rows available, wanted {size}")


# --------------------------------------------------------------------------------------------------
# database


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def description(char: str, rank: int, total: int, word: str) -> str:
    """The general category in words, then where the character stands among those whose name starts
    with the same word ("lowercase letter, the 37th of the 256 CYRILLIC characters").

    The category alone is shared by thousands of characters ("other letter" was 38% of the pool),
    so one constant answer scored about 38 of 100 with the loose label-or-description metric; the
    rank makes every description distinct and no description a substring of another ("the 3rd"
    never occurs inside "the 13th"), as the authors' Wikidata descriptions mostly are.
    """
    category = _CATEGORIES[unicodedata.category(char)]
    if total == 1:
        return f"{category}, the only {word} character"
    return f"{category}, the {ordinal(rank)} of the {total} {word} characters"


def database_rows(rng: random.Random, size: int) -> list[dict[str, str]]:
    named = []
    for code in range(0x110000):
        char = chr(code)
        name = unicodedata.name(char, "")
        if name and not name.startswith(_GENERATED_NAMES) and unicodedata.category(char) in _CATEGORIES:
            named.append((code, name))
    totals: dict[str, int] = {}
    for _code, name in named:
        totals[name.split()[0]] = totals.get(name.split()[0], 0) + 1
    rows, ranks = [], dict.fromkeys(totals, 0)
    for code, name in named:  # code point order: the rank is the character's place in its group
        word = name.split()[0]
        ranks[word] += 1
        dcpt = description(chr(code), ranks[word], totals[word], word)
        rows.append({"id": f"U+{code:04X}", "label": name, "dcpt": dcpt})
    if len(rows) < size:
        raise SystemExit(f"only {len(rows)} database rows available, wanted {size}")
    return rng.sample(rows, size)


# --------------------------------------------------------------------------------------------------


def write_gz(path: Path, rows: list[dict[str, str]]) -> str:
    """Deterministic gzip (no name, mtime 0) of the JSONL; returns the sha256 of the .gz bytes."""
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as handle:
        handle.write(text)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=OUT, help="folder to write (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=2404_16811)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    files = list(parsed_files())
    rows = {
        "document": document_rows(
            [tree for _source, tree in files], random.Random(args.seed), SIZES["document"]
        ),
        "code": code_rows(files, random.Random(args.seed + 1), SIZES["code"]),
        "database": database_rows(random.Random(args.seed + 2), SIZES["database"]),
    }
    manifest = {
        "generator": "scripts/make_embedded_pools.py",
        "seed": args.seed,
        "python": sys.version.split()[0],
        "unicodedata": unicodedata.unidata_version,
        "sources": {
            "document": "sentences of docstrings of the standard library and its tests, and of "
            "pydoc_data topics (PSF licence)",
            "code": "functions of the Python standard library and its test suite (PSF licence)",
            "database": "Unicode character names, general categories and ranks among the names "
            "starting with the same word (Unicode licence), via unicodedata",
        },
        "files": {},
    }
    for family, family_rows in rows.items():
        path = args.out / f"{FILE_NAMES[family]}.gz"
        digest = write_gz(path, family_rows)
        items = read_pool(family, path)  # the package's own checks
        fam = get_family(family)
        floor = fam.constant_floor([Target(*fam.gold(item)) for item in items])
        manifest["files"][path.name] = {
            "rows": len(family_rows),
            "sha256": digest,
            "constant_floor": {"score": round(floor.score, 2), "answer": floor.answer},
        }
        print(f"{path}: {len(family_rows)} rows, {path.stat().st_size / 1e3:.0f} kB")
    (args.out / "pools.json").write_text(
        json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
