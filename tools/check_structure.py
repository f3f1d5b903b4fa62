"""Structure checks for ``src/seem``: import cycles, file sizes and function lengths.

``python tools/check_structure.py`` prints the numbers and exits 1 when

* a module imports, directly or through others, a module that imports it back (every ``import`` counts,
  also those inside functions: a lazy import hides a cycle from Python, not from the reader; imports under
  ``if TYPE_CHECKING:`` do not run and do not count);
* a file has more than ``--max-file-lines`` lines or a function more than ``--max-function-lines``.

``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg`` (its
``__init__``). The graph is built with :mod:`ast` only; nothing is imported.
"""

from __future__ import annotations

import argparse
import ast
import statistics
import sys
from pathlib import Path


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """``{module: {imported project modules}}`` for every ``.py`` file below ``root / package``."""
    files = {module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        for node in _imports(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in files else base)
            for t in targets:
                while t and t not in files:  # "import seem.a.b" of a name inside a module
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm; components of more than one module (or a self loop) are cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def function_lengths(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    return [
        (node.end_lineno - node.lineno + 1, f"{path}:{node.lineno} {node.name}")
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno is not None
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="src")
    ap.add_argument("--package", default="seem")
    ap.add_argument("--max-file-lines", type=int, default=400)
    ap.add_argument("--max-function-lines", type=int, default=80)
    ap.add_argument("--top", type=int, default=5, help="longest files / functions to list")
    args = ap.parse_args(argv)
    root = Path(args.root)
    files = sorted((root / args.package).rglob("*.py"))
    lines = sorted((len(p.read_text().splitlines()), str(p)) for p in files)
    funcs = sorted((f for p in files for f in function_lengths(p)), reverse=True)
    cycles = strongly_connected(import_graph(root, args.package))
    print(f"files: {len(files)}, lines median {statistics.median(n for n, _ in lines):.0f}, "
          f"max {lines[-1][0]} ({lines[-1][1]})")
    print("longest functions: " + ", ".join(f"{n} {name}" for n, name in funcs[: args.top]))
    print(f"import cycles: {len(cycles)}")
    for comp in cycles:
        print("  cycle among: " + " ".join(comp))
    bad_files = [f"{n} {p}" for n, p in lines if n > args.max_file_lines]
    bad_funcs = [f"{n} {name}" for n, name in funcs if n > args.max_function_lines]
    for what, bad in (("files over the limit", bad_files), ("functions over the limit", bad_funcs)):
        if bad:
            print(f"{what}: {len(bad)}")
            for row in bad:
                print(f"  {row}")
    return 1 if cycles or bad_files or bad_funcs else 0


if __name__ == "__main__":
    raise SystemExit(main())
