"""Runs the ``retrain`` pipeline (what a schedule registers) on the active stack and prints its gate's decision.

    python -m tests.retrain_probe CONFIG DATA_PATH [KEY=VALUE ...]

Prints the gate step's lines, then ``distill runs: N`` (how many distill runs the store holds after it).
Kept apart from the test fixtures: importing those points ZENML_CONFIG_PATH at a fresh folder.
"""

from __future__ import annotations

import sys


def main(config_path: str, data_path: str, *overrides: str) -> int:
    from zenml.client import Client

    from app.prepare import prepared
    from empathy_distill.config import load_config
    from pipelines.retrain import retrain

    config = prepared(load_config(config_path, [f"data.path={data_path}", *overrides]), needs_teacher=False)
    run = Client().get_pipeline_run(retrain(config=config).id)
    lines = run.steps["retrain_gate"].outputs["retrain_decision"][0].load()
    distill_runs = len(Client().list_pipeline_runs(pipeline=Client().get_pipeline("distill").id, size=50))
    print("\n".join([*lines, f"distill runs: {distill_runs}"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
