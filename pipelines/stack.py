"""The local ZenML stack: default orchestrator and artifact store, MLflow tracker and registry.

``empathy-distill init`` calls :func:`ensure_local_stack`. It is idempotent: each
piece is looked up first and only created when missing, and every line it returns
says which happened. The MLflow tracker has no ``tracking_uri`` on purpose: ZenML
then keeps MLflow's SQLite store and artifacts inside the local artifact store,
next to the pipeline's own artifacts (so a test's ``ZENML_CONFIG_PATH`` in
``tmp_path`` holds everything).
"""

from __future__ import annotations

from pathlib import Path

from empathy_distill.errors import ConfigError

TRACKER_NAME = "empathy-mlflow-tracker"
REGISTRY_NAME = "empathy-mlflow-registry"
STACK_NAME = "empathy-local"


def ensure_local_stack(
    stack_name: str = STACK_NAME,
    tracker_name: str = TRACKER_NAME,
    registry_name: str = REGISTRY_NAME,
    repo_root: str | Path | None = None,
) -> list[str]:
    """Creates what is missing and activates the stack; returns one line per item."""
    from zenml.client import Client
    from zenml.enums import StackComponentType

    lines: list[str] = []
    root = Path(repo_root or Path.cwd()).resolve()
    found_root = Client.find_repository(root)
    if found_root is None:
        Client.initialize(root=root)
        lines.append(f"ZenML repository: created at {root}")
    else:
        lines.append(f"ZenML repository: found at {found_root}")

    client = Client()
    for name, ctype, flavor in (
        (tracker_name, StackComponentType.EXPERIMENT_TRACKER, "mlflow"),
        (registry_name, StackComponentType.MODEL_REGISTRY, "mlflow"),
    ):
        label = ctype.value.replace("_", " ")
        try:
            client.get_stack_component(ctype, name_id_or_prefix=name, allow_name_prefix_match=False)
            lines.append(f"{label} '{name}': found")
        except KeyError:
            client.create_stack_component(name=name, flavor=flavor, component_type=ctype, configuration={})
            lines.append(f"{label} '{name}': registered (flavor {flavor})")

    try:
        stack = client.get_stack(stack_name, allow_name_prefix_match=False)
        components = {t.value: [c.name for c in cs] for t, cs in stack.components.items()}
        wanted = {"experiment_tracker": [tracker_name], "model_registry": [registry_name]}
        if all(components.get(k) == v for k, v in wanted.items()):
            lines.append(f"stack '{stack_name}': found")
        else:
            client.update_stack(
                stack_name,
                component_updates={
                    StackComponentType.EXPERIMENT_TRACKER: [tracker_name],
                    StackComponentType.MODEL_REGISTRY: [registry_name],
                },
            )
            lines.append(f"stack '{stack_name}': found, components updated")
    except KeyError:
        client.create_stack(
            name=stack_name,
            components={
                StackComponentType.ORCHESTRATOR: "default",
                StackComponentType.ARTIFACT_STORE: "default",
                StackComponentType.EXPERIMENT_TRACKER: tracker_name,
                StackComponentType.MODEL_REGISTRY: registry_name,
            },
        )
        lines.append(f"stack '{stack_name}': registered")

    if client.active_stack_model.name == stack_name:
        lines.append(f"active stack: already '{stack_name}'")
    else:
        client.activate_stack(stack_name)
        lines.append(f"active stack: set to '{stack_name}'")
    lines.append(f"MLflow tracking URI: {mlflow_tracking_uri()}")
    return lines


def mlflow_tracking_uri() -> str:
    """The tracking URI of the active stack's MLflow tracker.

    Raises:
        ConfigError: the active stack has no experiment tracker.
    """
    from zenml.client import Client

    tracker = Client().active_stack.experiment_tracker
    if tracker is None:
        raise ConfigError(
            f"the active ZenML stack '{Client().active_stack_model.name}' has no experiment tracker; "
            "run `empathy-distill init` first"
        )
    return tracker.get_tracking_uri()
