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
from typing import Any

from pydantic import BaseModel, ConfigDict

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
    user, password, token = (
        os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
    )
    if user and password:
        values, refs = (
            {"username": user, "password": password},
            {"tracking_username": "username", "tracking_password": "password"},
        )
    elif token:
        values, refs = {"token": token}, {"tracking_token": "token"}
    else:
        raise ConfigError(
            f"the MLflow server at {tracking_uri} needs credentials: set MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD "
            "(or MLFLOW_TRACKING_TOKEN) for this command; they are stored as a ZenML secret, never in a config"
        )
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


class ComponentSpec(BaseModel):
    """One stack component of a stack file: what ``zenml <type> register NAME --flavor F key=value`` takes."""

    model_config = ConfigDict(extra="forbid")
    name: str
    flavor: str
    configuration: dict[str, Any] = {}


class RunSection(BaseModel):
    """ZenML run settings: pipeline-wide ``settings`` and per-step ``steps.<name>.settings``."""

    model_config = ConfigDict(extra="forbid")
    settings: dict[str, Any] = {}
    steps: dict[str, dict[str, Any]] = {}


class StackFile(BaseModel):
    """A stack file (``configs/stacks/*.yaml``): the components to register, and the run settings to apply.

    ``run`` is a ZenML run configuration (``settings``, ``steps.<name>.settings``, as ``zenml pipeline run
    --config`` takes it) applied to every pipeline on this stack: the image, per-step resources.
    """

    model_config = ConfigDict(extra="forbid")
    name: str
    components: dict[str, ComponentSpec]
    run: RunSection = RunSection()


def load_stack_file(path: str | Path) -> StackFile:
    """Raises: ConfigError naming the file and what is wrong in it."""
    import yaml
    from pydantic import ValidationError
    from zenml.enums import StackComponentType

    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{file}: stack file not found")
    try:
        spec = StackFile.model_validate(yaml.safe_load(file.read_text()) or {})
    except (yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"{file}: not a stack file: {' '.join(str(exc).split())[:300]}") from None
    allowed = {t.value for t in StackComponentType} - {"experiment_tracker", "model_registry"}
    unknown = sorted(set(spec.components) - allowed)
    if unknown:
        raise ConfigError(
            f"{file}: components.{unknown[0]}: not a stack component type here (one of {', '.join(sorted(allowed))}; "
            "the MLflow tracker and registry come from --tracking-uri)"
        )
    return spec


def ensure_local_stack(
    stack_name: str = STACK_NAME,
    tracker_name: str = TRACKER_NAME,
    registry_name: str = REGISTRY_NAME,
    repo_root: str | Path | None = None,
    tracking_uri: str | None = None,
    stack_file: str | Path | None = None,
) -> list[str]:
    """Creates what is missing and activates the stack; returns one line per item.

    Args:
        tracking_uri: a shared MLflow tracking server (``http://host:5000``) for the tracker and
            registry; None keeps the embedded store (SQLite inside ZenML's local artifact store).
            Given again with another value, the existing tracker is re-pointed.
        stack_file: a stack file whose components (orchestrator, artifact store, ...) replace the
            local defaults; its ``name`` names the stack. Its remote components need a tracking server.

    Raises:
        ConfigError: a bad stack file, or a stack file without a tracking server.
    """
    from zenml.client import Client
    from zenml.enums import StackComponentType

    spec = load_stack_file(stack_file) if stack_file else None
    if spec is not None:
        stack_name = spec.name
        if not (tracking_uri or "").startswith(("http://", "https://")):
            raise ConfigError(
                f"{stack_file}: its steps run away from this machine, so they need a shared MLflow tracking server: "
                "pass --tracking-uri https://... (docs/production-stack.md)"
            )
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
    lines += _mlflow_components(client, tracker_name, registry_name, tracking_uri, tracker_config)
    wanted = {
        StackComponentType.ORCHESTRATOR: "default",
        StackComponentType.ARTIFACT_STORE: "default",
        StackComponentType.EXPERIMENT_TRACKER: tracker_name,
        StackComponentType.MODEL_REGISTRY: registry_name,
    }
    if spec is not None:
        lines += _file_components(client, spec, stack_file, wanted)
    lines += _activate_stack(client, stack_name, wanted)
    lines.append(f"MLflow tracking URI: {stack_tracking_uri()}")
    return lines


def _mlflow_components(
    client, tracker_name: str, registry_name: str, tracking_uri: str | None, tracker_config: dict
) -> list[str]:
    """The MLflow experiment tracker and model registry: found (the tracker re-pointed when the URI changed) or
    registered."""
    from zenml.enums import StackComponentType

    lines = []
    for name, ctype, flavor, config in (
        (tracker_name, StackComponentType.EXPERIMENT_TRACKER, "mlflow", tracker_config),
        (registry_name, StackComponentType.MODEL_REGISTRY, "mlflow", {}),
    ):
        label = ctype.value.replace("_", " ")
        try:
            found = client.get_stack_component(ctype, name_id_or_prefix=name, allow_name_prefix_match=False)
            current = (
                found.configuration.get("tracking_uri") if ctype == StackComponentType.EXPERIMENT_TRACKER else None
            )
            if ctype == StackComponentType.EXPERIMENT_TRACKER and tracking_uri is not None and current != tracking_uri:
                client.update_stack_component(name, ctype, configuration=config)
                lines.append(f"{label} '{name}': found, pointed at {tracking_uri}")
            else:
                lines.append(f"{label} '{name}': found")
        except KeyError:
            client.create_stack_component(name=name, flavor=flavor, component_type=ctype, configuration=config)
            lines.append(
                f"{label} '{name}': registered (flavor {flavor}" + (f", {tracking_uri})" if tracking_uri else ")")
            )
    return lines


def _file_components(client, spec: StackFile, stack_file, wanted: dict) -> list[str]:
    """A stack file's components, found (their configuration updated) or registered; ``wanted`` gets their names.

    Raises:
        ConfigError: a component registered under that name with another flavor.
    """
    from zenml.enums import StackComponentType

    lines = []
    for kind, component in spec.components.items():
        ctype = StackComponentType(kind)
        wanted[ctype] = component.name
        label = ctype.value.replace("_", " ")
        try:
            found = client.get_stack_component(ctype, name_id_or_prefix=component.name, allow_name_prefix_match=False)
            if found.flavor_name != component.flavor:
                raise ConfigError(
                    f"{stack_file}: components.{kind}: '{component.name}' is registered with flavor "
                    f"'{found.flavor_name}', "
                    f"not '{component.flavor}': rename it in the file"
                )
            if {k: found.configuration.get(k) for k in component.configuration} != component.configuration:
                client.update_stack_component(component.name, ctype, configuration=component.configuration)
                lines.append(f"{label} '{component.name}': found, configuration updated")
            else:
                lines.append(f"{label} '{component.name}': found")
        except KeyError:
            client.create_stack_component(
                name=component.name,
                flavor=component.flavor,
                component_type=ctype,
                configuration=component.configuration,
            )
            lines.append(f"{label} '{component.name}': registered (flavor {component.flavor})")
    return lines


def _activate_stack(client, stack_name: str, wanted: dict) -> list[str]:
    """The stack with the ``wanted`` components (registered or updated), made the active one."""
    lines = []
    try:
        stack = client.get_stack(stack_name, allow_name_prefix_match=False)
        components = {t: [c.name for c in cs] for t, cs in stack.components.items()}
        if all(components.get(t) == [n] for t, n in wanted.items()):
            lines.append(f"stack '{stack_name}': found")
        else:
            client.update_stack(stack_name, component_updates={t: [n] for t, n in wanted.items()})
            lines.append(f"stack '{stack_name}': found, components updated")
    except KeyError:
        client.create_stack(name=stack_name, components=wanted)
        lines.append(f"stack '{stack_name}': registered")

    if client.active_stack_model.name == stack_name:
        lines.append(f"active stack: already '{stack_name}'")
    else:
        client.activate_stack(stack_name)
        lines.append(f"active stack: set to '{stack_name}'")
    return lines


def run_configuration(stack_file: str | Path | None) -> RunSection:
    """The stack file's ZenML run settings, checked against the active stack (empty without a file).

    Raises:
        ConfigError: the active stack is not the one the file describes (``init --stack-file`` registers it).
    """
    if not stack_file:
        return RunSection()
    from zenml.client import Client

    spec = load_stack_file(stack_file)
    active = Client().active_stack_model.name
    if active != spec.name:
        raise ConfigError(
            f"stack is {stack_file} (stack '{spec.name}') but the active ZenML stack is '{active}': "
            f"run `empathy-distill init --stack-file {stack_file} --tracking-uri URI` first"
        )
    return spec.run


def stack_tracking_uri() -> str:
    """The tracking URI of the active stack's MLflow tracker, where pipeline runs log (``MLFLOW_TRACKING_URI`` is not
    read here: :func:`app.registry_ops.tracking_uri` honours it for the registry commands).

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
    uri = tracker.get_tracking_uri()
    if not tracker.config.is_local:
        require_answer(uri)
        tracker.configure_mlflow()  # a server: its credentials, from the ZenML secret, for this process's MLflow client
    return uri


def require_answer(uri: str, timeout_s: float = 10.0) -> None:
    """Raises :class:`ConfigError` when the tracking server at ``uri`` does not answer: found before any step runs,
    not in the first step that logs. Any HTTP answer counts (an auth error is for MLflow to report)."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s).close()
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(
            f"the MLflow tracking server at {uri} does not answer ({reason}); start it or fix the stack's tracker"
        ) from None
