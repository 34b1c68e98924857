"""The prompt templates in MLflow's prompt registry: one prompt per template, a new version only when a text
changes, an alias for what a model uses, links from a run and a logged model, and the registry's text checked
against the templates (a version edited in the store is named)."""

from __future__ import annotations

import sqlite3

import pytest

from empathy_distill.prompts import load_template
from empathy_distill.registry import prompt_registry as pr
from empathy_distill.registry.verify import check_prompt_registry
from tests.real_models import mlflow_store


@pytest.fixture
def client(tmp_path, monkeypatch):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with mlflow_store(tmp_path, "prompts"):  # the URIs and the active experiment reset after
        yield mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def versions(client, name: str) -> list[str]:
    return sorted(str(v.version) for v in client.search_prompt_versions(name))


def test_registration_is_idempotent_and_a_changed_text_gets_a_new_version(client, monkeypatch):
    refs = pr.sync_prompts(client, alias="empathy-student")
    assert set(refs) == set(pr.all_templates()) and len(refs) == 14
    names = {p.name for p in client.search_prompts()}
    assert names == {pr.prompt_name(t) for t in pr.all_templates()}
    naive = client.get_prompt_version("empathy-distill.naive", 1)
    assert naive.template == pr.registry_text(load_template("naive"))
    assert "{{situation}}" in naive.template and "${" not in naive.template  # MLflow's variables
    assert naive.tags[pr.SHA_TAG] == pr.text_sha256(load_template("naive"))
    assert client.get_prompt_version_by_alias("empathy-distill.naive", "empathy-student").version == 1

    assert pr.sync_prompts(client, alias="empathy-student") == refs  # a rerun adds no version
    assert versions(client, "empathy-distill.naive") == ["1"]

    edited = load_template("naive") + "\nKeep it short."
    real = pr.load_template
    monkeypatch.setattr(pr, "load_template", lambda name: edited if name == "naive" else real(name))
    changed = pr.sync_prompts(client, alias="empathy-student")
    assert changed["naive"].version == "2" and changed["system"].version == "1"
    assert client.get_prompt_version_by_alias("empathy-distill.naive", "empathy-student").version == 2
    monkeypatch.setattr(pr, "load_template", real)
    back = pr.sync_prompts(client, alias="empathy-student")
    assert back["naive"].version == "1" and versions(client, "empathy-distill.naive") == ["1", "2"]  # found again
    assert client.get_prompt_version_by_alias("empathy-distill.naive", "empathy-student").version == 1


def test_runs_and_logged_models_link_the_versions_they_used(client):
    import json

    import mlflow

    refs = pr.sync_prompts(client)
    used = [refs[t] for t in pr.used_templates("improve_human", "naive", llm_judge=True)]
    assert [r.template for r in used] == ["system", "naive", "student_system", "judge_system", "judge"]
    assert [r.template for r in (refs[t] for t in pr.used_templates("direct", "none", llm_judge=False))] == [
        "student_system"
    ]
    with mlflow.start_run() as run:
        model = mlflow.initialize_logged_model(name="student")
        pr.link_prompts(client, used, run_id=run.info.run_id, model_id=model.model_id)
    linked = json.loads(client.get_run(run.info.run_id).data.tags["mlflow.linkedPrompts"])
    assert sorted(p["name"] for p in linked) == sorted(r.name for r in used)
    on_model = json.loads(client.get_logged_model(model.model_id).tags["mlflow.linkedPrompts"])
    assert sorted(p["name"] for p in on_model) == sorted(r.name for r in used)


def test_verify_names_a_version_whose_text_was_edited_in_the_registry(client, tmp_path):
    refs = pr.sync_prompts(client)
    used = [refs[t] for t in pr.used_templates("improve_human", "naive", llm_judge=False)]
    tags = {pr.LINEAGE_TAG: pr.lineage_value(used)}
    check = check_prompt_registry(client, tags)
    assert check.ok and check.line.startswith("prompt registry: 3 versions match the templates"), check.line
    with sqlite3.connect(tmp_path / "mlflow.db") as db:  # someone edits the stored text behind the API
        db.execute(
            "UPDATE model_version_tags SET value = value || ' Be blunt.' "
            "WHERE name = 'empathy-distill.naive' AND version = 1 AND key = 'mlflow.prompt.text'"
        )
    check = check_prompt_registry(client, tags)
    assert not check.ok
    assert check.line.startswith(
        "prompt registry: prompts:/empathy-distill.naive/1: the registry's text (sha256 "
    ) and check.line.endswith("no longer matches naive.txt"), check.line
    # a version recorded but gone from the registry is named too
    gone = [pr.PromptRef("naive", "empathy-distill.naive", "7", used[1].sha256)]
    line = check_prompt_registry(client, {pr.LINEAGE_TAG: pr.lineage_value(gone)}).line
    assert line == "prompt registry: prompts:/empathy-distill.naive/7 is gone from the registry"
    # a version that predates the registry is not a failure
    assert check_prompt_registry(client, {}).ok
