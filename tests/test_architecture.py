"""The package's floors, checked on its import graph (docs/architecture.md).

The graph is read from the source with ``ast``: every ``import`` and ``from ... import`` of every module
of ``val_probing`` (``training/`` and ``tasks_yaml/`` as the ``val_probing.training`` and
``val_probing.tasks_yaml`` they are installed as), at module level and inside functions alike; only
imports under ``if TYPE_CHECKING:`` are left out (they never run). An edge goes to the module an import
names: ``from val_probing.gate import check`` to ``gate``, ``from val_probing.gate import stats`` to
``gate.stats``; a package's ``__init__`` run on the way is not an edge (every package would otherwise
be a circle with its own modules).

* nothing below the CLI imports it: no module outside ``commands/`` (and ``cli``, the entry point that
  dispatches to them) imports ``commands`` or ``cli``;
* no import circle, function-level imports included (a circle broken only by a late import is still
  two modules that need each other);
* no module over 350 lines, except those docs/architecture.md lists with the reason.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# (folder, the package it is installed as)
SOURCES = (("val_probing", ""), ("training", "training"), ("tasks_yaml", "tasks_yaml"))
CLI = ("cli", "commands")  # the top floor: the entry point and one module per subcommand
MAX_LINES = 350

# Imports of the CLI from below it that are known and on their way out: module -> the CLI modules it
# still imports. Each entry names the change that removes it; delete its line when that change lands
# (the test fails on an entry that no longer occurs).
EXPECTED_UPWARD: dict[str, set[str]] = {}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int

    def where(self) -> str:
        return f"{path_of(self.source)}:{self.line}"


def module_files() -> dict[str, Path]:
    """Module name (relative to ``val_probing``; the package itself is ``val_probing``) -> its file."""
    out: dict[str, Path] = {}
    for folder, prefix in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join([prefix, *parts] if prefix else parts)
            out[name or "val_probing"] = path
    return out


MODULES = module_files()


def path_of(module: str) -> str:
    return str(MODULES[module].relative_to(ROOT))


def is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute dotted name a ``from`` import reads from (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = (["val_probing"] if module != "val_probing" else []) + module.split(".")
    base = base if is_package(module) else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _ours(dotted: str) -> str | None:
    """``val_probing.gate.stats`` -> ``gate.stats`` when it is a module of the package, else None."""
    if dotted == "val_probing":
        return "val_probing"
    if not dotted.startswith("val_probing."):
        return None
    name = dotted.removeprefix("val_probing.")
    return name if name in MODULES else None


def _type_checking_only(tree: ast.AST) -> set[int]:
    """Ids of the import nodes under ``if TYPE_CHECKING:``."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def imports_of(module: str) -> Iterator[Edge]:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"), filename=str(MODULES[module]))
    skip = _type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _ours(alias.name)
                if target is not None:
                    yield Edge(module, target, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            for alias in node.names:
                target = _ours(f"{base}.{alias.name}") or _ours(base)  # a submodule, else the module
                if target is not None:
                    yield Edge(module, target, node.lineno)


def import_graph() -> dict[str, list[Edge]]:
    graph: dict[str, list[Edge]] = {}
    for module in MODULES:
        seen: dict[str, Edge] = {}
        for edge in imports_of(module):
            if edge.target != module:  # `from . import x` inside x's own package __init__
                seen.setdefault(edge.target, edge)
        graph[module] = sorted(seen.values(), key=lambda e: e.target)
    return graph


GRAPH = import_graph()


def in_cli(module: str) -> bool:
    return any(module == top or module.startswith(f"{top}.") for top in CLI)


# ------------------------------------------------------------------------------------------- tests


def test_the_graph_sees_every_kind_of_import() -> None:
    """The reader itself: module-level, function-level and relative imports, submodules named by a
    ``from`` import, and nothing under TYPE_CHECKING."""
    targets = {e.target for e in GRAPH["cli"]}
    assert "commands.eval" in targets  # inside a function: `from val_probing.commands import eval`
    assert {e.target for e in GRAPH["gate"]} >= {"gate.baseline", "gate.compare", "gate.render"}
    assert "training.launch" in {e.target for e in GRAPH["commands.train"]}
    assert not any(e.target.startswith("plots") for e in GRAPH["plots"])
    assert len(MODULES) > 100 and all(e.target in MODULES for edges in GRAPH.values() for e in edges)


def test_nothing_below_the_cli_imports_it() -> None:
    upward = {
        module: {e.target for e in edges if in_cli(e.target)}
        for module, edges in GRAPH.items()
        if not in_cli(module)
    }
    found = {module: targets for module, targets in upward.items() if targets}
    unexpected = [
        f"{e.where()}: {module} imports {e.target}"
        for module, targets in found.items()
        for e in GRAPH[module]
        if e.target in targets - EXPECTED_UPWARD.get(module, set())
    ]
    assert not unexpected, (
        "nothing below commands/ imports commands/ (docs/architecture.md); move what it needs into the "
        "library, below the CLI:\n" + "\n".join(unexpected)
    )
    stale = [
        f"{module} -> {target}"
        for module, targets in EXPECTED_UPWARD.items()
        for target in sorted(targets - found.get(module, set()))
    ]
    assert not stale, "known exceptions that no longer occur: delete them from EXPECTED_UPWARD: " + ", ".join(
        stale
    )


def _cycles(graph: dict[str, list[Edge]]) -> list[list[Edge]]:
    """One circle (as its edges) per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(root: str) -> None:
        # iterative Tarjan: (node, iterator over its edges)
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            step = next(edges, None)
            if step is not None:
                target = step.target
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(graph[target])))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return [_circle_in(graph, component) for component in components]


def _circle_in(graph: dict[str, list[Edge]], component: set[str]) -> list[Edge]:
    """A shortest circle through the component's first module (breadth-first inside the component)."""
    start = min(component)
    came: dict[str, Edge] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for edge in graph[node]:
                if edge.target not in component:
                    continue
                if edge.target == start:
                    path = [edge]
                    while path[0].source != start:
                        path.insert(0, came[path[0].source])
                    return path
                if edge.target not in came:
                    came[edge.target] = edge
                    following.append(edge.target)
        frontier = following
    raise AssertionError(f"no circle in the component {sorted(component)}")  # cannot happen


def test_cycle_finder_reports_the_path() -> None:
    def edges(pairs: dict[str, list[str]]) -> dict[str, list[Edge]]:
        return {s: [Edge(s, t, 1) for t in targets] for s, targets in pairs.items()}

    graph = edges({"a": ["b"], "b": ["c"], "c": ["a", "d"], "d": [], "e": ["e2"], "e2": []})
    (circle,) = _cycles(graph)
    assert [e.source for e in circle] == ["a", "b", "c"] and circle[-1].target == "a"
    assert _cycles(edges({"a": ["b"], "b": []})) == []


def test_no_import_circle() -> None:
    # the known upward edges close a circle of their own (commands.train imports in2.experiment): they are
    # the other test's exceptions, left out here so that any other circle is seen
    graph = {
        module: [e for e in edges if e.target not in EXPECTED_UPWARD.get(module, set())]
        for module, edges in GRAPH.items()
    }
    circles = _cycles(graph)
    described = [
        " -> ".join([c[0].source, *(e.target for e in c)])
        + "\n    "
        + "\n    ".join(f"{e.where()}: imports {e.target}" for e in c)
        for c in circles
    ]
    assert not circles, "import circles (docs/architecture.md: each floor imports only below):\n" + "\n".join(
        described
    )


def _documented_long_modules() -> dict[str, str]:
    """``path -> why`` from the table under "Modules over 350 lines" in docs/architecture.md."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("## Modules over 350 lines", 1)
    assert len(section) == 2, "docs/architecture.md has no section 'Modules over 350 lines'"
    body = section[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([^`]+\.py)` \| (.*?) \|$", body, flags=re.MULTILINE)
    return {path: why.strip() for path, why in rows}


def test_no_module_over_350_lines_but_those_the_docs_justify() -> None:
    lengths = {path_of(m): len(MODULES[m].read_text(encoding="utf-8").splitlines()) for m in MODULES}
    long = {path: n for path, n in lengths.items() if n > MAX_LINES}
    documented = _documented_long_modules()
    undocumented = [f"{path} ({n} lines)" for path, n in sorted(long.items()) if path not in documented]
    assert not undocumented, (
        f"over {MAX_LINES} lines: split it, or say why it stays whole in docs/architecture.md "
        "('Modules over 350 lines'): " + ", ".join(undocumented)
    )
    stale = [path for path in documented if path not in long]
    assert not stale, (
        f"docs/architecture.md lists as over {MAX_LINES} lines what is not (any more): " + ", ".join(stale)
    )
    assert all(documented.values()), "each long module gets its reason in the table"
