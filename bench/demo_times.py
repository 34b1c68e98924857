"""The demo as a user runs it after installation: wall time cold and cached, then its champion served under load.

    .venv/bin/python bench/demo_times.py

In a throw-away folder holding the demo's config and sample data (the installed package
runs it), with a fresh ZenML and MLflow store: ``empathy-distill init`` then ``distill``
(cold: the tiny student is built, every step runs), then ``distill`` again with nothing
changed (cached: ZenML reuses every step up to training). Where the gate did not promote the
demo's student, version 1 is made champion by a recorded ``promote --force --reason`` (serving
speed does not depend on whether the student won). Then ``empathy-distill serve``
answers 200 chats 8 at a time (latency percentiles, errors) and a burst of 128 sent 64 at a
time (beyond its limit of 32: refused with 429 and a Retry-After, and the server stays up). The last lines are

    demo_cold_s=<seconds> demo_cached_s=<seconds>
    serve_p50_ms=<ms> serve_p99_ms=<ms> serve_errors=<n>
    burst_refused=<429s> burst_other_errors=<n> serve_up_after=<0|1>
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("empathy-distill"))


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run([CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "configs").mkdir()
        shutil.copy(ROOT / "configs" / "demo.yaml", work / "configs" / "demo.yaml")
        (work / "data" / "sample").mkdir(parents=True)
        shutil.copy(ROOT / "data" / "sample" / "dialogues.csv", work / "data" / "sample" / "dialogues.csv")
        env = {
            **os.environ,
            "ZENML_CONFIG_PATH": str(work / ".zen-home"),
            "ZENML_ANALYTICS_OPT_IN": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "ZENML_LOGGING_VERBOSITY": "WARN",
        }
        cold = timed(["init"], work, env) + timed(["distill", "--config", "configs/demo.yaml"], work, env)
        cached = timed(["distill", "--config", "configs/demo.yaml"], work, env)
        print(
            f"cold (init + distill, empty stores): {cold:.1f} s; "
            f"cached (distill again, nothing changed): {cached:.1f} s"
        )
        print(f"demo_cold_s={cold:.1f} demo_cached_s={cached:.1f}", flush=True)
        ensure_champion(work, env)
        serve_champion(work, env)


def ensure_champion(work: Path, env: dict[str, str]) -> None:
    """Version 1 as champion: through the gate if it passed, else by a forced promotion that the history records."""
    args = ["promote", "--config", "configs/demo.yaml", "--version", "1", "--force", "--reason", "bench: serve latency"]
    proc = subprocess.run([CLI, *args], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 and "already holds champion" not in proc.stdout + proc.stderr:
        sys.exit(f"promote failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def post(url: str, text: str) -> int:
    body = json.dumps(
        {"dataframe_records": [{"messages": [{"role": "user", "content": text}]}], "params": {"max_new_tokens": 16}}
    ).encode()
    request = urllib.request.Request(url + "/invocations", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return 0


def serve_champion(work: Path, env: dict[str, str]) -> None:
    sys.path.insert(0, str(ROOT))
    from deploy.client import stop, wait_ready

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with open(work / "serve.log", "w") as log:
        proc = subprocess.Popen(
            [CLI, "serve", "--port", str(port)],
            cwd=work,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, 180, proc)

        def one(i: int) -> tuple[int, float]:
            start = time.perf_counter()
            return post(url, f"Day {i} was hard and I feel alone."), time.perf_counter() - start

        with ThreadPoolExecutor(8) as pool:
            load = list(pool.map(one, range(200)))
        latencies = sorted(t for _, t in load)
        errors = sum(code != 200 for code, _ in load)
        with ThreadPoolExecutor(64) as pool:
            burst = [code for code, _ in pool.map(one, range(128))]
        refused, other = burst.count(429), sum(code not in (200, 429) for code in burst)
        up = int(proc.poll() is None and post(url, "Still there?") == 200)
    finally:
        stop(proc.pid)
    p50, p99 = statistics.median(latencies) * 1000, latencies[int(0.99 * len(latencies)) - 1] * 1000
    print(
        f"serving the champion: 200 chats 8 at a time, p50 {p50:.0f} ms, p99 {p99:.0f} ms, {errors} errors; "
        f"a burst of 128, 64 at a time: {refused} refused with 429, {other} other errors, up after: {bool(up)}"
    )
    print(
        f"serve_p50_ms={p50:.0f} serve_p99_ms={p99:.0f} serve_errors={errors} burst_refused={refused} "
        f"burst_other_errors={other} serve_up_after={up}"
    )


if __name__ == "__main__":
    main()
