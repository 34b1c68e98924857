"""The patches of ZenML's private APIs apply only on the release they were written for."""

from __future__ import annotations

import logging

import zenml
from zenml.utils import source_utils

from app.zenml_compat import PATCHED_FOR, patchable
from steps._zenml_speedups import cache_package_lookup


def test_the_suite_runs_on_the_release_the_patches_were_written_for():
    assert zenml.__version__.startswith(PATCHED_FOR)
    assert hasattr(source_utils._get_package_for_module, "cache_info")  # importing steps applied the speed-up


def test_another_release_gets_no_patch_and_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(zenml, "__version__", "0.99.1")
    with caplog.at_level(logging.WARNING, logger="app.zenml_compat"):
        assert not patchable("the Kubeflow pod-settings fix")
    assert "ZenML 0.99.1 is not 0.98.x: the Kubeflow pod-settings fix is not applied" in caplog.text
    plain = getattr(source_utils._get_package_for_module, "__wrapped__", source_utils._get_package_for_module)
    monkeypatch.setattr(source_utils, "_get_package_for_module", plain)
    cache_package_lookup()
    assert source_utils._get_package_for_module is plain
