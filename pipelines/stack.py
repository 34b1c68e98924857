"""The ZenML stack: default orchestrator and artifact store, MLflow tracker and registry (embedded or a server).

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


AUTH_SECRET = "empathy-mlflow-auth"


def tracker_configuration(tracking_uri: str | None) -> tuple[dict[str, str], list[str]]:
    """The MLflow tracker's configuration for a tracking URI (None: the embedded store), and what was done.

    A tracking server's credentials come from MLflow's own variables at ``init`` time
    (``MLFLOW_TRACKING_USERNAME`` + ``MLFLOW_TRACKING_PASSWORD``, or ``MLFLOW_TRACKING_TOKEN``)
    and go into a ZenML secret; the component holds only ``{{secret.key}}`` references.

    Raises:
        ConfigError: a server URI without credentials in the environment.
    """
    import os

    if not tracking_uri:
        return {}, []
    if not tracking_uri.startswith(("http://", "https://")):
        return {"tracking_uri": tracking_uri}, []
    user, password, token = (os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"))
    if user and password:
        values, refs = {"username": user, "password": password}, {"tracking_username": "username", "tracking_password": "password"}
    elif token:
        values, refs = {"token": token}, {"tracking_token": "token"}
    else:
        raise ConfigError(f"the MLflow server at {tracking_uri} needs credentials: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
                          "(or MLFLOW_TRACKING_TOKEN) for this command; they are stored as a ZenML secret, never in a config")
    from zenml.client import Client

    client = Client()
    try:
        client.get_secret(AUTH_SECRET, allow_partial_name_match=False)
        client.update_secret(AUTH_SECRET, add_or_update_values=values)
        line = f"secret '{AUTH_SECRET}': updated from the environment"
    except KeyError:
        client.create_secret(AUTH_SECRET, values=values)
        line = f"secret '{AUTH_SECRET}': created from the environment"
    return {"tracking_uri": tracking_uri, **{k: f"{{{{{AUTH_SECRET}.{v}}}}}" for k, v in refs.items()}}, [line]


def ensure_local_stack(
    stack_name: str = STACK_NAME,
    tracker_name: str = TRACKER_NAME,
    registry_name: str = REGISTRY_NAME,
    repo_root: str | Path | None = None,
    tracking_uri: str | None = None,
) -> list[str]:
    """Creates what is missing and activates the stack; returns one line per item.

    Args:
        tracking_uri: a shared MLflow tracking server (``http://host:5000``) for the tracker and
            registry; None keeps the embedded store (SQLite inside ZenML's local artifact store).
            Given again with another value, the existing tracker is re-pointed.
    """
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
    tracker_config, secret_lines = tracker_configuration(tracking_uri)
    lines += secret_lines
    for name, ctype, flavor, config in (
        (tracker_name, StackComponentType.EXPERIMENT_TRACKER, "mlflow", tracker_config),
        (registry_name, StackComponentType.MODEL_REGISTRY, "mlflow", {}),
    ):
        label = ctype.value.replace("_", " ")
        try:
            found = client.get_stack_component(ctype, name_id_or_prefix=name, allow_name_prefix_match=False)
            current = found.configuration.get("tracking_uri") if ctype == StackComponentType.EXPERIMENT_TRACKER else None
            if ctype == StackComponentType.EXPERIMENT_TRACKER and tracking_uri is not None and current != tracking_uri:
                client.update_stack_component(name, ctype, configuration=config)
                lines.append(f"{label} '{name}': found, pointed at {tracking_uri}")
            else:
                lines.append(f"{label} '{name}': found")
        except KeyError:
            client.create_stack_component(name=name, flavor=flavor, component_type=ctype, configuration=config)
            lines.append(f"{label} '{name}': registered (flavor {flavor}" + (f", {tracking_uri})" if tracking_uri else ")"))

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
    if not tracker.config.is_local:
        tracker.configure_mlflow()  # a server: its credentials, from the ZenML secret, for this process's MLflow client
    return tracker.get_tracking_uri()
