"""MLflow's model server for a registered version: start, wait for ``/health``, switch, stop.

``mlflow models serve -m models:/NAME@champion --env-manager local`` resolves the alias
once, at start: a promotion therefore starts a second server for the new champion,
waits until it answers ``/health``, records it as live, and only then stops the old one
(blue/green on ``port`` and ``port + 1``). The live server is recorded in
``<state_dir>/live.json`` (URL, pid, version) so that the next deploy can find it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

READY_PATH = "/health"


def serve_command(model_uri: str, host: str, port: int, workers: int = 1) -> list[str]:
    """The command line (the venv's ``mlflow``; it execs ``uvicorn`` from the same bin folder)."""
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    return [
        mlflow_bin,
        "models",
        "serve",
        "-m",
        model_uri,
        "--env-manager",
        "local",
        "-h",
        host,
        "-p",
        str(port),
        "-w",
        str(workers),
    ]


def serve_env(tracking_uri: str, max_concurrency: int = 16) -> dict[str, str]:
    """The server's environment: the registry to resolve ``models:/`` in, the venv's bin first on PATH, and
    uvicorn's concurrency limit (MLflow starts uvicorn, which reads ``UVICORN_*`` options from the environment)."""
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_REGISTRY_URI": tracking_uri,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "UVICORN_LIMIT_CONCURRENCY": str(max_concurrency),
    }


def port_free(host: str, port: int) -> bool:
    """Nobody listens there. SO_REUSEADDR as uvicorn binds: a closed connection in TIME_WAIT does not make a port
    busy."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            return True
        except OSError:
            return False


def wait_ready(url: str, timeout_s: float, proc: subprocess.Popen | None = None) -> float:
    """Seconds until ``url + /health`` answered 200.

    Raises:
        RuntimeError: the process exited first, or the timeout passed.
    """
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before answering {url}{READY_PATH}")
        if healthy(url):
            return time.monotonic() - start
        time.sleep(0.25)
    raise RuntimeError(f"the server at {url} did not answer {READY_PATH} within {timeout_s:.0f} s")


def healthy(url: str) -> bool:
    """``url + /health`` answers 200 now."""
    try:
        with urllib.request.urlopen(url + READY_PATH, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def start(
    model_uri: str, tracking_uri: str, host: str, port: int, log_path: Path, max_concurrency: int = 16
) -> subprocess.Popen:
    """A detached server (its own session, so it outlives the step that started it)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            serve_command(model_uri, host, port),
            env=serve_env(tracking_uri, max_concurrency),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def stop(pid: int, timeout_s: float = 15.0) -> bool:
    """SIGTERM to the server's process group, SIGKILL after ``timeout_s``; False when it was not running."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):  # reap our own child (else it lingers as a zombie and looks alive)
            os.waitpid(pid, os.WNOHANG)
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return True


def live(state_dir: str | Path) -> dict[str, Any] | None:
    """The recorded live server, or None."""
    path = Path(state_dir) / "live.json"
    return json.loads(path.read_text()) if path.exists() else None


def deploy(
    model_name: str,
    version: str,
    tracking_uri: str,
    host: str,
    port: int,
    state_dir: str | Path,
    ready_timeout_s: float = 120.0,
    max_concurrency: int = 16,
) -> dict[str, Any]:
    """Serves ``models:/NAME/VERSION`` beside the live server, switches when ready, stops the old one.

    The version number (not the alias) is served, so the record says exactly what answers.
    """
    state_dir = Path(state_dir)
    old = live(state_dir)
    candidates = [port, port + 1]
    if old is not None:
        candidates = [p for p in candidates if p != old["port"]] + [old["port"]]
    chosen = next((p for p in candidates if port_free(host, p)), None)
    if chosen is None:
        raise RuntimeError(f"ports {port} and {port + 1} on {host} are both busy")
    uri = f"models:/{model_name}/{version}"
    proc = start(uri, tracking_uri, host, chosen, state_dir / f"server-{chosen}.log", max_concurrency)
    url = f"http://{host}:{chosen}"
    try:
        ready_s = wait_ready(url, ready_timeout_s, proc)
    except RuntimeError:
        stop(proc.pid)
        raise
    record = {
        "url": url,
        "host": host,
        "port": chosen,
        "pid": proc.pid,
        "model_uri": uri,
        "model": model_name,
        "version": version,
        "ready_seconds": round(ready_s, 2),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "log": str(state_dir / f"server-{chosen}.log"),
    }
    (state_dir / "live.json").write_text(json.dumps(record, indent=2))
    if old is not None and old.get("pid") != proc.pid:
        record["stopped_previous"] = {
            "version": old.get("version"),
            "url": old.get("url"),
            "was_running": stop(old["pid"]),
        }
    return record
