"""Stack files (configs/stacks/*.yaml): what init registers and what every run on that stack applies."""

from __future__ import annotations

import pytest
import yaml

from app.stack import load_stack_file
from empathy_distill.errors import ConfigError
from tests.conftest import REPO

KUBEFLOW = REPO / "configs" / "stacks" / "kubeflow.yaml"


def test_the_shipped_kubeflow_file_parses_with_gpus_on_the_student_steps():
    spec = load_stack_file(KUBEFLOW)
    assert spec.name == "empathy-kubeflow"
    assert {k: c.flavor for k, c in spec.components.items()} == {
        "orchestrator": "kubeflow",
        "artifact_store": "s3",
        "container_registry": "default",
        "image_builder": "local",
    }
    docker = spec.run.settings["docker"]
    assert docker["skip_build"] is True and docker["parent_image"].endswith(":0.1.0")
    for name in ("train_sft", "train_dpo", "generate_responses"):
        settings = spec.run.steps[name]["settings"]
        assert settings["resources"]["gpu_count"] == 1
        assert settings["orchestrator.kubeflow"]["pod_settings"]["node_selectors"]["accelerator"]


@pytest.mark.parametrize(
    "content, message",
    [
        ("name: x\ncomponents: {}\nextra: 1\n", "extra"),
        ("name: x\ncomponents: {orchestrator: {name: k}}\n", "flavor"),
        (
            "name: x\ncomponents: {experiment_tracker: {name: m, flavor: mlflow}}\n",
            "components.experiment_tracker: not a stack component type here",
        ),
        ("name: x\ncomponents: {}\nrun: {schedule: {cron_expression: '* * * * *'}}\n", "schedule"),
        ("name: [unclosed\n", "not a stack file"),
    ],
)
def test_a_bad_stack_file_is_one_line_naming_the_file(tmp_path, content, message):
    path = tmp_path / "stack.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as err:
        load_stack_file(path)
    assert str(err.value).startswith(f"{path}:") and message in str(err.value) and "\n" not in str(err.value)


def test_a_missing_stack_file(tmp_path):
    with pytest.raises(ConfigError, match="stack file not found"):
        load_stack_file(tmp_path / "nope.yaml")


def test_explicit_kubeflow_pod_settings_survive_validation_and_a_round_trip():
    pytest.importorskip("kfp")
    from zenml.integrations.kubeflow.flavors.kubeflow_orchestrator_flavor import KubeflowOrchestratorSettings
    from zenml.integrations.kubeflow.orchestrators.kubeflow_orchestrator import KubeflowOrchestrator

    from app import zenml_compat

    given = yaml.safe_load(KUBEFLOW.read_text())["run"]["steps"]["train_sft"]["settings"]["orchestrator.kubeflow"]
    # ZenML 0.98 as shipped: explicit pod settings are replaced with empty ones (no GPU ever reaches KFP)
    assert KubeflowOrchestratorSettings.model_validate(given).pod_settings.node_selectors == {}
    zenml_compat.apply()
    fixed = KubeflowOrchestrator.settings_class.fget(None)
    once = fixed.model_validate(given)
    again = fixed.model_validate(once.model_dump(exclude_unset=True))
    assert once.pod_settings.node_selectors == again.pod_settings.node_selectors == {"accelerator": "nvidia-tesla-a100"}
    legacy = fixed.model_validate({"node_selectors": {"accelerator": "t4"}})  # the older form still migrates
    assert legacy.pod_settings.node_selectors == {"accelerator": "t4"}


def test_importing_the_steps_makes_zenml_look_each_package_up_once(monkeypatch):
    import importlib.metadata

    from zenml.utils import source_utils

    import steps  # noqa: F401 - the import applies it

    lookup = source_utils._get_package_for_module
    assert lookup("pandas.core.frame") == lookup("pandas.core.frame") == "pandas"  # ZenML's answer, unchanged
    scans = []
    real = importlib.metadata.packages_distributions
    monkeypatch.setattr(importlib.metadata, "packages_distributions", lambda: scans.append(1) or real())
    lookup("pandas.core.frame")
    assert scans == []  # the second artifact of a type costs no scan of every installed distribution
