"""Cron expressions for local schedules: parsed by croniter, written as a systemd timer that systemd accepts and
that fires when cron would; what systemd cannot express is refused in one line."""

from __future__ import annotations

import shutil
import subprocess
from datetime import datetime

import pytest

from empathy_distill.scheduling import ScheduleError, cron_to_oncalendar, systemd_units


@pytest.mark.parametrize(
    ("cron", "calendar"),
    [
        ("0 3 * * 1", "Mon *-*-* 03:00:00"),
        ("0 9-17 * * 1-5", "Mon,Tue,Wed,Thu,Fri *-*-* 09,10,11,12,13,14,15,16,17:00:00"),
        ("*/15 3 1 * *", "*-*-01 03:00,15,30,45:00"),
        ("30 2 * 1,7 0", "Sun *-01,07-* 02:30:00"),
        ("0 0 * * 7", "Sun *-*-* 00:00:00"),
    ],
)
def test_cron_becomes_oncalendar(cron, calendar):
    assert cron_to_oncalendar(cron) == calendar


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
@pytest.mark.parametrize("cron", ["0 3 * * 1", "0 9-17 * * 1-5", "*/15 3 1 * *", "30 2 * 1,7 0"])
def test_systemd_accepts_the_calendar_and_fires_when_cron_would(cron):
    from croniter import croniter

    proc = subprocess.run(
        ["systemd-analyze", "calendar", "--iterations=3", cron_to_oncalendar(cron)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    # systemd's next elapses (local time) against croniter's, from the same moment
    shown = [
        line.split(":", 1)[1].strip() for line in proc.stdout.splitlines() if "Next elapse" in line or "Iter." in line
    ]
    systemd = [datetime.strptime(" ".join(s.split()[1:3]), "%Y-%m-%d %H:%M:%S") for s in shown]
    assert len(systemd) == 3, proc.stdout
    it = croniter(cron, datetime.now())
    assert systemd == [it.get_next(datetime) for _ in systemd]


@pytest.mark.parametrize(
    ("cron", "says"),
    [
        ("0 3 * *", "expected five fields"),
        ("0 25 * * *", "not a cron expression"),
        ("every day", "expected five fields"),
        ("0 3 1 * 1", "set one of them"),
    ],
)
def test_what_cannot_be_translated_is_refused_in_one_line(cron, says):
    with pytest.raises(ScheduleError) as refused:
        cron_to_oncalendar(cron)
    assert says in str(refused.value) and "\n" not in str(refused.value)


def test_the_timer_is_installable_and_names_its_service():
    units = systemd_units("0 3 * * 1", "/srv/empathy", "/srv/empathy/.venv/bin/empathy-distill retrain --config c.yaml")
    timer, service = units["empathy-retrain.timer"], units["empathy-retrain.service"]
    assert "[Install]\nWantedBy=timers.target" in timer and "OnCalendar=Mon *-*-* 03:00:00" in timer
    assert "Unit=empathy-retrain.service" in timer
    assert (
        "[Service]\nType=oneshot" in service and "ExecStart=/srv/empathy/.venv/bin/empathy-distill retrain" in service
    )
