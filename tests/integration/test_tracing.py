"""MLflow traces of the LLM work: a teacher stage against the loopback endpoint traced inside a run (a span per
sampled request with its prompt version, model, endpoint, tokens, latency, cache and parse outcome; no key), the
sample chosen by request hash and capped, nothing traced outside a run; an LLM judge's requests with their verdicts;
generation and judging batches as spans."""

from __future__ import annotations

import pytest

from empathy_distill.config import BootstrapConfig, DataConfig, TeacherConfig, TraceSettings, ValidationConfig
from empathy_distill.data.ingest import ingest
from empathy_distill.registry.prompt_registry import run_prompt_uris
from empathy_distill.teacher import build_teacher
from empathy_distill.teacher.rewrite import rewrite_with_teacher
from empathy_distill.testing.loopback import LoopbackServer
from empathy_distill.tracing import flush, pick
from tests.conftest import SAMPLE_DATA
from tests.real_models import mlflow_store

KEY = "sk-test-do-not-leak-1234567890"


@pytest.fixture(scope="module")
def sample_table():
    return ingest(SAMPLE_DATA, DataConfig(path=str(SAMPLE_DATA)), ValidationConfig()).table


@pytest.fixture
def tracked(tmp_path):
    import mlflow

    with mlflow_store(tmp_path, "tracing"):  # the URI and the active experiment reset after
        try:
            yield mlflow
        finally:
            if mlflow.active_run():
                mlflow.end_run()


def traces(mlflow, run):
    flush()  # MLflow writes traces on its own threads
    return mlflow.search_traces(locations=[run.info.experiment_id], run_id=run.info.run_id, return_type="list")


def test_a_teacher_stage_is_one_trace_with_a_span_per_request(sample_table, tmp_path, tracked, monkeypatch):
    mlflow = tracked
    monkeypatch.setenv("LOOP_KEY", KEY)
    with LoopbackServer() as server:
        cfg = TeacherConfig(
            base_url=server.base_url,
            model="loop",
            api_key_env="LOOP_KEY",
            cache_path=str(tmp_path / "t.sqlite"),
            tracing=TraceSettings(sample_rate=1.0, max_request_spans=None),
        )
        boot = BootstrapConfig(method="improve_human", strategy="naive", sft_dialogues=12, dpo_dialogues=8)
        with mlflow.start_run() as run:
            prompts = run_prompt_uris(["system", "naive"])
            log, _ = rewrite_with_teacher(sample_table, boot, build_teacher(cfg), prompts=prompts)
        (trace,) = traces(mlflow, run)
        root, *requests = trace.data.spans
        assert root.name == "teacher naive" and root.parent_id is None
        assert len(requests) == len(log) == 20
        first = requests[0]
        attrs = first.attributes
        assert attrs["prompt"] == prompts["naive"] == "prompts:/empathy-distill.naive/1"
        assert attrs["model"] == "loop" and attrs["endpoint"] == server.base_url.rstrip("/")
        assert attrs["cache"] == "sent" and attrs["attempts"] >= 1
        assert attrs["prompt_tokens"] > 0 and attrs["completion_tokens"] > 0 and attrs["latency_ms"] > 0
        assert attrs["outcome"] == "parsed" or attrs["outcome"].startswith("invalid: ")
        assert first.inputs["messages"][0]["role"] == "system" and first.outputs["text"]
        outcomes = sorted(s.attributes["outcome"] for s in requests)
        assert root.outputs["outcomes"]["parsed"] == sum(1 for o in outcomes if o == "parsed")
        assert root.outputs["outcomes"]["parsed"] == int((log["status"] == "ok").sum())
        assert KEY not in trace.to_json()

        # the same stage again, from the cache, with a sample: the chosen ones are the lowest request hashes
        small = cfg.model_copy(update={"tracing": TraceSettings(sample_rate=1.0, max_request_spans=5)})
        with mlflow.start_run() as again:
            rewrite_with_teacher(sample_table, boot, build_teacher(small), prompts=prompts)
        (cached,) = traces(mlflow, again)
        spans = cached.data.spans[1:]
        assert len(spans) == 5 and {s.attributes["cache"] for s in spans} == {"hit"}
        assert cached.data.spans[0].attributes["cache_hits"] == 20
        all_keys = sorted(s.attributes["request_key"] for s in requests)
        assert sorted(s.attributes["request_key"] for s in spans) == all_keys[:5]


def test_nothing_is_traced_outside_a_run_and_sampling_is_by_hash(sample_table, tmp_path, tracked):
    mlflow = tracked
    with LoopbackServer() as server:
        cfg = TeacherConfig(base_url=server.base_url, model="loop", cache_path=str(tmp_path / "t.sqlite"))
        boot = BootstrapConfig(method="improve_human", strategy="naive", sft_dialogues=6, dpo_dialogues=4)
        rewrite_with_teacher(sample_table, boot, build_teacher(cfg))
    flush()
    assert mlflow.search_traces(locations=[mlflow.get_experiment_by_name("tracing").experiment_id]).empty
    keys = [f"{i:08x}" + "0" * 56 for i in range(0, 2**32, 2**32 // 100)][:100]  # spread over the hash range
    half = pick(keys, 0.5, None)
    assert 45 <= len(half) <= 55 and half == pick(keys, 0.5, None)
    assert pick(keys, 0.0, None) == [] and pick(keys, 1.0, 0) == [] and len(pick(keys, 1.0, 7)) == 7


def test_an_llm_judge_traces_its_requests_with_the_verdicts(tmp_path, tracked):
    from empathy_distill.config import JudgeEndpointConfig
    from empathy_distill.judging.judges import LLMJudge

    mlflow = tracked
    with LoopbackServer() as server:
        cfg = JudgeEndpointConfig(base_url=server.base_url, model="loop", cache_path=str(tmp_path / "j.sqlite"))
        judge = LLMJudge(build_teacher(cfg), name="loopjudge")
        with mlflow.start_run() as run:
            verdicts = judge.verdicts(["A storm."] * 3, ["I am scared."] * 3, ["a", "bb", "ccc"], ["x", "y", "z"])
    (trace,) = traces(mlflow, run)
    root, *spans = trace.data.spans
    assert root.name == "judge loopjudge" and len(spans) == 3
    said = sorted(s.attributes["outcome"] for s in spans)
    expected = sorted(f"verdict: {v}" if v else "unparsed" for v in verdicts)
    assert said == expected
    assert all(s.attributes["prompt"] == "prompts:/empathy-distill.judge/1" for s in spans)


def test_an_llm_judge_asks_the_prompt_registry_once_per_run(tmp_path, tracked, monkeypatch):
    """The protocol calls a judge once per opponent and order; the judge template's version is synced with the
    prompt registry on the first pass of a run, not on every pass (each sync is a round trip per template)."""
    import empathy_distill.judging.judges as judges_module
    from empathy_distill.config import JudgeEndpointConfig

    asked = []
    real = judges_module.run_prompt_uris
    monkeypatch.setattr(judges_module, "run_prompt_uris", lambda names: asked.append(names) or real(names))
    mlflow = tracked
    with LoopbackServer() as server:
        cfg = JudgeEndpointConfig(base_url=server.base_url, model="loop", cache_path=str(tmp_path / "j.sqlite"))
        judge = judges_module.LLMJudge(build_teacher(cfg), name="loopjudge")
        for _ in range(2):
            with mlflow.start_run() as run:
                for _ in range(3):
                    judge.verdicts(["A storm."], ["I am scared."], ["a"], ["x"])
            assert all(len(t.data.spans) == 2 for t in traces(mlflow, run))  # each pass traced, with its prompt
    assert asked == [["judge"], ["judge"]]  # once per run
