"""The code's shape, checked: no function over 80 lines, no import cycle (imports inside functions count), the
project's own modules imported at module level unless a comment says why not, and docs/architecture.md naming
every module there is (and none that is gone).

Each check is a pure function over source text, first shown to catch a planted breach, then run on the repository.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("empathy_distill", "steps", "pipelines", "materializers", "deploy", "app")
MAX_LINES = 80
LAZY_REASON = "import-time"  # the comment a function-level import of our own modules must carry, with the reason


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def product_modules(root: Path = REPO) -> dict[str, Path]:
    """Every module of the product packages (tests and bench are not product)."""
    return {module_name(p, root): p for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py"))}


def long_functions(source: str, limit: int = MAX_LINES) -> list[tuple[str, int]]:
    """(name, lines) of each function or method longer than ``limit`` lines, decorators excluded."""
    return [
        (node.name, node.end_lineno - node.lineno + 1)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > limit
    ]


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]) -> list[str]:
    """The modules of ``known`` an import statement loads (relative imports resolved)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module.split(".") if is_package else module.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, *([base] if base else [])])
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
    found = []
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name:
            found.append(name)
    return found


def import_graph(sources: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """module -> the project's modules it imports anywhere in its file (functions included); ``sources`` maps a
    module to (its text, whether it is a package's ``__init__``)."""
    known = set(sources)
    graph: dict[str, set[str]] = {m: set() for m in sources}
    for module, (text, is_package) in sources.items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[module] |= {t for t in _targets(node, module, is_package, known) if t != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles: strongly connected groups of two or more modules (Tarjan), each sorted.

    A package's ``__init__`` importing its own submodules is not a cycle (Python loads the package first either
    way), so edges from a package into itself are left out.
    """
    edges = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def unexplained_lazy_imports(module: str, text: str, is_package: bool, known: set[str]) -> list[str]:
    """Imports of the project's own modules inside a function with no ``# import-time: ...`` comment on the line
    (or the line above) saying what importing it at module level would cost."""
    lines = text.splitlines()
    found = []
    for fn in ast.walk(ast.parse(text)):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and _targets(node, module, is_package, known):
                said = " ".join(lines[max(0, node.lineno - 2) : node.end_lineno])
                if LAZY_REASON not in said:
                    found.append(f"{module}:{node.lineno} in {fn.name}()")
    return found


def documented_modules(text: str) -> set[str]:
    """The module paths docs/architecture.md names in backticks (``empathy_distill/training/sft.py``)."""
    packages = "|".join(PACKAGES)
    return set(re.findall(rf"`((?:{packages})/[\w/]+\.py)`", text))


# --- the checks catch a planted breach -------------------------------------------------------------------------


def test_a_long_function_is_caught():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    assert long_functions(f"def f():\n{body}\n") == [("f", MAX_LINES + 1)]
    assert long_functions(f"def f():\n{body[: body.rindex(chr(10))]}\n") == []


def test_a_cycle_hidden_in_a_function_is_caught():
    sources = {
        "pkg": ("", True),
        "pkg.a": ("from pkg.b import g\n", False),
        "pkg.b": ("def g():\n    from pkg import a\n", False),
        "pkg.c": ("from . import a\n", False),
    }
    assert cycles(import_graph(sources)) == [["pkg.a", "pkg.b"]]
    sources["pkg.b"] = ("def g():\n    pass\n", False)
    assert cycles(import_graph(sources)) == []


def test_a_lazy_import_needs_its_reason():
    known = {"pkg", "pkg.a", "pkg.b"}
    bare = "def f():\n    from pkg.a import x\n    import json\n"
    said = "def f():\n    # import-time: pkg.a loads torch (2 s)\n    from pkg.a import x\n"
    assert unexplained_lazy_imports("pkg.b", bare, False, known) == ["pkg.b:2 in f()"]
    assert unexplained_lazy_imports("pkg.b", said, False, known) == []


def test_the_module_list_is_read_from_backticks():
    assert documented_modules("- `empathy_distill/training/sft.py`: SFT\n- `app/cli.py` and `bench/x.py`") == {
        "empathy_distill/training/sft.py",
        "app/cli.py",
    }


# --- the repository --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sources() -> dict[str, tuple[str, bool]]:
    return {m: (p.read_text(), p.name == "__init__.py") for m, p in product_modules().items()}


def test_no_function_is_longer_than_80_lines(sources):
    found = [f"{m}.{name}: {n} lines" for m, (text, _) in sources.items() for name, n in long_functions(text)]
    assert not found, "split these into functions that fit on a screen:\n" + "\n".join(found)


def test_no_import_cycle(sources):
    assert cycles(import_graph(sources)) == []


def test_own_modules_are_imported_at_module_level(sources):
    known = set(sources)
    found = [f for m, (text, pkg) in sources.items() for f in unexplained_lazy_imports(m, text, pkg, known)]
    assert not found, (
        "import these at the top, or say on the line what the top-level import would cost (# import-time: ...):\n"
        + "\n".join(found)
    )


def test_architecture_md_lists_every_module():
    doc = documented_modules((REPO / "docs" / "architecture.md").read_text())
    actual = {str(p.relative_to(REPO)) for p in product_modules().values() if p.name != "__init__.py"}
    assert not actual - doc, f"modules docs/architecture.md does not name: {sorted(actual - doc)}"
    assert not doc - actual, f"docs/architecture.md names modules that do not exist: {sorted(doc - actual)}"
