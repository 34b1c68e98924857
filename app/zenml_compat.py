"""Fixes for ZenML 0.98 found by the Kubeflow compile check (tests/e2e/test_zenml_server.py), applied in-process.

Per-step Kubeflow pod settings never reach KFP: the compiler drops the legacy ``node_selectors``
key as an unknown attribute, and the settings' own validator then rebuilds ``pod_settings`` from
that (now missing) key, replacing explicit ``pod_settings`` with empty ones. KFP gets a GPU limit
only together with the ``accelerator`` node selector, so no step ever got a GPU. The fix keeps
explicit ``pod_settings`` by copying their node selectors into the key the validator reads.
Remove it when ZenML's ``KubeflowOrchestratorSettings`` keeps explicit pod settings.
"""

from __future__ import annotations

from typing import Any


def apply() -> None:
    """Idempotent; a no-op without the kubeflow extra."""
    try:
        from pydantic import model_validator
        from zenml.integrations.kubeflow.flavors.kubeflow_orchestrator_flavor import KubeflowOrchestratorSettings
        from zenml.integrations.kubeflow.orchestrators.kubeflow_orchestrator import KubeflowOrchestrator
    except ImportError:
        return
    if getattr(KubeflowOrchestrator, "_pod_settings_kept", False):
        return

    class PodSettingsKept(KubeflowOrchestratorSettings):
        @model_validator(mode="before")
        @classmethod
        def _keep_explicit_pod_settings(cls, data: Any) -> Any:
            if isinstance(data, dict) and not data.get("node_selectors") and data.get("pod_settings"):
                pod = data["pod_settings"]
                selectors = pod.get("node_selectors") if isinstance(pod, dict) else getattr(pod, "node_selectors", None)
                if selectors:
                    data = {**data, "node_selectors": dict(selectors)}
            return data

    KubeflowOrchestrator.settings_class = property(lambda self: PodSettingsKept)
    KubeflowOrchestrator._pod_settings_kept = True
