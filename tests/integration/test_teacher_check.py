"""The teacher check: a sample's rewrites judged against their originals before the bootstrap is paid.

The judge here is a stand-in with a rule that can be read (a reply saying "I am here with you" wins, in either
position; no recorded reply of the sample says it), so the
tests say what the check does with its verdicts: a rewrite the parser refuses or a request that fails is a loss, the
check passes only when the interval lies above one half, and with ``teacher.check`` a failing teacher stops the run
before any bootstrap request beyond the sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from empathy_distill.config import BootstrapConfig, load_config
from empathy_distill.data.ingest import ingest
from empathy_distill.teacher.check import check_teacher, verdict
from empathy_distill.teacher.types import ChatRequest, ChatResult, TeacherError, Usage
from tests.conftest import SAMPLE_DATA


@dataclass
class PrefersPresence:
    name: str = "presence"
    marker: str = "I am here with you"

    def verdicts(self, situations, utterances, first, second):
        def says(text):
            return self.marker in str(text)

        return ["A" if says(a) > says(b) else "B" if says(b) > says(a) else "tie" for a, b in zip(first, second)]


class ScriptedTeacher:
    """Answers every request with ``reply`` (or fails it): the shape of any teacher client."""

    def __init__(self, reply: str | None):
        self.reply = reply
        self.usage = Usage()
        self.budget = None
        self.sent = 0

    def request(self, messages, tag: str = "") -> ChatRequest:
        return ChatRequest(tuple(messages), "scripted", 0.0, 64, 0, tag)

    async def complete_many(self, requests, desc: str = "teacher"):
        self.sent += len(requests)
        out = []
        for req in requests:
            result = (
                ChatResult(key=req.key, error="connection reset")
                if self.reply is None
                else ChatResult(key=req.key, text=self.reply, prompt_tokens=10, completion_tokens=5, attempts=1)
            )
            self.usage.add(req.tag, result, 0.0)
            out.append(result)
        return out

    async def aclose(self) -> None:
        return None


LONG = (
    "Improved response: That sounds like a lot to carry, and it makes sense that you feel shaken by it. "
    "I am here with you; would it help to tell me what weighs on you most right now?"
)


@pytest.fixture(scope="module")
def table():
    """The demo's sample: 9 train dialogues (the check takes the first of the bootstrap's seeded order)."""
    config = load_config(None, [f"data.path={SAMPLE_DATA}"])
    return ingest(config.data.path, config.data, config.validation).table


def test_a_teacher_whose_rewrites_win_passes_and_one_no_better_than_its_originals_does_not(table):
    boot = BootstrapConfig(method="improve_human", strategy="naive")
    good = check_teacher(table, boot, ScriptedTeacher(LONG), [PrefersPresence()], sample=8)
    bad = check_teacher(table, boot, ScriptedTeacher("Improved response: ok."), [PrefersPresence()], sample=8)
    assert good.dialogues == bad.dialogues == 8 and good.kept == 8
    assert good.judges["presence"].wins == 8 and verdict(good).passed
    assert bad.judges["presence"].ties == 8 and not verdict(bad).passed  # no better than its originals
    assert "do not beat their originals beyond doubt" in verdict(bad).line


def test_refused_rewrites_and_failed_requests_count_as_losses_not_as_nothing(table):
    """A teacher that cannot write the format must not pass on the few rewrites it got right."""
    boot = BootstrapConfig(method="improve_human", strategy="naive")
    refusing = ScriptedTeacher("I'm sorry, but I can't help with that.")
    refusals = check_teacher(table, boot, refusing, [PrefersPresence()], 6)
    failures = check_teacher(table, boot, ScriptedTeacher(None), [PrefersPresence()], 6)
    for report in (refusals, failures):
        assert report.kept == 0 and report.judges["presence"].losses == 6
        assert report.judges["presence"].n == 6 and not verdict(report).passed
    assert refusals.parse_failures == 6 and refusals.parse_failure_rate == 1.0
    assert failures.failed == 6


def test_with_teacher_check_a_losing_teacher_stops_the_run_before_the_bootstrap(tmp_path, monkeypatch):
    import empathy_distill.standalone as standalone
    import empathy_distill.teacher as teacher_pkg
    import empathy_distill.teacher.check as check

    teacher = ScriptedTeacher("Improved response: ok.")
    monkeypatch.setattr(teacher_pkg, "build_teacher", lambda cfg, use_cache=True: teacher)
    monkeypatch.setattr(standalone, "build_teacher", lambda cfg, use_cache=True: teacher)
    monkeypatch.setattr(check, "build_teacher", lambda cfg, use_cache=True: teacher)
    monkeypatch.setattr(check, "offline_judges", lambda evaluation, table: [PrefersPresence()])
    config = load_config(
        None,
        [
            f"data.path={SAMPLE_DATA}",
            "bootstrap.method=improve_human",
            "bootstrap.strategy=naive",
            "teacher.check=true",
            "teacher.check_dialogues=6",
        ],
    )
    with pytest.raises(TeacherError, match="the bootstrap was not started"):
        standalone.sets_to_folder(config, tmp_path / "out")
    assert teacher.sent == 6  # the sample only
    assert (tmp_path / "out" / "teacher_check.json").exists()
    assert not (tmp_path / "out" / "bootstrap_log.parquet").exists()

    teacher.reply, teacher.sent = LONG, 0  # a teacher that wins: the check passes and the bootstrap runs
    standalone.sets_to_folder(config, tmp_path / "out")
    assert teacher.sent > 6 and (tmp_path / "out" / "bootstrap_log.parquet").exists()
