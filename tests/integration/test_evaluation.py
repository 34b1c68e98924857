"""The evaluation path driven by a loopback judge with scripted preferences, and the offline scorer."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from empathy_distill.config import DataConfig, JudgeEndpointConfig, TeacherConfig, ValidationConfig
from empathy_distill.data.ingest import ingest
from empathy_distill.judging.judges import LLMJudge
from empathy_distill.judging.protocol import evaluate
from empathy_distill.judging.report import report_markdown, save_report
from empathy_distill.judging.results import Comparison, EvaluationReport
from empathy_distill.judging.stats import win_rate_ci
from empathy_distill.teacher import build_teacher
from empathy_distill.testing.loopback import LoopbackServer
from tests.conftest import SAMPLE_DATA


def frame(n: int = 40) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "dialogue_id": [f"d{i}" for i in range(n)],
            "situation": [f"Situation {i}" for i in range(n)],
            "utterance": [f"Utterance {i}" for i in range(n)],
            "tuned_response": [f"I hear you, that sounds KIND hard number {i}." for i in range(n)],
            "base_response": [f"ok {i}" for i in range(n)],
            "ref_human": [f"Sorry to hear that {i}." for i in range(n)],
        }
    ).astype("string")


def prefers_kind(messages):
    """Prefers the response holding the word KIND, wherever it is shown."""
    text = messages[-1]["content"]
    a = re.search(r'Response A: "(.*)"', text).group(1)
    return "Verdict: A" if "KIND" in a else "Verdict: B"


def always_a(messages):
    return "After thinking about it. Verdict: A"


def rambles(messages):
    return "Both replies have merit."


@pytest.mark.parametrize(
    "script, rate, consistency, invalid",
    [(prefers_kind, 1.0, 1.0, 0), (always_a, 0.5, 0.0, 0), (rambles, None, None, 40)],
)
def test_scripted_judge_through_the_whole_path(tmp_path, script, rate, consistency, invalid):
    with LoopbackServer(preferences=script) as server:
        client = build_teacher(
            TeacherConfig(base_url=server.base_url, model="judge", cache_path=str(tmp_path / "j.sqlite"))
        )
        report = evaluate(frame(), [LLMJudge(client, name="loop")], {"base": "base_response", "human": "ref_human"})
        assert server.received == 2 * 2 * 40  # two opponents, both orders
    for comp in report.comparisons:
        assert comp.invalid == invalid and comp.n == 40
        if rate is not None:
            assert comp.win_rate == rate and comp.position_consistency == consistency
        else:  # nothing valid: the win rate stays NaN, it is not dropped or turned into a loss
            assert comp.win_rate != comp.win_rate
    assert report.valid is (invalid == 0)
    if invalid:
        assert report.invalid_reasons == [
            "base/loop: 40 of 40 comparisons invalid (100% > 10%)",
            "human/loop: 40 of 40 comparisons invalid (100% > 10%)",
        ]
    paths = save_report(report, tmp_path / "report")
    assert paths["plot"].stat().st_size > 1000
    # what MLflow keeps reads back as it was: a NaN win rate stays NaN (written as NaN, not null)
    again = EvaluationReport.read(paths["json"].read_text())
    assert again.model_dump_json() == report.model_dump_json() and again.valid is report.valid
    assert [c.win_rate != c.win_rate for c in again.comparisons] == [rate is None] * 2
    assert "| base | loop |" in report_markdown(report)


def test_the_invalid_threshold_is_per_judge_and_opponent(tmp_path):
    from empathy_distill.judging.protocol import mark_validity

    def report(invalid: int, most: float = 0.1, skipped: tuple[str, ...] = ()) -> EvaluationReport:
        counts = win_rate_ci([1.0] * (40 - invalid) + [None] * invalid)
        return EvaluationReport(
            candidate="tuned_response",
            comparisons=[Comparison.of("base", "j", counts)],
            max_invalid_fraction=most,
            skipped_opponents=list(skipped),
        )

    assert mark_validity(report(4)).valid  # 10% is allowed
    assert not mark_validity(report(5)).valid  # 12.5% is not
    assert mark_validity(report(5, most=0.2)).valid
    skipped = mark_validity(report(0, skipped=("llm",)))
    assert not skipped.valid and skipped.invalid_reasons == ["opponent 'llm': no responses in this data"]


def dead_endpoint(tmp_path) -> JudgeEndpointConfig:
    import socket

    with socket.socket() as sock:  # a port nobody listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return JudgeEndpointConfig(
        base_url=f"http://127.0.0.1:{port}/v1",
        model="judge",
        max_retries=1,
        backoff_base_s=0.01,
        cache_path=str(tmp_path / "dead.sqlite"),
    )


def test_a_judge_that_is_down_fails_loudly_or_makes_the_report_invalid(tmp_path):
    from empathy_distill.errors import JudgeError

    judge = LLMJudge(build_teacher(dead_endpoint(tmp_path)), name="down")
    with pytest.raises(
        JudgeError, match=r"judge 'down': 20 of 20 requests failed \(teacher request failed after 2 attempts"
    ):
        evaluate(frame(10), [judge], {"base": "base_response"})
    kept_going = LLMJudge(build_teacher(dead_endpoint(tmp_path)), name="down", on_error="continue")
    report = evaluate(frame(10), [kept_going], {"base": "base_response"})
    comp = report.comparisons[0]
    assert comp.invalid == 10 and comp.request_errors == 20 and comp.win_rate != comp.win_rate
    assert not report.valid and "base/down: 20 judge requests failed" in report.invalid_reasons
    assert "Valid: NO (" in report_markdown(report)


def test_llm_judges_sample_nothing_by_default():
    from empathy_distill.config import load_config

    cfg = load_config(
        None,
        ["evaluation.judges=[{name: gpt, kind: llm, endpoint: {base_url: 'http://127.0.0.1:1/v1', model: gpt-4o}}]"],
    )
    endpoint = cfg.evaluation.judges[0].endpoint
    assert endpoint.temperature == 0.0 and cfg.teacher.temperature == 0.7
    judge = LLMJudge(build_teacher(endpoint, use_cache=False), name="gpt")
    assert judge.client.request([("user", "x")]).openai_body()["temperature"] == 0.0
    warm = load_config(
        None, ["evaluation.judges=[{name: gpt, kind: llm, endpoint: {model: gpt-4o, temperature: 0.3}}]"]
    )
    assert warm.evaluation.judges[0].endpoint.temperature == 0.3  # still settable


def test_two_judges_report_kappa(tmp_path):
    with LoopbackServer(preferences=prefers_kind) as s1, LoopbackServer(preferences=always_a) as s2:
        j1 = LLMJudge(
            build_teacher(TeacherConfig(base_url=s1.base_url, model="j1", cache_path=str(tmp_path / "1.sqlite"))),
            name="fair",
        )
        j2 = LLMJudge(
            build_teacher(TeacherConfig(base_url=s2.base_url, model="j2", cache_path=str(tmp_path / "2.sqlite"))),
            name="biased",
        )
        report = evaluate(frame(20), [j1, j2], {"base": "base_response"})
    assert report.agreement[0].judges == ["fair", "biased"]
    assert report.agreement[0].kappa == pytest.approx(0.0)  # one judge says win, the other tie, every time


def test_offline_scorer_prefers_higher_rated_replies_on_held_out_sample_dialogues(tmp_path):
    from empathy_distill.judging.scorer import fit_scorer, rated_pairs, rated_rows

    table = ingest(SAMPLE_DATA, DataConfig(path=str(SAMPLE_DATA)), ValidationConfig()).table
    scorer = fit_scorer(table, cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 1  # saved, reused next time
    again = fit_scorer(table, cache_dir=tmp_path)
    assert (again.weights == scorer.weights).all()
    test = rated_rows(table[table.split == "test"]).reset_index(drop=True)  # dialogues the head never saw
    pairs = rated_pairs(test)
    score = scorer.score(list(test["context"]), list(test["response"]))
    assert len(pairs) >= 30
    assert (score[pairs[:, 0]] > score[pairs[:, 1]]).mean() > 0.6


def test_calibration_applies_the_deployed_tie_rule():
    from empathy_distill.judging.scorer import calibrate

    table = ingest(SAMPLE_DATA, DataConfig(path=str(SAMPLE_DATA)), ValidationConfig()).table
    sharp = calibrate(table, folds=3, margin=0.0)
    assert sharp["scorer_tie_rate"] == 0.0 and sharp["pairs"] > 100
    assert [f["pairs"] for f in sharp["per_fold"]] and sum(f["pairs"] for f in sharp["per_fold"]) == sharp["pairs"]
    blunt = calibrate(table, folds=3, margin=10.0)  # every score difference is inside the margin: all ties
    assert blunt["scorer_tie_rate"] == 1.0 and blunt["scorer_accuracy"] == 0.5
    # the length baseline is measured on the same pairs either way
    assert blunt["length_baseline_accuracy"] == sharp["length_baseline_accuracy"] and blunt["pairs"] == sharp["pairs"]


def test_calibrate_cli_uses_the_configured_margin(capsys):
    import json

    from app.cli import main

    assert main(["calibrate", "--data", str(SAMPLE_DATA), "--folds", "3", "--set", "evaluation.scorer_margin=10"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["margin"] == 10 and result["scorer_tie_rate"] == 1.0


@pytest.mark.real_data
def test_scorer_calibration_on_the_real_file(real_data, capsys):
    from empathy_distill.judging.scorer import calibrate

    table = ingest(real_data, DataConfig(path=str(real_data)), ValidationConfig()).table
    subset = table[
        table.dialogue_id.isin(sorted(table.dialogue_id.unique())[:600])
    ]  # 600 dialogues keep the test under a few minutes
    result = calibrate(subset, folds=3)
    with capsys.disabled():
        print(
            f"\nscorer calibration on 600 real dialogues: {result['scorer_accuracy']} (ties "
            f"{result['scorer_tie_rate']}) "
            f"vs length {result['length_baseline_accuracy']} on {result['pairs']} pairs"
        )
    assert result["pairs"] > 2500
    assert result["scorer_accuracy"] > result["length_baseline_accuracy"] + 0.03


def test_llm_judge_calibration_against_human_ratings(tmp_path):
    from empathy_distill.judging.calibration import calibrate_judge

    table = ingest(SAMPLE_DATA, DataConfig(path=str(SAMPLE_DATA)), ValidationConfig()).table

    def prefers_longer(messages):
        text = messages[-1]["content"]
        a = re.search(r'Response A: "(.*)"', text).group(1)
        b = re.search(r'Response B: "(.*)"', text).group(1)
        return (
            "Verdict: A"
            if len(a.split()) > len(b.split())
            else "Verdict: B"
            if len(b.split()) > len(a.split())
            else "Verdict: tie"
        )

    with LoopbackServer(preferences=prefers_longer) as server:
        judge = LLMJudge(
            build_teacher(
                TeacherConfig(base_url=server.base_url, model="judge", cache_path=str(tmp_path / "c.sqlite"))
            ),
            name="longer",
        )
        result = calibrate_judge(table, judge, max_pairs=80)
    assert result["pairs"] == 80 and result["invalid"] == 0
    # a judge that only looks at length agrees with the length baseline
    assert result["judge_accuracy"] == pytest.approx(result["length_baseline_accuracy"], abs=1e-9)
    assert result["judge_tie_rate"] == pytest.approx(
        result["length_tie_rate"], abs=1e-9
    )  # equal lengths: the judge says tie
    assert result["position_consistency"] == 1.0
