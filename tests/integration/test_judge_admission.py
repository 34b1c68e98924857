"""Judge calibrations on record in MLflow, and the admission the evaluation reads from them."""

from __future__ import annotations

from empathy_distill.config import EvaluationConfig, JudgeConfig, JudgeEndpointConfig
from empathy_distill.judging.admission import admissions, judge_identity, record_calibration, recorded_calibrations

CALIBRATION = {
    "judge_accuracy": 0.58,
    "pairs": 220,
    "parse_rate": 0.95,
    "position_bias": 0.62,
    "judge_tie_rate": 0.3,
    "ci": [0.53, 0.63],
    "length_baseline_accuracy": 0.55,
}


def llm_judge(model: str) -> JudgeConfig:
    return JudgeConfig(
        name="local", kind="llm", endpoint=JudgeEndpointConfig(model=model, base_url="http://127.0.0.1:1/v1")
    )


def test_a_recorded_calibration_admits_that_judge_and_no_other(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    judge = llm_judge("smollm2-135m-instruct")
    cfg = EvaluationConfig(judges=[JudgeConfig(), judge], min_judge_agreement=0.55)
    assert admissions(cfg, uri)["local"]["admitted"] is False  # nothing on record yet
    identity = judge_identity(judge)
    run_id = record_calibration(identity, CALIBRATION, uri)
    (found,) = recorded_calibrations(identity["key"], uri)
    assert found["run_id"] == run_id and found["agreement"] == 0.58 and found["pairs"] == 220
    decided = admissions(cfg, uri)
    assert set(decided) == {"local"} and decided["local"]["admitted"], decided  # the scorer is not subject to it
    assert not admissions(cfg.model_copy(update={"min_judge_agreement": 0.6}), uri)["local"]["admitted"]
    other = EvaluationConfig(judges=[llm_judge("another-model")])
    assert not admissions(other, uri)["local"]["admitted"]  # a calibration is of one model and prompt


def test_an_endpoint_with_credentials_is_recorded_without_them():
    from empathy_distill.judging.admission import without_credentials

    judge = JudgeConfig(
        name="j",
        kind="llm",
        endpoint=JudgeEndpointConfig(model="m", base_url="https://user:s3cret@llm.example:8443/v1?k=1"),
    )
    assert judge_identity(judge)["endpoint"] == "https://llm.example:8443/v1"
    assert without_credentials("local:smollm2-135m-instruct") == "local:smollm2-135m-instruct"
