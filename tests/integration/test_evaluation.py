"""The evaluation path driven by a loopback judge with scripted preferences, and the offline scorer."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from empathy_distill.config import DataConfig, TeacherConfig, ValidationConfig
from empathy_distill.data.ingest import ingest
from empathy_distill.judging.evaluate import LLMJudge, ScorerJudge, evaluate, report_markdown, save_report
from empathy_distill.teacher import build_teacher
from empathy_distill.teacher.loopback import LoopbackServer
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
        client = build_teacher(TeacherConfig(base_url=server.base_url, model="judge", cache_path=str(tmp_path / "j.sqlite")))
        report = evaluate(frame(), [LLMJudge(client, name="loop")], {"base": "base_response", "human": "ref_human"})
        assert server.received == 2 * 2 * 40  # two opponents, both orders
    for comp in report["comparisons"]:
        assert comp["invalid"] == invalid and comp["n"] == 40
        if rate is not None:
            assert comp["win_rate"] == rate and comp["position_consistency"] == consistency
    paths = save_report(report, tmp_path / "report")
    assert paths["plot"].stat().st_size > 1000
    assert "| base | loop |" in report_markdown(report)


def test_two_judges_report_kappa(tmp_path):
    with LoopbackServer(preferences=prefers_kind) as s1, LoopbackServer(preferences=always_a) as s2:
        j1 = LLMJudge(build_teacher(TeacherConfig(base_url=s1.base_url, model="j1", cache_path=str(tmp_path / "1.sqlite"))), name="fair")
        j2 = LLMJudge(build_teacher(TeacherConfig(base_url=s2.base_url, model="j2", cache_path=str(tmp_path / "2.sqlite"))), name="biased")
        report = evaluate(frame(20), [j1, j2], {"base": "base_response"})
    assert report["agreement"][0]["judges"] == ["fair", "biased"]
    assert report["agreement"][0]["kappa"] == pytest.approx(0.0)  # one judge says win, the other tie, every time


def test_offline_scorer_prefers_rated_empathy_on_the_sample(tmp_path):
    from empathy_distill.judging.scorer import fit_scorer

    table = ingest(SAMPLE_DATA, DataConfig(path=str(SAMPLE_DATA)), ValidationConfig()).table
    scorer = fit_scorer(table, cache_dir=tmp_path)
    assert (tmp_path / next(p.name for p in tmp_path.iterdir())).is_dir()  # saved, reused next time
    again = fit_scorer(table, cache_dir=tmp_path)
    assert (again.weights == scorer.weights).all()
    test = table[table.split == "test"]
    wide = test.pivot_table(index="dialogue_id", columns="source", values="response", aggfunc="first").reset_index()
    ctx = test.groupby("dialogue_id").agg(situation=("situation", "first"), utterance=("utterance", "first")).reset_index()
    wide = wide.merge(ctx, on="dialogue_id").astype("string")
    report = evaluate(wide, [ScorerJudge(scorer)], {"human": "human"}, candidate="chatgpt")
    comp = report["comparisons"][0]
    assert comp["position_consistency"] == 1.0 and comp["invalid"] == 0
    assert comp["win_rate"] > 0.5  # recorded LLM replies were rated above the human ones


@pytest.mark.real_data
def test_scorer_calibration_on_the_real_file(real_data, capsys):
    from empathy_distill.judging.scorer import calibrate

    table = ingest(real_data, DataConfig(path=str(real_data)), ValidationConfig()).table
    subset = table[table.dialogue_id.isin(sorted(table.dialogue_id.unique())[:600])]  # 600 dialogues keep the test under a minute
    result = calibrate(subset, folds=3)
    with capsys.disabled():
        print(f"\nscorer calibration on 600 real dialogues: {result}")
    assert result["pairs"] > 2500
    assert result["scorer_accuracy"] > result["length_baseline_accuracy"]


def test_llm_judge_calibration_against_human_ratings(tmp_path):
    from empathy_distill.judging.evaluate import calibrate_judge

    table = ingest(SAMPLE_DATA, DataConfig(path=str(SAMPLE_DATA)), ValidationConfig()).table

    def prefers_longer(messages):
        text = messages[-1]["content"]
        a = re.search(r'Response A: "(.*)"', text).group(1)
        b = re.search(r'Response B: "(.*)"', text).group(1)
        return "Verdict: A" if len(a.split()) > len(b.split()) else "Verdict: B" if len(b.split()) > len(a.split()) else "Verdict: tie"

    with LoopbackServer(preferences=prefers_longer) as server:
        judge = LLMJudge(build_teacher(TeacherConfig(base_url=server.base_url, model="judge", cache_path=str(tmp_path / "c.sqlite"))), name="longer")
        result = calibrate_judge(table, judge, max_pairs=80)
    assert result["pairs"] == 80 and result["invalid"] == 0
    # a judge that only looks at length agrees with the length baseline
    assert result["judge_accuracy"] == pytest.approx(result["length_baseline_accuracy"], abs=1e-9)
    assert result["position_consistency"] == 1.0
