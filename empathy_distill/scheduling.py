"""Cron expressions for local schedules: checked with croniter, and translated to a systemd timer.

A cron expression is parsed by croniter (the library ZenML's schedules use), so what is accepted
here is what cron accepts. systemd's ``OnCalendar`` cannot say everything cron says: when both
the day of the month and the weekday are restricted, cron fires on either and systemd only on
both, so such an expression is refused rather than translated into another schedule.
"""

from __future__ import annotations

from typing import Any

WEEKDAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")


class ScheduleError(ValueError):
    """A cron expression that cannot be used; the message says why, in one line."""


def parse_cron(expression: str) -> list[list[Any]]:
    """The five fields, expanded by croniter (``['*']`` for a field that allows every value).

    Raises:
        ScheduleError: not a five-field cron expression croniter accepts.
    """
    from croniter import croniter

    if len(expression.split()) != 5:
        raise ScheduleError(f"schedule.cron '{expression}': expected five fields (minute hour day month weekday)")
    try:
        fields, _ = croniter.expand(expression)
    except Exception as exc:  # noqa: BLE001 (croniter's errors are several classes; each is one line here)
        raise ScheduleError(f"schedule.cron '{expression}': not a cron expression ({exc})") from None
    return fields


def cron_to_oncalendar(expression: str) -> str:
    """The expression as a systemd ``OnCalendar`` value.

    Raises:
        ScheduleError: it cannot be parsed, or systemd cannot express it (day of month and weekday both set).
    """
    minutes, hours, days, months, weekdays = parse_cron(expression)
    if days != ["*"] and weekdays != ["*"]:
        raise ScheduleError(
            f"schedule.cron '{expression}': a day of the month and a weekday both set fire on either in cron but "
            "only on both in systemd; set one of them"
        )

    def listed(values: list[Any], width: int = 2) -> str:
        return "*" if values == ["*"] else ",".join(f"{v:0{width}d}" for v in values)

    weekday = "" if weekdays == ["*"] else ",".join(WEEKDAYS[int(w) % 7] for w in weekdays) + " "
    return f"{weekday}*-{listed(months)}-{listed(days)} {listed(hours)}:{listed(minutes)}:00"


def systemd_units(
    expression: str, workdir: str, exec_start: str, environment: dict[str, str] | None = None
) -> dict[str, str]:
    """``empathy-retrain.service`` and ``empathy-retrain.timer`` (the timer has ``[Install]``: it is what gets
    enabled; the service runs when the timer fires)."""
    env = [f"Environment={k}={v}" for k, v in (environment or {}).items()]
    service = "\n".join(
        [
            "[Unit]",
            "Description=empathy-distill retrain (runs only when an input changed since the champion)",
            "",
            "[Service]",
            "Type=oneshot",
            f"WorkingDirectory={workdir}",
            *env,
            f"ExecStart={exec_start}",
            "",
        ]
    )
    timer = "\n".join(
        [
            "[Unit]",
            f"Description=empathy-distill retrain on '{expression}'",
            "",
            "[Timer]",
            f"OnCalendar={cron_to_oncalendar(expression)}",
            "Persistent=true",
            "Unit=empathy-retrain.service",
            "",
            "[Install]",
            "WantedBy=timers.target",
            "",
        ]
    )
    return {"empathy-retrain.service": service, "empathy-retrain.timer": timer}
