"""`lineage --verify` after a real demo run: every check holds, then each tamper case in turn is caught by the line
that names it (a byte of the registered adapter, a row of the data, the data gone, a template, the alias moved by
hand), and each repair makes it verify again."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

from tests.conftest import GATE_OUT_OF_REACH, REPO, SAMPLE_DATA

pytestmark = pytest.mark.e2e

DEMO = str(REPO / "configs" / "tiny.yaml")
URI = "models:/empathy-student/1"


def failed_lines(out: str) -> list[str]:
    return [line.strip()[len("FAIL") :].strip() for line in out.splitlines() if line.strip().startswith("FAIL")]


def test_lineage_verify_catches_each_tamper_case(zen, tmp_path):
    import mlflow

    zen("init")
    data = tmp_path / "dialogues.csv"
    shutil.copy(SAMPLE_DATA, data)
    out = zen("run", "--config", DEMO, "--set", f"data.path={data}", *GATE_OUT_OF_REACH).stdout
    assert "promotion: v1 not promoted (champion stays none)" in out  # so that the forced promotion below promotes
    zen("promote", "--config", DEMO, "--version", "1", "--force", "--reason", "a champion to verify")
    uri = re.search(r"--backend-store-uri (\S+)", out).group(1)

    def verify(check: bool = True):
        proc = zen("lineage", "--config", DEMO, URI, "--verify", check=False)
        assert proc.returncode == (0 if check else 1), proc.stdout + proc.stderr
        return proc.stdout

    clean = verify()
    assert "verified: every check holds" in clean and not failed_lines(clean)
    for name in ("adapter", "base", "data", "prompts", "prompt registry", "promotions"):
        assert re.search(rf"^\s+ok\s+{name}: ", clean, re.M), (name, clean)
    # --json stays JSON while another command works in the same folder (ZenML reloads its config and says so)
    stop = threading.Event()

    def promote_loop():
        while not stop.is_set():
            zen("promote", "--config", DEMO, "--version", "1", "--force", "--reason", "loop", check=False)

    loop = threading.Thread(target=promote_loop)
    loop.start()
    try:
        for _ in range(6):
            as_json = json.loads(zen("lineage", "--config", DEMO, URI, "--verify", "--json", check=False).stdout)
            assert as_json["verify"]["ok"] is True and len(as_json["verify"]["checks"]) == 6
    finally:
        stop.set()
        loop.join()

    # a row of the data changed, then the file gone
    original = data.read_bytes()
    data.write_bytes(original.replace(b"\n", b"\n ", 1))  # one leading space in the first data row
    (line,) = failed_lines(verify(False))
    assert line.startswith(f"data: CHANGED since registration: {data} (now sha256:"), line
    data.rename(tmp_path / "moved.csv")
    assert failed_lines(verify(False)) == [f"data: GONE: {data} no longer exists"]
    (tmp_path / "moved.csv").write_bytes(original)
    (tmp_path / "moved.csv").rename(data)
    verify()

    # the champion alias moved by hand, past the promotion history
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    v1 = client.get_model_version("empathy-student", "1")
    mlflow.set_tracking_uri(uri)
    try:
        client.create_model_version("empathy-student", source=v1.source, run_id=v1.run_id, model_id=v1.model_id)
    finally:
        mlflow.set_tracking_uri(None)
    client.set_registered_model_alias("empathy-student", "champion", "2")
    assert failed_lines(verify(False)) == ["promotions: alias is v2 but the history ends with v1"]
    client.set_registered_model_alias("empathy-student", "champion", "1")
    verify()

    # the registry's copy of the student's system prompt edited behind MLflow's API, then put back
    db = uri.removeprefix("sqlite:///")
    where = "name = 'empathy-distill.student_system' AND version = 1 AND key = 'mlflow.prompt.text'"
    with sqlite3.connect(db) as conn:
        (text,) = conn.execute(f"SELECT value FROM model_version_tags WHERE {where}").fetchone()
        conn.execute(f"UPDATE model_version_tags SET value = ? WHERE {where}", (text + " Be blunt.",))
    (line,) = failed_lines(verify(False))
    assert line.startswith("prompt registry: prompts:/empathy-distill.student_system/1: the registry's text"), line
    with sqlite3.connect(db) as conn:
        conn.execute(f"UPDATE model_version_tags SET value = ? WHERE {where}", (text,))
    verify()

    # one byte of the registered adapter flipped in the artifact store
    store = Path(client.get_model_version_download_uri("empathy-student", "1").removeprefix("file://"))
    weights = next(store.rglob("adapter_model.safetensors"))
    raw = bytearray(weights.read_bytes())
    raw[-3] ^= 0x01  # inside the last tensor's data
    weights.write_bytes(bytes(raw))
    (line,) = failed_lines(verify(False))
    assert line.startswith("adapter: CHANGED: the registry's copy hashes sha256:") and "registered sha256:" in line


def test_a_changed_template_is_named(tmp_path):
    """The prompts check against a deployed copy of the templates with one file edited."""
    from empathy_distill.prompts import method_prompt_hash
    from empathy_distill.registry.verify import check_prompts

    folder = tmp_path / "prompts"
    shutil.copytree(REPO / "empathy_distill" / "prompts", folder)
    tags = {
        "lineage.prompt_hash": method_prompt_hash("improve_llm", "all_three"),
        "lineage.method": "improve_llm",
        "lineage.strategy": "all_three",
    }
    assert check_prompts(tags, folder).ok
    (folder / "all_three.txt").write_text((folder / "all_three.txt").read_text() + "\nBe brief.")
    check = check_prompts(tags, folder)
    assert not check.ok and check.line.startswith(f"prompts: CHANGED: improve_llm/all_three templates in {folder}")
    (folder / "naive.txt").write_text("unused by all_three")  # a template the method does not use changes nothing
    (folder / "all_three.txt").unlink()
    assert not check_prompts(tags, folder).ok  # a template gone is a change too
