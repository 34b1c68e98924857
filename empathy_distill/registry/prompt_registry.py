"""The prompt templates in MLflow's prompt registry: one prompt per template file, one version per distinct text.

The files in ``empathy_distill/prompts/`` stay the source of truth; the registry holds what each run and each
registered version was made with, so an auditor opens it in MLflow's UI ("Prompts"), compares two versions and
sees which runs and models use which. Registration is idempotent: a template whose text a version already holds
(its sha256 tag and its text) is that version, so a rerun adds none; an edited template gets a new version, and
editing it back finds the old one again. Placeholders are written in MLflow's double-brace form
(``${situation}`` -> ``{{situation}}``) so that the UI shows them as variables.

A registered model version records the prompt versions it used (tag ``lineage.prompts``); ``lineage --verify``
reads each back from the registry and compares its text with the template's (:func:`check_registry_prompts`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from empathy_distill.prompts import STUDENT_SYSTEM, load_template, templates_for

PREFIX = "empathy-distill."
SHA_TAG = "empathy_distill.sha256"
FILE_TAG = "empathy_distill.file"
LINEAGE_TAG = "lineage.prompts"
JUDGE_TEMPLATES = ("judge_system", "judge")

_PLACEHOLDER = re.compile(r"\$(?:\{(\w+)\}|(\$))")
_ALIAS_BAD = re.compile(r"[^\w-]")


@dataclass(frozen=True)
class PromptRef:
    """One template's version in the registry."""

    template: str
    name: str
    version: str
    sha256: str

    @property
    def uri(self) -> str:
        return f"prompts:/{self.name}/{self.version}"


def prompt_name(template: str) -> str:
    """The registry's name for a template file (``naive`` -> ``empathy-distill.naive``)."""
    return PREFIX + template


def registry_text(template_text: str) -> str:
    """A template in MLflow's placeholder form: ``${x}`` -> ``{{x}}``, ``$$`` -> ``$``."""
    return _PLACEHOLDER.sub(lambda m: "{{" + m.group(1) + "}}" if m.group(1) else "$", template_text)


def text_sha256(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def all_templates() -> list[str]:
    """Every template shipped in ``empathy_distill/prompts/``, sorted."""
    folder = resources.files("empathy_distill.prompts")
    return sorted(p.name.removesuffix(".txt") for p in folder.iterdir() if p.name.endswith(".txt"))


def used_templates(method: str, strategy: str, llm_judge: bool) -> list[str]:
    """The templates a run uses: the teacher's for its method and strategy (none for ``direct``), the student's
    system prompt, and the judge's when an LLM judge is configured."""
    teacher = [] if method == "direct" else templates_for(strategy, with_initial=method == "improve_llm")
    return [*teacher, STUDENT_SYSTEM, *(JUDGE_TEMPLATES if llm_judge else ())]


def prompt_alias(label: str) -> str:
    """An alias the registry accepts, from a model or config name (``empathy-student`` stays as it is)."""
    alias = _ALIAS_BAD.sub("-", label).strip("-") or "current"
    return alias if alias.lower() != "latest" and not re.fullmatch(r"v\d+", alias) else f"{alias}-prompts"


def _versions(client: Any, name: str) -> list[Any]:
    if client.get_prompt(name) is None:
        return []
    return list(client.search_prompt_versions(name, max_results=1000))


def sync_prompt(client: Any, template: str) -> PromptRef:
    """The registry's version holding this template's current text; registered when none does."""
    source = load_template(template)
    sha, text, name = text_sha256(source), registry_text(source), prompt_name(template)
    for version in _versions(client, name):
        if version.tags.get(SHA_TAG) == sha and version.template == text:
            return PromptRef(template, name, str(version.version), sha)
    created = client.register_prompt(
        name=name,
        template=text,
        commit_message=f"{template}.txt as shipped (sha256 {sha.removeprefix('sha256:')[:12]})",
        tags={SHA_TAG: sha, FILE_TAG: f"empathy_distill/prompts/{template}.txt"},
    )
    return PromptRef(template, name, str(created.version), sha)


def sync_prompts(client: Any, templates: list[str] | None = None, alias: str | None = None) -> dict[str, PromptRef]:
    """Every template (default: all shipped) registered where its text is new; ``alias`` moved onto each
    template's current version. Idempotent."""
    refs = {t: sync_prompt(client, t) for t in (templates if templates is not None else all_templates())}
    if alias:
        for ref in refs.values():
            client.set_prompt_alias(ref.name, prompt_alias(alias), int(ref.version))
    return refs


def run_prompt_uris(templates: list[str]) -> dict[str, str]:
    """Inside an active MLflow run: the templates registered where new, template -> ``prompts:/name/version``;
    outside one, nothing (no registry to write to)."""
    import mlflow

    if mlflow.active_run() is None:
        return {}
    return {t: ref.uri for t, ref in sync_prompts(mlflow.MlflowClient(), templates).items()}


def link_prompts(client: Any, refs: list[PromptRef], run_id: str | None = None, model_id: str | None = None) -> None:
    """The run (``mlflow.linkedPrompts``) and the logged model point at the prompt versions they used."""
    for ref in refs:
        if run_id:
            client.link_prompt_version_to_run(run_id, ref.uri)
        if model_id:
            client.link_prompt_version_to_model(ref.name, ref.version, model_id)


def lineage_value(refs: list[PromptRef]) -> str:
    """The ``lineage.prompts`` tag: the prompt versions a model version used, with their texts' hashes."""
    return json.dumps([asdict(r) for r in refs], sort_keys=True)


def recorded_refs(tags: dict[str, str]) -> list[PromptRef] | None:
    """The prompt versions a model version recorded, or None when it predates the registry."""
    raw = tags.get(LINEAGE_TAG)
    if not raw:
        return None
    return [PromptRef(**item) for item in json.loads(raw)]


def registry_mismatches(client: Any, refs: list[PromptRef], folder: str | Path | None = None) -> list[str]:
    """What no longer holds between the registry and the templates (the package's, or those in ``folder``), one
    line per prompt version: the version gone, its text edited in the registry since it was registered, or the
    template file edited since."""
    problems = []
    for ref in refs:
        try:
            version = client.get_prompt_version(ref.name, ref.version)
        except Exception:  # noqa: BLE001 (MLflow raises for a version it does not hold; a finding, not a crash)
            version = None
        if version is None:
            problems.append(f"{ref.uri} is gone from the registry")
            continue
        current = _template_text(ref.template, folder)
        if version.template == registry_text(current):
            continue
        if text_sha256(current) == ref.sha256:  # the file is as registered: the registry's copy was edited
            found = text_sha256(version.template).removeprefix("sha256:")[:12]
            problems.append(f"{ref.uri}: the registry's text (sha256 {found}) no longer matches {ref.template}.txt")
        else:
            problems.append(f"{ref.template}.txt changed since {ref.uri} was registered")
    return problems


def _template_text(template: str, folder: str | Path | None = None) -> str:
    if folder is not None:
        path = Path(folder) / f"{template}.txt"
        return path.read_text(encoding="utf-8").strip() if path.is_file() else "\0missing"
    try:
        return load_template(template)
    except KeyError:
        return "\0missing"
