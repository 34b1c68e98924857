"""Fixes for ZenML 0.98 found by the Kubeflow compile check (tests/e2e/test_zenml_server.py), applied in-process.

Per-step Kubeflow pod settings never reach KFP: the compiler drops the legacy ``node_selectors``
key as an unknown attribute, and the settings' own validator then rebuilds ``pod_settings`` from
that (now missing) key, replacing explicit ``pod_settings`` with empty ones. KFP gets a GPU limit
only together with the ``accelerator`` node selector, so no step ever got a GPU. The fix keeps
explicit ``pod_settings`` by copying their node selectors into the key the validator reads.
Remove it when ZenML's ``KubeflowOrchestratorSettings`` keeps explicit pod settings.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

PATCHED_FOR = "0.98."
"""The ZenML release these patches of private APIs were written and tested against (pyproject pins it)."""


def patchable(what: str) -> bool:
    """True on the ZenML release the patches were written for; elsewhere a warning names the patch left out."""
    import zenml

    if zenml.__version__.startswith(PATCHED_FOR):
        return True
    logger.warning(
        "ZenML %s is not %sx: %s is not applied (check it is still needed)", zenml.__version__, PATCHED_FOR, what
    )
    return False


def apply() -> None:
    """Idempotent; a no-op without the kubeflow extra, or on a ZenML release it was not written for."""
    try:
        from pydantic import model_validator
        from zenml.integrations.kubeflow.flavors.kubeflow_orchestrator_flavor import KubeflowOrchestratorSettings
        from zenml.integrations.kubeflow.orchestrators.kubeflow_orchestrator import KubeflowOrchestrator
    except ImportError:
        return
    if getattr(KubeflowOrchestrator, "_pod_settings_kept", False) or not patchable("the Kubeflow pod-settings fix"):
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
