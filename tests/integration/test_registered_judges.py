"""The judges in MLflow's scorer registry: an LLM judge as MLflow's own judge (its prompt, model and endpoint),
registered once per definition; the reference judge as code, only where the environment allows MLflow to run
registered code, and then the registered copy gives the reference judge's own verdicts; the fitted scorer never,
with the reason."""

from __future__ import annotations

import pytest

from empathy_distill.config import JudgeConfig, JudgeEndpointConfig
from empathy_distill.data.training_sets import user_turn
from empathy_distill.judging import registered
from empathy_distill.judging.reference import ReferenceJudge
from tests.real_models import mlflow_store


@pytest.fixture
def experiment(tmp_path):
    import mlflow

    with mlflow_store(tmp_path, "judges"):  # the URI and the active experiment reset after
        yield mlflow.get_experiment_by_name("judges").experiment_id


def llm(model: str) -> JudgeConfig:
    return JudgeConfig(
        name="local", kind="llm", endpoint=JudgeEndpointConfig(model=model, base_url="http://127.0.0.1:9/v1")
    )


def test_an_llm_judge_is_registered_once_per_definition(experiment, monkeypatch):
    from mlflow.genai.scorers import get_scorer, list_scorers

    monkeypatch.delenv("MLFLOW_SERVER_ENABLE_CUSTOM_SCORERS", raising=False)
    judges = [JudgeConfig(name="scorer", kind="scorer"), JudgeConfig(name="reference", kind="reference"), llm("m1")]
    said = registered.register_judges(judges, experiment)
    assert said["local"] == "registered as empathy-local v1"
    assert said["scorer"].startswith("not registered: fitted per run on the training ratings")
    assert said["reference"] == f"not registered: {registered.CUSTOM_CODE_REFUSED}"
    assert registered.register_judges(judges, experiment)["local"] == "registered as empathy-local v1"  # rerun
    judge = get_scorer(name="empathy-local", experiment_id=experiment)
    assert "Which response is more empathetic?" in judge.instructions and "{{ outputs }}" in judge.instructions
    assert registered.register_judges([llm("m2")], experiment)["local"] == "registered as empathy-local v2"
    assert [s.name for s in list_scorers(experiment_id=experiment)] == ["empathy-local"]


def test_the_registered_reference_judge_gives_the_reference_judges_verdicts(experiment, monkeypatch):
    from mlflow.genai.scorers import get_scorer

    monkeypatch.setenv("MLFLOW_SERVER_ENABLE_CUSTOM_SCORERS", "true")  # a trusted, self-managed store
    said = registered.register_judges([JudgeConfig(name="reference", kind="reference")], experiment)
    assert said == {"reference": "registered as empathy-reference v1"}
    loaded = get_scorer(name="empathy-reference", experiment_id=experiment)
    situation, utterance = "My dog died last week.", "I keep expecting him at the door."
    top = ["I'm so sorry. Losing a dog leaves a hole in every routine.", "That sounds so painful, he was family."]
    low = ["Dogs die, get a new one.", "Ok."]
    replies = [
        ("I'm so sorry, he was family and you miss him.", "What did you eat today?"),
        ("Get a new dog.", "That must be so hard, missing him at the door."),
        ("Ok.", "Ok."),
    ]
    direct = ReferenceJudge({user_turn(situation, utterance): (top, low)})
    for a, b in replies:
        got = loaded(
            inputs={"situation": situation, "utterance": utterance},
            outputs={"response_a": a, "response_b": b},
            expectations={"top_replies": top, "low_replies": low},
        )
        assert got.value == direct.verdicts([situation], [utterance], [a], [b])[0]
    assert [
        g.value
        for g in [
            loaded(
                inputs={"situation": situation, "utterance": utterance},
                outputs={"response_a": a, "response_b": b},
                expectations={"top_replies": top, "low_replies": low},
            )
            for a, b in replies[:2]
        ]
    ] == ["A", "B"]
