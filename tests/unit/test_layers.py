"""The layers: app -> pipelines -> steps -> empathy_distill. The core imports no ZenML and no outer layer."""

from __future__ import annotations

import ast

import pytest

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


# what each layer may not import, anywhere in a file (function-local imports included): an import of an outer layer
# from an inner one is a cycle (app -> pipelines -> steps -> app), whether it runs at import time or in a step body
FORBIDDEN = {"steps": {"app", "pipelines"}, "pipelines": {"app"}, "materializers": {"app", "pipelines", "steps"}}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_layer_imports_an_outer_one_even_inside_a_function(layer):
    files = sorted((REPO / layer).rglob("*.py"))
    assert files
    offenders = {
        str(path.relative_to(REPO)): sorted(imported_roots(path) & FORBIDDEN[layer])
        for path in files
        if imported_roots(path) & FORBIDDEN[layer]
    }
    assert not offenders, offenders


def test_the_walk_sees_function_local_imports(tmp_path):
    # the check above would pass vacuously if it read only the top of a file (the retrain gate once imported the
    # application layer inside its step body)
    path = tmp_path / "step.py"
    path.write_text("def body():\n    from app.registry_ops import retrain\n    import pipelines.distill\n")
    assert imported_roots(path) == {"app", "pipelines"}


def test_the_step_image_holds_every_package_the_project_installs():
    # the Kubeflow image (deploy/Dockerfile) pip-installs the project: a package folder it does not copy is missing
    # in the pods (the scheduled retrain_gate runs the `empathy-distill` command, whose code is app/)
    import re
    import tomllib

    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in include}
    copied = set(re.findall(r"^COPY (\w+) \1$", (REPO / "deploy" / "Dockerfile").read_text(), flags=re.M))
    assert packages <= copied, sorted(packages - copied)
