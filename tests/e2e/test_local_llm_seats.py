"""A real local LLM (SmolLM2-135M-Instruct behind ``serve --base``) in the teacher's and the judge's seats, through
the openai client as any remote endpoint: on a handful of the sample's dialogues the accounting holds (every
dialogue is kept, invalid or failed; every SFT row and DPO pair is kept or quarantined with a reason; every verdict
is parsed or counted invalid). The quality of a 135M teacher is not asserted: bench/local_teacher.py reports it."""

from __future__ import annotations

import json
import os

import pandas as pd

from empathy_distill.config import load_config
from empathy_distill.data.ingest import ingest
from empathy_distill.judging.calibration import calibrate_judge
from empathy_distill.judging.judges import LLMJudge
from empathy_distill.standalone import sets_to_folder
from empathy_distill.teacher import build_teacher
from tests.conftest import REPO, SAMPLE_DATA
from tests.services import free_port

PRESET = "smollm2-135m-instruct"


def test_a_local_llm_as_teacher_and_judge_keeps_its_accounts(real_cache, real_folder, tmp_path):
    from deploy.client import start_base, stop, wait_ready

    real_folder(PRESET)  # the session's conversion, found by the server in real_cache
    port = free_port()
    zen = {**os.environ, "ZENML_CONFIG_PATH": str(tmp_path / "zen")}
    proc = start_base(PRESET, port, tmp_path / "serve.log", tmp_path, [f"--set=student.cache_dir={real_cache}"], zen)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_ready(url.removesuffix("/v1"), 300, proc)
        config = load_config(
            str(REPO / "configs" / "local-teacher.yaml"),
            [
                f"data.path={SAMPLE_DATA}",
                "data.format=auto",
                "bootstrap.method=improve_human",
                "bootstrap.strategy=naive",
                "bootstrap.sft_dialogues=4",
                "bootstrap.dpo_dialogues=2",
                f"teacher.base_url={url}",
                f"teacher.cache_path={tmp_path / 'teacher.sqlite'}",
                "teacher.max_tokens=96",
                "teacher.max_failed_fraction=1.0",
            ],
        )
        report = sets_to_folder(config, tmp_path / "sets")
        log = pd.read_parquet(tmp_path / "sets" / "bootstrap_log.parquet")
        quarantine = [json.loads(q) for q in (tmp_path / "sets" / "quarantine.jsonl").read_text().splitlines()]

        table = ingest(config.data.path, config.data, config.validation).table
        (judge_cfg,) = [j for j in config.evaluation.judges if j.kind == "llm"]
        endpoint = judge_cfg.endpoint.model_copy(update={"base_url": url, "cache_path": str(tmp_path / "judge.sqlite")})
        judge = LLMJudge(build_teacher(endpoint), name="smollm2", on_error="continue")
        calibration = calibrate_judge(table, judge, max_pairs=8)
    finally:
        stop(proc.pid)
        print((tmp_path / "serve.log").read_text()[-2000:])
    print(json.dumps(report, indent=1, default=str)[:3000], json.dumps(calibration))

    planned = report["sft_dialogues_planned"] + report["dpo_dialogues_planned"]
    assert planned == 6 and len(log) == planned
    statuses = log["status"].value_counts().to_dict()
    assert sum(statuses.values()) == planned and set(statuses) <= {"ok", "invalid", "error"}
    assert report["dialogues_ok"] + report["dialogues_invalid"] + report["dialogues_error"] == planned
    assert report["dialogues_error"] == 0  # the endpoint answered every request
    assert all(str(r).split(":")[0] in report["not_ok_reasons"] for r in log.loc[log["status"] == "invalid", "reason"])
    usage = report["teacher_usage"]
    assert usage["requests"] == planned and usage["completion_tokens"] > 0 and usage["prompt_tokens"] > 0
    assert report["sft_rows_in"] == report["sft_rows"] + sum(q["set"] == "sft" for q in quarantine)
    assert report["dpo_pairs_in"] == report["dpo_pairs"] + sum(q["set"] == "dpo" for q in quarantine)
    assert all(q["reason"] for q in quarantine)
    assert report["rows_quarantined"] == len(quarantine)

    assert calibration["pairs"] == 8
    valid = calibration["pairs"] - calibration["invalid"]
    assert 0 <= valid <= 8 and 0.0 <= calibration["parse_rate"] <= 1.0
    assert (calibration["parse_rate"] == 1.0) <= (calibration["invalid"] == 0)
