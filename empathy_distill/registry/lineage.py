"""Lineage: the tags a registered version carries, and the audit that walks them back to the data.

A version's tags name everything it came from (data hash, prompt hash, teacher and cost,
judges and figures, adapter hash, code commit, the ZenML run and model version, the MLflow
run, the input hashes of the retrain gate). :func:`audit` follows them: version -> MLflow
run (its logged reports and resolved config) -> ZenML run and model version -> data ->
prompts -> teacher -> training -> evaluation -> every promotion decision that touched the
version. Whatever cannot be found is listed under ``missing``, never skipped.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from empathy_distill.data.reports import BootstrapReport, IngestReport, TrainingSetReport
from empathy_distill.judging.results import EvaluationReport
from empathy_distill.registry.aliases import version_label
from empathy_distill.registry.history import GATE_HEADING
from empathy_distill.registry.inputs import PARTS, library_versions
from empathy_distill.registry.prompt_registry import recorded_refs
from empathy_distill.training.sources import gguf_origin

LINEAGE_TAGS = (
    "data_path",
    "data_hash",
    "prompt_hash",
    "method",
    "strategy",
    "teacher_model",
    "teacher_requests",
    "teacher_cost_usd",
    "judges",
    "eval_valid",
    "adapter_hash",
    "base_model",
    "git_commit",
    "zenml_run_id",
    "zenml_run_name",
    "zenml_model_version_id",
    "zenml_model_version",
    "mlflow_run_id",
    "champion_judged_against",
)


def base_label(base_model: str) -> str:
    """The base as a reader knows it: a GGUF base by its preset, package, file and sha256; any other as named."""
    origin = gguf_origin(base_model)
    if origin is None:
        return base_model
    package = f"{origin['package']}=={origin['package_version']}, " if origin.get("package") else ""
    name = origin.get("preset") or origin["path"]
    return f"{name} ({package}{origin['file']}, sha256 {origin['sha256']})"


def version_tags(
    *,
    ingest: IngestReport,
    bootstrap: BootstrapReport,
    teacher_model: str | None,
    evaluation: EvaluationReport,
    adapter_hash: str,
    base_model: str,
    git_commit: str,
    zenml: dict[str, str],
    mlflow_run_id: str,
    inputs: dict[str, str],
) -> dict[str, str]:
    """Every lineage tag of a new version, as strings (MLflow tag values)."""
    tags = {
        "lineage.data_path": ingest.data_path,
        "lineage.data_hash": ingest.data_hash,
        "lineage.prompt_hash": bootstrap.prompt_hash,
        "lineage.method": bootstrap.method,
        "lineage.strategy": bootstrap.strategy,
        "lineage.teacher_model": teacher_model or "none (method direct)",
        "lineage.teacher_requests": str(bootstrap.teacher_requests),
        "lineage.teacher_cost_usd": f"{bootstrap.cost_usd:.4f}",
        "lineage.judges": ",".join(evaluation.judges),
        "lineage.eval_valid": str(evaluation.valid).lower(),
        "lineage.adapter_hash": adapter_hash,
        "lineage.base_model": base_label(base_model),
        "lineage.git_commit": git_commit,
        "lineage.zenml_run_id": zenml.get("run_id", ""),
        "lineage.zenml_run_name": zenml.get("run_name", ""),
        "lineage.zenml_model_version_id": zenml.get("model_version_id", ""),
        "lineage.zenml_model_version": zenml.get("model_version", ""),
        "lineage.mlflow_run_id": mlflow_run_id,
        "lineage.champion_judged_against": evaluation.champion_version or "none",
        "lineage.libraries": json.dumps(library_versions(), sort_keys=True),
    }
    origin = gguf_origin(base_model)
    if origin is not None:  # what the version's base is, beyond the cache folder it was read from
        tags["lineage.base_gguf"] = json.dumps(
            {k: origin.get(k) for k in ("preset", "package", "package_version", "file", "sha256")}, sort_keys=True
        )
    for c in evaluation.comparisons:
        tags[f"eval.{c.opponent}.{c.judge}"] = (
            f"{c.win_rate:.3f} [{c.ci_low:.3f}, {c.ci_high:.3f}] n={c.n} invalid={c.invalid}"
        )
    tags.update({f"inputs.{k}": v for k, v in inputs.items()})
    return tags


def version_description(name: str, version: str, tags: dict[str, str]) -> str:
    """The lineage summary for the model version's page in MLflow (Markdown): data, prompts, teacher, base,
    adapter, judged figures, code. Promotion decisions are appended under :data:`GATE_HEADING` as they are made."""
    t = {k.removeprefix("lineage."): v for k, v in tags.items() if k.startswith("lineage.")}
    figures = [
        f"  - vs {k.split('.')[1]} ({k.split('.')[2]}): {v}" for k, v in sorted(tags.items()) if k.startswith("eval.")
    ]
    lines = [
        f"**Lineage** (`empathy-distill lineage models:/{name}/{version} --verify` re-checks it)",
        "",
        f"- data: `{t.get('data_path', '?')}`, hash `{t.get('data_hash', '?')[:19]}`",
        f"- prompts: {t.get('method', '?')}/{t.get('strategy', '?')}, hash `{t.get('prompt_hash', '?')[:19]}`; "
        f"versions: {', '.join(f'`{r.uri}`' for r in recorded_refs(tags) or []) or 'none recorded'}",
        f"- teacher: {t.get('teacher_model', '?')}, {t.get('teacher_requests', '?')} requests, "
        f"${t.get('teacher_cost_usd', '?')}",
        f"- base: `{t.get('base_model', '?')}`",
        f"- adapter: `{t.get('adapter_hash', '?')}`",
        f"- judged by {t.get('judges', '?')} (valid: {t.get('eval_valid', '?')}; against champion "
        f"{t.get('champion_judged_against', '?')}), win rate [95% CI]:",
        *figures,
        f"- code: git `{t.get('git_commit', '?')}`; MLflow run `{t.get('mlflow_run_id', '?')}`; ZenML run "
        f"`{t.get('zenml_run_name', '?')}`",
        "",
        GATE_HEADING,
        "",
    ]
    return "\n".join(lines)


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` -> (name, version, alias).

    Raises:
        ValueError: anything else.
    """
    match = re.fullmatch(r"models:/([^/@]+)(?:@([\w-]+)|/(\d+))", uri.strip())
    if not match:
        raise ValueError(f"'{uri}' is not models:/NAME@ALIAS or models:/NAME/VERSION")
    return match.group(1), match.group(3), match.group(2)


RUN_REPORTS: tuple[tuple[str, str, type[BaseModel] | None], ...] = (
    ("config", "config/resolved.json", None),
    ("ingest", "ingest/report.json", IngestReport),
    ("bootstrap", "bootstrap/report.json", BootstrapReport),
    ("training_sets", "training_sets/report.json", TrainingSetReport),
    ("evaluation", "evaluation/evaluation.json", EvaluationReport),
    ("promotion", "promotion/decision.json", None),
)
"""The run's artifacts an audit reads: (key in the chain, path in the run, the report type it reads back as; None:
a plain JSON document)."""


def audit(client: Any, history: Any, uri: str) -> dict[str, Any]:
    """The whole chain for one version or alias (see the module docstring).

    Raises:
        ValueError: a malformed URI, or no such version or alias.
    """
    from mlflow.exceptions import MlflowException

    name, version, alias = parse_model_uri(uri)
    try:
        mv = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    except MlflowException as exc:
        raise ValueError(f"{uri}: not found in the registry ({exc.message.splitlines()[0]})") from None
    tags = dict(mv.tags)
    missing = [f"version tag lineage.{t}" for t in LINEAGE_TAGS if f"lineage.{t}" not in tags]
    out: dict[str, Any] = {"uri": uri, "version": _version_record(name, mv)}
    run = _find_run(client, mv.run_id, missing)
    reports: dict[str, Any] = {}
    if run is not None:
        reports = _run_reports(client, run.info.run_id, missing)
        out["mlflow_run"] = _run_record(run)
    out.update(_chain_sections(tags, reports, run.data.params if run is not None else {}))
    out["promotions"] = history.entries(name, str(mv.version)) if history is not None else []
    if history is None:
        missing.append("the promotion history (not reachable)")
    out["missing"] = missing
    return out


def _version_record(name: str, mv: Any) -> dict[str, Any]:
    return {
        "name": name,
        "version": str(mv.version),
        "aliases": list(getattr(mv, "aliases", []) or []),
        "created": mv.creation_timestamp,
        "source": mv.source,
        "run_id": mv.run_id,
        "status": mv.status,
    }


def _find_run(client: Any, run_id: str | None, missing: list[str]) -> Any:
    """The version's MLflow run, or None with what is missing said."""
    from mlflow.exceptions import MlflowException

    if not run_id:
        missing.append("the MLflow run (the version names none)")
        return None
    try:
        return client.get_run(run_id)
    except MlflowException:
        missing.append(f"MLflow run {run_id} (deleted?)")
        return None


def _run_reports(client: Any, run_id: str, missing: list[str]) -> dict[str, Any]:
    """The run's reports (:data:`RUN_REPORTS`) that are there; each one absent is said in ``missing``."""
    reports = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key, path, kind in RUN_REPORTS:
            try:
                text = Path(client.download_artifacts(run_id, path, tmp)).read_text()
            except Exception:
                missing.append(f"run artifact {path}")
                continue
            try:
                reports[key] = kind.model_validate_json(text) if kind else json.loads(text)
            except (ValidationError, ValueError) as exc:
                missing.append(f"run artifact {path} (unreadable: {' '.join(str(exc).split())[:200]})")
    return reports


def _run_record(run: Any) -> dict[str, Any]:
    return {
        "run_id": run.info.run_id,
        "run_name": run.info.run_name,
        "experiment_id": run.info.experiment_id,
        "status": run.info.status,
        "datasets": [
            {
                "name": d.dataset.name,
                "digest": d.dataset.digest,
                "source": d.dataset.source,
                "context": next((t.value for t in d.tags if t.key == "mlflow.data.context"), None),
            }
            for d in run.inputs.dataset_inputs
        ],
    }


def _chain_sections(tags: dict[str, str], reports: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
    """The chain's sections from the version's tags, the run's reports and its params: ZenML, data, prompts,
    teacher, training, evaluation, code, inputs."""
    config = reports.get("config", {})
    ingest: IngestReport | None = reports.get("ingest")
    boot: BootstrapReport | None = reports.get("bootstrap")
    usage = boot.teacher_usage if boot else None
    sets: TrainingSetReport | None = reports.get("training_sets")
    evaluation: EvaluationReport | None = reports.get("evaluation")
    zen = ("pipeline_run_id", "run_id"), ("pipeline_run_name", "run_name"), ("model_version_id", "model_version_id")
    counts = ("format", "rows_kept", "rows_quarantined", "quarantine_reasons", "train_dialogues", "test_dialogues")
    return {
        "zenml": {key: tags.get(f"lineage.zenml_{tag}") for key, tag in (*zen, ("model_version", "model_version"))},
        "data": {
            "path": tags.get("lineage.data_path", ingest.data_path if ingest else None),
            "hash": tags.get("lineage.data_hash", ingest.data_hash if ingest else None),
            **{key: getattr(ingest, key, None) for key in counts},
        },
        "prompts": {
            "hash": tags.get("lineage.prompt_hash"),
            "method": tags.get("lineage.method"),
            "strategy": tags.get("lineage.strategy"),
            "all_templates_hash": tags.get("inputs.prompts"),
            "registry": [r.uri for r in recorded_refs(tags) or []],
        },
        "teacher": {
            "model": tags.get("lineage.teacher_model"),
            "requests": usage.requests if usage else tags.get("lineage.teacher_requests"),
            "cost_usd": usage.cost_usd if usage else tags.get("lineage.teacher_cost_usd"),
            "prompt_tokens": usage.prompt_tokens if usage else None,
            "completion_tokens": usage.completion_tokens if usage else None,
        },
        "training": {
            "adapter_hash": tags.get("lineage.adapter_hash"),
            "base_model": tags.get("lineage.base_model"),
            "config": config.get("training"),
            "student": config.get("student"),
            "sets": sets.as_json() if sets else None,
            "stages": {k: v for k, v in params.items() if k.startswith(("sft.", "dpo."))},
        },
        "evaluation": {
            "judges": tags.get("lineage.judges", "").split(",") if tags.get("lineage.judges") else [],
            "valid": evaluation.valid if evaluation else tags.get("lineage.eval_valid"),
            "invalid_reasons": evaluation.invalid_reasons if evaluation else None,
            "ci_method": evaluation.ci_method if evaluation else None,
            "champion_judged_against": tags.get("lineage.champion_judged_against"),
            "comparisons": [
                {"opponent": c.opponent, "judge": c.judge, **c.figures()}
                for c in (evaluation.comparisons if evaluation else [])
            ],
        },
        "code": {"git_commit": tags.get("lineage.git_commit")},
        "inputs": {p: tags.get(f"inputs.{p}") for p in (*PARTS, "all")},
    }


def audit_lines(chain: dict[str, Any]) -> list[str]:
    """The chain as text, one link per line, top to bottom."""
    v, d, p, t, tr, e, z = (
        chain[k] for k in ("version", "data", "prompts", "teacher", "training", "evaluation", "zenml")
    )
    run = chain.get("mlflow_run", {})
    lines = [
        f"{v['name']} v{v['version']}" + (f" (aliases: {', '.join(v['aliases'])})" if v["aliases"] else ""),
        f"  MLflow run:   {run.get('run_id', '?')} ({run.get('run_name', '?')}); datasets: "
        + (
            ", ".join(f"{s['name']} [{s['context']}] {str(s['digest'])[:12]}" for s in run.get("datasets", []))
            or "none"
        ),
        f"  ZenML:        pipeline run {z['pipeline_run_name'] or '?'} ({z['pipeline_run_id'] or '?'}), model "
        f"version {z['model_version'] or '?'} ({z['model_version_id'] or '?'})",
        f"  data:         {d['path']} hash {d['hash']}; rows kept {d['rows_kept']}, quarantined "
        f"{d['rows_quarantined']} {d['quarantine_reasons'] or ''}".rstrip(),
        f"  prompts:      {p['method']}/{p['strategy']} hash {p['hash']} (all templates {p['all_templates_hash']})",
        f"  prompt versions: {', '.join(p.get('registry') or []) or 'none recorded'}",
        f"  teacher:      {t['model']}, {t['requests']} requests, ${float(t['cost_usd'] or 0):.4f}",
        f"  training:     adapter {tr['adapter_hash']} on base {tr['base_model']}",
        f"  evaluation:   judges {', '.join(e['judges']) or '?'}; valid {e['valid']}; vs champion "
        f"{e['champion_judged_against']}",
    ]
    for c in e["comparisons"]:
        lines.append(
            f"                vs {c['opponent']:<8} {c['judge']}: {c['win_rate']:.3f} [{c['ci_low']:.3f}, "
            f"{c['ci_high']:.3f}] W/T/L {c['wins']}/{c['ties']}/{c['losses']}, invalid {c['invalid']}"
        )
    lines.append(f"  code:         git {chain['code']['git_commit']}")
    if chain["promotions"]:
        lines.append("  promotions:")
        for h in chain["promotions"]:
            lines.append(
                f"    #{h['seq']} {h['time']} {h['action']}: v{h['version']} {h['decision']} (champion "
                f"{version_label(h['previous'])} -> {version_label(h['champion_after'])}, {h['status']})"
                + (f"; {'; '.join(h['reasons'])}" if h["reasons"] else "")
            )
    else:
        lines.append("  promotions:   none recorded")
    lines.append("  missing:      " + ("; ".join(chain["missing"]) if chain["missing"] else "nothing"))
    return lines
