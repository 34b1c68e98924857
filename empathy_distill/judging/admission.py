"""Which LLM judges the gate may listen to: only one whose calibration against the human ratings is on record.

An LLM judge is known by what shapes its verdicts: its model, its endpoint and the hash of the judge templates
(``judge_system``, ``judge``). ``empathy-distill calibrate`` records each LLM judge's calibration as an MLflow run
in the experiment ``judge-calibrations`` (tags: the judge's key, model, endpoint, prompt hash; metrics: agreement
with the human ratings, parse rate, position bias, tie rate). The evaluation looks the judge up there: it is admitted
when a calibration of the same model and prompt hash on at least ``MIN_PAIRS`` pairs agrees at or above
``evaluation.min_judge_agreement``; otherwise its comparisons are still reported and the gate does not count them
(``registry/policy.py``), and says why in one line with the figures.

The offline judges (the scorer, the reference judge) are functions of the data that the evaluation itself fits or
reads; they are not subject to this rule (the scorer's held-out agreement is in ``calibrate``'s output).
"""

from __future__ import annotations

import hashlib
from typing import Any

from empathy_distill.prompts import prompt_hash

CALIBRATION_EXPERIMENT = "judge-calibrations"
MIN_PAIRS = 200
"""A calibration on fewer pairs admits nothing (its interval would be too wide to say much)."""
JUDGE_TEMPLATES = ["judge_system", "judge"]


def judge_identity(judge) -> dict[str, str]:
    """What shapes an LLM judge's verdicts (``judge``: a ``JudgeConfig`` of kind llm); the key hashes model and
    prompt (the endpoint is recorded, not keyed: the same model served elsewhere is the same judge)."""
    # import-time: empathy_distill.teacher 0.3 s to import (empathy_distill.judging.admission alone 0.0 s)
    from empathy_distill.teacher import endpoint_of

    model = judge.endpoint.model
    prompts = prompt_hash(JUDGE_TEMPLATES)
    key = hashlib.sha256(f"{model}\0{prompts}".encode()).hexdigest()[:16]
    return {
        "key": key,
        "model": model,
        "endpoint": without_credentials(endpoint_of(judge.endpoint)),
        "prompt_hash": prompts,
    }


def without_credentials(url: str) -> str:
    """The URL without a user or password in it (it becomes an MLflow tag) and without a query string."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if not parts.netloc:
        return url
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def decide(identity: dict[str, str], records: list[dict[str, Any]], min_agreement: float) -> dict[str, Any]:
    """Admitted or not, with the one line that says why (pure: ``records`` are this judge's calibrations)."""
    usable = [r for r in records if int(r.get("pairs", 0)) >= MIN_PAIRS]
    best = max(usable, key=lambda r: float(r["agreement"]), default=None)
    who = f"judge {identity['model']} (prompt {identity['prompt_hash'][7:19]})"
    if best is None:
        small = f" ({len(records)} on fewer than {MIN_PAIRS} pairs)" if records else ""
        return {
            "admitted": False,
            "reason": f"{who}: no calibration on record{small}; run empathy-distill calibrate with it configured",
            "calibration": None,
        }
    figures = (
        f"agreement {float(best['agreement']):.3f} on {int(best['pairs'])} pairs, parse rate "
        f"{float(best.get('parse_rate', float('nan'))):.2f}, first-position share "
        f"{float(best.get('position_bias', float('nan'))):.2f}"
    )
    if float(best["agreement"]) >= min_agreement:
        return {"admitted": True, "reason": f"{who}: {figures} >= {min_agreement}", "calibration": best}
    return {
        "admitted": False,
        "reason": f"{who}: {figures}, below evaluation.min_judge_agreement {min_agreement}",
        "calibration": best,
    }


def recorded_calibrations(key: str, tracking_uri: str | None = None) -> list[dict[str, Any]]:
    """Every calibration of the judge ``key`` in the tracking store (none when the experiment does not exist)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(CALIBRATION_EXPERIMENT)
    if experiment is None:
        return []
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`judge.key` = '{key}'")
    return [
        {**{k: v for k, v in run.data.metrics.items()}, "run_id": run.info.run_id, "pairs": run.data.metrics["pairs"]}
        for run in runs
        if "agreement" in run.data.metrics and "pairs" in run.data.metrics
    ]


def record_calibration(identity: dict[str, str], result: dict[str, Any], tracking_uri: str | None = None) -> str:
    """Logs one calibration as a run of ``judge-calibrations``; returns its run id."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(CALIBRATION_EXPERIMENT)
    experiment_id = (
        experiment.experiment_id if experiment is not None else client.create_experiment(CALIBRATION_EXPERIMENT)
    )
    run = client.create_run(
        experiment_id,
        run_name=f"calibrate-{identity['model']}"[:200],
        tags={f"judge.{k}": v for k, v in identity.items()},
    )
    metrics = {
        "agreement": result["judge_accuracy"],
        "pairs": result["pairs"],
        "parse_rate": result["parse_rate"],
        "position_bias": result["position_bias"],
        "tie_rate": result["judge_tie_rate"],
        "ci_low": result["ci"][0],
        "ci_high": result["ci"][1],
        "length_baseline": result["length_baseline_accuracy"],
    }
    for name, value in metrics.items():
        client.log_metric(run.info.run_id, name, float(value))
    client.log_dict(run.info.run_id, result, "calibration.json")
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def admissions(cfg, tracking_uri: str | None = None) -> dict[str, dict[str, Any]]:
    """Per LLM judge of an ``EvaluationConfig``: its identity and the admission decision."""
    out = {}
    for judge in cfg.judges:
        if judge.kind != "llm" or judge.endpoint is None:
            continue
        identity = judge_identity(judge)
        out[judge.name] = {
            "identity": identity,
            **decide(identity, recorded_calibrations(identity["key"], tracking_uri), cfg.min_judge_agreement),
        }
    return out
