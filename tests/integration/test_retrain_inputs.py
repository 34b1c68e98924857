"""The retrain gate sees code and libraries: a one-line change to the training code, or another library version,
is named as what changed since the champion; the same inputs are not a change."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from empathy_distill.config import load_config
from empathy_distill.data.hashing import file_fingerprint
from empathy_distill.registry.inputs import CODE_PACKAGES, input_hashes, library_versions
from empathy_distill.registry.promotion import Promotions
from empathy_distill.registry.retrain import decide
from tests.conftest import REPO, SAMPLE_DATA

MODEL = "empathy-student"
DEMO = REPO / "configs" / "tiny.yaml"

# what `retrain` computes and decides, run in a process that imports the code from a given folder
DECIDE = """
import sys
import mlflow
import empathy_distill
from empathy_distill.config import load_config
from empathy_distill.data.hashing import file_fingerprint
from empathy_distill.registry.inputs import input_hashes
from empathy_distill.registry.retrain import decide
uri, config, data = sys.argv[1:4]
print("imported from", empathy_distill.__file__)
now = input_hashes(load_config(config, [f"data.path={data}"]), file_fingerprint(data))
print(decide(mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri), "empathy-student", "1", now)[1])
"""


def champion_with_inputs(tmp_path, inputs: dict[str, str], libraries: dict[str, str]) -> tuple[str, object]:
    from tests.tiny_model import register_tiny_versions

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (version,) = register_tiny_versions(tmp_path, uri, MODEL)
    p = Promotions.open(uri)
    p.move_champion(MODEL, version, expected=None, promote=True, action="manual")
    for part, value in inputs.items():
        p.client.set_model_version_tag(MODEL, version, f"inputs.{part}", value)
    p.client.set_model_version_tag(MODEL, version, "lineage.libraries", json.dumps(libraries))
    return uri, p


def test_a_one_line_change_to_the_training_code_is_named(tmp_path):
    config = load_config(str(DEMO), [f"data.path={SAMPLE_DATA}"])
    uri, p = champion_with_inputs(tmp_path, input_hashes(config, file_fingerprint(SAMPLE_DATA)), library_versions())
    run, line = decide(p.client, MODEL, "1", input_hashes(config, file_fingerprint(SAMPLE_DATA)))
    assert not run and line.startswith("retrain: nothing changed since champion v1")

    src = tmp_path / "src"
    for package in CODE_PACKAGES:
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    sft = src / "empathy_distill" / "training" / "sft.py"
    sft.write_text(sft.read_text() + "\n# a one-line fix\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(REPO)]), "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.run(
        [sys.executable, "-c", DECIDE, uri, str(DEMO), str(SAMPLE_DATA)],
        env=env,
        cwd=tmp_path,  # not the repo: `python -c` puts the working folder first on the path
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"imported from {src}" in proc.stdout  # the changed copy is what ran
    assert "retrain: changed since champion v1: code: running" in proc.stdout, proc.stdout


def test_another_library_version_is_named_with_the_versions(tmp_path):
    config = load_config(str(DEMO), [f"data.path={SAMPLE_DATA}"])
    now = input_hashes(config, file_fingerprint(SAMPLE_DATA))
    older = {**library_versions(), "trl": "0.9.6"}
    recorded = {**now, "libraries": "sha256:recorded-with-trl-0.9.6"}
    uri, p = champion_with_inputs(tmp_path, recorded, older)
    run, line = decide(p.client, MODEL, "1", now)
    assert run and line == (
        f"retrain: changed since champion v1: libraries (trl 0.9.6 -> {library_versions()['trl']}): running"
    )
