"""The teacher under 20% mixed faults, killed with SIGKILL mid-run, then run again: no row lost, and no
request whose reply had arrived is sent again."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter

import pandas as pd

from empathy_distill.testing.loopback import LoopbackServer
from tests.conftest import REPO, SAMPLE_DATA

FAULTS = {"429": 0.05, "500": 0.05, "hang": 0.02, "drop": 0.04, "malformed": 0.04}  # 20% of all requests


def cached_replies(path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]


def test_mixed_faults_and_kill_minus_nine_lose_nothing_and_repeat_nothing(tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache.sqlite"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("OPENAI_API_KEY", None)
    overrides = {
        "data.path": SAMPLE_DATA,
        "data.split.method": "auto",
        "teacher.cache_path": cache,
        "teacher.concurrency": 8,
        "teacher.timeout_s": 3,  # a hung request (5 s) is abandoned and retried
    }
    with LoopbackServer(latency_mean_s=0.05, seed=3, fault_rates=FAULTS, hang_s=5) as server:
        overrides["teacher.base_url"] = server.base_url
        args = [sys.executable, "-m", "app.cli", "bootstrap", "--config", str(REPO / "configs" / "paper.yaml")]
        args += ["--out", str(out)] + [arg for k, v in overrides.items() for arg in ("--set", f"{k}={v}")]
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while sum(server.completed.values()) < 40 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL and not (out / "report.json").exists()
        arrived = cached_replies(cache)  # replies the killed run had received and kept
        time.sleep(1.0)  # what the server still had in hand finishes (for nobody) before the rerun is counted
        before = Counter(server.completed)

        rerun = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
        again = Counter(server.completed) - before
    faults = {k: server.statuses[k] for k in FAULTS}
    assert sum(faults.values()) >= 10, faults  # the faults did happen
    assert 0 < arrived < 90
    # the rerun asked only for what had not arrived, each once: 45 initial replies + 45 improvements in all
    assert sum(again.values()) == 90 - arrived and all(n == 1 for n in again.values())
    report = json.loads((out / "report.json").read_text())
    assert report["teacher_cache_hits"] == arrived and report["dialogues_error"] == 0
    sft, dpo = pd.read_parquet(out / "sft.parquet"), pd.read_parquet(out / "dpo.parquet")
    assert (len(sft), len(dpo)) == (24, 21)  # what a run without faults or a kill gives
