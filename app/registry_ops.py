"""The registry commands (promote, rollback, lineage, serve, retrain, schedule) on the active stack.

The decisions themselves are core code (:mod:`empathy_distill.registry`); this layer
finds the stack's MLflow store, mirrors champion moves into ZenML's Model Control
Plane, and formats what the CLI prints.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

from empathy_distill.config import DistillConfig
from empathy_distill.errors import ConfigError
from empathy_distill.registry.promotion import version_label as _v


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` when set (as for MLflow's own CLI), else the active ZenML stack's tracker."""
    from app.stack import mlflow_tracking_uri

    return os.environ.get("MLFLOW_TRACKING_URI") or mlflow_tracking_uri()


def mlflow_client():
    import mlflow

    uri = tracking_uri()
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def promotions(config: DistillConfig):
    from empathy_distill.registry.promotion import Promotions

    return Promotions.open(tracking_uri(), config.registry.history)


def _version(p, model: str, version: str):
    from mlflow.exceptions import MlflowException

    try:
        return p.client.get_model_version(model, version)
    except MlflowException:
        raise ConfigError(f"model '{model}' has no version {version}") from None


def _evaluation_of(p, mv) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            return json.loads(
                Path(p.client.download_artifacts(mv.run_id, "evaluation/evaluation.json", tmp)).read_text()
            )
        except Exception:
            raise ConfigError(
                f"version {mv.version} has no evaluation report in its MLflow run {mv.run_id}: it cannot be gated"
            ) from None


def sync_zenml_stage(p, model: str, version: str | None) -> str:
    """Sets ZenML's production stage on the model version that produced ``version`` (archiving the previous one)."""
    if version is None:
        return "ZenML: no champion, stage unchanged"
    zen_id = p.client.get_model_version(model, version).tags.get("lineage.zenml_model_version_id")
    if not zen_id:
        return f"ZenML: v{version} names no ZenML model version; stage unchanged"
    from uuid import UUID

    from zenml.client import Client
    from zenml.enums import ModelStages

    try:
        Client().update_model_version(
            model_name_or_id=model, version_name_or_id=UUID(zen_id), stage=ModelStages.PRODUCTION, force=True
        )
    except KeyError:
        return f"ZenML: model version {zen_id} not found in this ZenML store; stage unchanged"
    return f"ZenML: model version {zen_id} set to production"


def decision_lines(entry: dict[str, Any]) -> list[str]:
    head = (
        f"v{entry['version']} PROMOTED to champion (was {_v(entry['previous'])})"
        if entry["promoted"]
        else f"v{entry['version']} not promoted; champion stays {_v(entry['champion_after'])}"
    )
    lines = [f"{entry['action']}: {head}; decision #{entry['seq']} recorded"]
    lines += [f"  reason: {r}" for r in entry["reasons"]]
    lines += [f"  repaired: {r}" for r in entry.get("repaired", [])]
    return lines


def promote(config: DistillConfig, version: str, force: bool = False, reason: str = "") -> tuple[int, list[str]]:
    """A manual promotion: the same gate as the pipeline's; ``force`` overrides it and records why."""
    from empathy_distill.registry.policy import gate, record_decision

    if force and not reason.strip():
        raise ConfigError("--force needs --reason: the history records why the gate was overridden")
    p = promotions(config)
    model = config.registry.model_name
    mv = _version(p, model, version)
    champion = p.alias(model)
    result = gate(_evaluation_of(p, mv), config.registry.policy, champion)
    entry = record_decision(
        p,
        model,
        version,
        champion,
        result,
        "forced" if force else "manual",
        f"cli:{_user()}",
        forced_because=reason if force else None,
    )
    lines = decision_lines(entry)
    if entry["promoted"]:
        lines.append(sync_zenml_stage(p, model, version))
        return 0, lines
    if not force and not result["passed"]:
        lines.append(
            f"refused by the gate: `empathy-distill promote --version {version} --force --reason '...'` overrides it "
            "(recorded)"
        )
    return 1, lines


def rollback(config: DistillConfig, reason: str = "") -> list[str]:
    p = promotions(config)
    entry = p.rollback(config.registry.model_name, actor=f"cli:{_user()}", reason=reason)
    return [*decision_lines(entry), sync_zenml_stage(p, config.registry.model_name, entry["champion_after"])]


def lineage(config: DistillConfig, uri: str, as_json: bool, verify: bool = False) -> tuple[int, list[str]]:
    """The audit of a version; with ``verify``, every claim re-checked (exit 1 when one does not hold)."""
    from app.leases import reap
    from empathy_distill.registry.lineage import audit, audit_lines

    reap(tracking_uri())  # a killed run shows failed in the audit, not running forever
    p = promotions(config)
    try:
        chain = audit(p.client, p.history, uri)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    zen = chain["zenml"]
    if zen["pipeline_run_id"]:
        from zenml.client import Client

        try:
            run = Client().get_pipeline_run(zen["pipeline_run_id"])
            zen.update(
                pipeline=run.pipeline.name if run.pipeline else None,
                status=run.status.value,
                steps={n: s.status.value for n, s in run.steps.items()},
            )
        except KeyError:
            chain["missing"].append(f"ZenML pipeline run {zen['pipeline_run_id']} (not in this ZenML store)")
    code = 0
    if verify:
        from empathy_distill.registry.verify import verify as verify_version

        v = chain["version"]
        chain["verify"] = verify_version(p.client, p.history, v["name"], v["version"], tracking_uri())
        code = 0 if chain["verify"]["ok"] else 1
    if as_json:
        return code, [json.dumps(chain, indent=2, default=str)]
    lines = audit_lines(chain)
    if verify:
        from empathy_distill.registry.verify import verify_lines

        lines += verify_lines(chain["verify"])
    return code, lines


def serve(config: DistillConfig, model: str | None, host: str, port: int) -> int:
    """Runs the stable server in the foreground: it answers with the champion and follows every promotion."""
    from deploy.server import port_free, quiet_loading, run
    from empathy_distill.registry.lineage import parse_model_uri

    uri = model or f"models:/{config.registry.model_name}@champion"
    try:
        name, version, alias = parse_model_uri(uri)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    from empathy_distill.registry.promotion import Promotions

    p = Promotions(mlflow_client(), history=None, lock=None)  # reading the registry needs no promotion history
    found = p.alias(name, alias) if alias else (version if _exists(p, name, version) else None)
    if found is None:
        raise ConfigError(
            f"{uri}: no such version or alias in the registry at {tracking_uri()}"
            + (" (promote a version first)" if alias == "champion" else "")
        )
    if not port_free(host, port):
        raise ConfigError(f"port {port} on {host} is in use: pass --port")
    cfg = config.registry.deploy
    follows = f"follows @{alias}" if alias else "pinned"
    print(
        f"serving {name} v{found} ({follows}) at http://{host}:{port} (POST /v1/chat/completions, GET /v1/models, "
        "POST /invocations, GET /health); Ctrl-C stops",
        file=sys.stderr,
        flush=True,
    )
    quiet_loading()
    try:
        run(
            name,
            tracking_uri(),
            host,
            port,
            Path(cfg.state_dir).resolve(),
            default=alias or str(version),
            max_concurrency=cfg.max_concurrency,
            poll_s=cfg.poll_s,
            max_loaded=cfg.max_loaded,
        )
    except RuntimeError as exc:
        raise ConfigError(str(exc)) from None
    return 0


def vllm_lines(config: DistillConfig, download_dir: str, host: str, port: int) -> list[str]:
    """Downloads the versions ``champion`` and ``challenger`` name and writes the ``vllm serve`` command that serves
    both as LoRA modules on their base (``download_dir/serve.sh``); returns what to print."""
    from empathy_distill.registry.promotion import Promotions
    from empathy_distill.registry.pyfunc import base_path, generation_defaults
    from empathy_distill.serving.pool import download, read_model
    from empathy_distill.serving.vllm import LoraModule, VllmError, adapter_rank, has_chat_template, render, serve_argv
    from empathy_distill.training.chat import FALLBACK_CHAT_TEMPLATE

    name = config.registry.model_name
    p = Promotions(mlflow_client(), history=None, lock=None)  # reading the registry needs no promotion history
    out = Path(download_dir).resolve()
    modules, configs, notes = [], {}, []
    try:
        for alias in ("champion", "challenger"):
            number = p.alias(name, alias)
            if number is None:
                notes.append(f"# no @{alias} in the registry")
                continue
            cfg, artifacts = read_model(download(name, number, tracking_uri(), out))
            base = base_path(cfg, artifacts)  # a reference base is checked against the fingerprint it trained with
            key = str(cfg.get("base_fingerprint") or base)
            module = LoraModule(alias, number, artifacts["adapter"], adapter_rank(artifacts["adapter"]), base, key)
            if modules and module.base_key != modules[0].base_key:
                notes.append(f"# @{alias} v{number} is on another base ({base}): left out (one vLLM server, one base)")
                continue
            modules.append(module)
            configs[alias] = cfg
    except (VllmError, RuntimeError) as exc:
        raise ConfigError(str(exc)) from None
    if not modules:
        raise ConfigError(f"'{name}' has no champion in the registry at {tracking_uri()}: promote a version first")
    cfg = configs[modules[0].name]
    template = cfg.get("chat_template")
    if not template and has_chat_template(modules[0].base) is False:
        template = FALLBACK_CHAT_TEMPLATE  # what training and our server used for a base without a template
    template_file = None
    if template:
        template_file = out / "chat_template.jinja"
        template_file.write_text(template)
    argv = serve_argv(
        modules,
        served_name=name,
        host=host,
        port=port,
        dtype=str(cfg.get("dtype", "auto")),
        chat_template_file=str(template_file) if template_file else None,
        generation=generation_defaults(cfg),
    )
    command = render(argv)
    served = ", ".join(f"{m.name} v{m.version}" for m in modules)
    (out / "serve.sh").write_text(f"#!/bin/sh\n# {name}: {served}\nexec {command}\n")
    (out / "serve.sh").chmod(0o755)
    lines = [
        f"# {name}: " + ", ".join(f"@{m.name} = v{m.version} (LoRA rank {m.rank})" for m in modules),
        *notes,
        f"# versions downloaded to {out}; the command is also in {out / 'serve.sh'}",
    ]
    system_prompt = cfg.get("system_prompt") or ""
    if system_prompt:
        (out / "system_prompt.txt").write_text(system_prompt)
        lines.append(
            f"# vLLM does not add the registered system prompt (our server does): send {out / 'system_prompt.txt'} "
            "as the first message"
        )
    lines.append(f"# clients: base_url http://{host}:{port}/v1, model " + " or ".join(f'"{m.name}"' for m in modules))
    return [*lines, command]


def retrain(config: DistillConfig, force: bool = False, enable_cache: bool = True) -> list[str]:
    """Runs the distill pipeline only when an input differs from what the champion was trained on."""
    from app.runner import prepared, run_pipeline
    from empathy_distill.data.hashing import file_fingerprint
    from empathy_distill.registry.inputs import input_hashes
    from empathy_distill.registry.retrain import decide

    p = promotions(config)
    model = config.registry.model_name
    ready = prepared(config, needs_teacher=False, needs_student=False)
    now = input_hashes(ready, file_fingerprint(ready.data.path))
    run, line = decide(p.client, model, p.alias(model), now, force)
    if not run:
        return [line]
    return [line, *run_pipeline("distill", config, enable_cache=enable_cache, scheduled=False)]


def schedule_lines(config: DistillConfig, config_path: str) -> list[str]:
    """``schedule.cron`` for retraining: on an orchestrator that schedules, the ``retrain`` pipeline registered
    with it; else the crontab line, and a systemd user service and timer written as two files, that call
    ``retrain`` (the local stack runs no schedules)."""
    from zenml.client import Client

    from empathy_distill.scheduling import ScheduleError, cron_to_oncalendar, systemd_units

    if not config.schedule.cron:
        raise ConfigError(f"{config_path}: schedule.cron is not set (e.g. --set schedule.cron='0 3 * * 1')")
    try:
        cron_to_oncalendar(config.schedule.cron)  # refused here, in one line, before anything is registered
    except ScheduleError as exc:
        raise ConfigError(str(exc)) from None
    if Client().active_stack.orchestrator.config.is_schedulable:
        from app.runner import attach_schedule, prepared, schedule_retrain

        return schedule_retrain(prepared(config, needs_teacher=False, needs_student=False), attach_schedule(config))
    repo = Path.cwd().resolve()
    cli = Path(sys.executable).parent / "empathy-distill"
    zen = os.environ.get("ZENML_CONFIG_PATH")
    env = f"ZENML_CONFIG_PATH={shlex.quote(zen)} " if zen else ""
    cfg = shlex.quote(str(Path(config_path).resolve()))
    log = shlex.quote(str(repo / "retrain.log"))
    command = f"cd {shlex.quote(str(repo))} && {env}{cli} retrain --config {cfg} >> {log} 2>&1"
    units = systemd_units(
        config.schedule.cron, str(repo), f"{cli} retrain --config {cfg}", {"ZENML_CONFIG_PATH": zen} if zen else None
    )
    folder = repo / ".cache" / "schedule"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in units.items():
        (folder / name).write_text(text)
    lines = [
        "# crontab -e, then add (runs only when an input changed since the champion):",
        f"{config.schedule.cron} {command}",
        "",
        f"# or a systemd user timer, written to {folder}:",
        f"#   cp {folder}/empathy-retrain.* ~/.config/systemd/user/ && systemctl --user daemon-reload",
        "#   systemctl --user enable --now empathy-retrain.timer",
    ]
    for name, text in units.items():
        lines += [f"# --- {name}", *text.rstrip().splitlines()]
    return lines


def _exists(p, name: str, version: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        p.client.get_model_version(name, version)
        return True
    except MlflowException:
        return False


def _user() -> str:
    return os.environ.get("USER") or "unknown"
