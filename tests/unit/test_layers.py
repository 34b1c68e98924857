"""The layers: app -> pipelines -> steps -> empathy_distill. The core imports no ZenML and no outer layer."""

from __future__ import annotations

import ast

from tests.conftest import REPO

OUTER = {"zenml", "app", "pipelines", "steps", "materializers"}


def imported_roots(path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_core_imports_no_zenml_and_no_outer_layer():
    offenders = {
        str(path.relative_to(REPO)): sorted(imported_roots(path) & OUTER)
        for path in sorted((REPO / "empathy_distill").rglob("*.py"))
        if imported_roots(path) & OUTER
    }
    assert not offenders, offenders


def test_pipelines_and_steps_do_not_import_the_application_layer_at_import_time():
    # retrain_gate imports app.registry_ops inside the step body: a step that launches a pipeline
    for folder in ("pipelines", "steps"):
        for path in sorted((REPO / folder).glob("*.py")):
            top = ast.parse(path.read_text(encoding="utf-8")).body
            names = {n.module.split(".")[0] for n in top if isinstance(n, ast.ImportFrom) and n.module}
            names |= {a.name.split(".")[0] for n in top if isinstance(n, ast.Import) for a in n.names}
            assert "app" not in names, path
