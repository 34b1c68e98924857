"""Scheduled retraining: ``schedule.cron`` as a ZenML schedule of the ``retrain`` pipeline on an orchestrator that
schedules, else a crontab line and a systemd timer (``empathy-distill schedule``). A retrain run by hand is
:func:`app.runner.run_retrain`."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from app import zenml_compat
from app.prepare import prepared
from app.stack import run_configuration
from empathy_distill.config import DistillConfig
from empathy_distill.errors import ConfigError
from empathy_distill.scheduling import ScheduleError, cron_to_oncalendar, systemd_units


def attach_schedule(config: DistillConfig):
    """A ZenML ``Schedule`` for ``schedule.cron`` on an orchestrator that runs schedules; None without a cron.

    Raises:
        ConfigError: a cron on an orchestrator that cannot schedule (the local one): says what to do instead.
    """
    if not config.schedule.cron:
        return None
    from zenml.client import Client
    from zenml.config.schedule import Schedule

    orchestrator = Client().active_stack.orchestrator
    if not orchestrator.config.is_schedulable:
        raise ConfigError(
            f"schedule.cron is set ('{config.schedule.cron}') but the orchestrator '{orchestrator.name}' "
            f"({orchestrator.flavor}) cannot run schedules: "
            "run `empathy-distill schedule --config CONFIG` for a crontab line (or systemd timer) that calls "
            "`empathy-distill retrain`, "
            "or use a stack whose orchestrator schedules (Kubeflow, Kubernetes, Vertex, SageMaker, AzureML, Airflow)"
        )
    return Schedule(cron_expression=config.schedule.cron)


def schedule_retrain(config: DistillConfig, schedule) -> list[str]:
    """Registers the ``retrain`` pipeline with the orchestrator on ``schedule``.

    Each tick runs the retrain gate at run time: the data fingerprint, the input hashes and the
    champion are read then, not frozen at the time the schedule was made, and ``distill`` is
    submitted only when an input differs from the champion's (what ``empathy-distill retrain`` does).
    """
    from zenml.client import Client

    # import-time: pipelines.retrain 3.4 s to import (app.scheduling alone 0.6 s)
    from pipelines.retrain import retrain

    zenml_compat.apply()
    run_config = run_configuration(config.stack)
    options = {"step_configurations": run_config.steps} if run_config.steps else {}
    retrain.with_options(
        schedule=schedule, run_name=f"retrain-{config.name}-{{date}}-{{time}}", settings=run_config.settings, **options
    )(config=config)
    stack = Client().active_stack_model
    return [
        f"scheduled: the retrain pipeline on cron '{config.schedule.cron}' on stack '{stack.name}'; "
        "each run starts distill only when an input differs from the champion's"
    ]


def schedule_lines(config: DistillConfig, config_path: str) -> list[str]:
    """``schedule.cron`` for retraining: on an orchestrator that schedules, the ``retrain`` pipeline registered
    with it; else the crontab line, and a systemd user service and timer written as two files, that call
    ``retrain`` (the local stack runs no schedules)."""
    from zenml.client import Client

    if not config.schedule.cron:
        raise ConfigError(f"{config_path}: schedule.cron is not set (e.g. --set schedule.cron='0 3 * * 1')")
    try:
        cron_to_oncalendar(config.schedule.cron)  # refused here, in one line, before anything is registered
    except ScheduleError as exc:
        raise ConfigError(str(exc)) from None
    if Client().active_stack.orchestrator.config.is_schedulable:
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
