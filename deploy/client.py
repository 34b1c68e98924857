"""The client side of the stable address: start the server detached, wait for it, ask what it serves, stop it.

The step that deploys, the CLI, the tests and the benchmarks call these; the server process itself is
:mod:`deploy.server` and its HTTP application :mod:`deploy.app`.
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
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from empathy_distill.config import DeployConfig

READY_PATH = "/health"


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


def start_base(
    model: str, port: int, log_file: str | Path, cwd: str | Path, options: Sequence[str] = (), env: dict | None = None
) -> subprocess.Popen:
    """``empathy-distill serve --base MODEL`` on 127.0.0.1:``port``, detached, its output in ``log_file``
    (``options``: more CLI arguments, e.g. ``--set student.cache_dir=...``; ``env``: its environment, default this
    process's; this repository goes first on its PYTHONPATH)."""
    environ = dict(os.environ if env is None else env)
    repo = str(Path(__file__).resolve().parent.parent)
    environ["PYTHONPATH"] = os.pathsep.join(p for p in (repo, environ.get("PYTHONPATH")) if p)
    with open(log_file, "w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--base", model, "--port", str(port), *options],
            env=environ,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def start(model_name: str, tracking_uri: str, cfg: DeployConfig) -> subprocess.Popen:
    """The server (``python -m deploy.server``), detached (its own session, so it outlives the step that started it).
    The tracking URI travels in the environment, not on the command line (it may hold credentials)."""
    state_dir = Path(cfg.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    repo = str(Path(__file__).resolve().parent.parent)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_REGISTRY_URI": tracking_uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PYTHONPATH": os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p),
    }
    cmd = [
        *(
            sys.executable,
            "-m",
            "deploy.server",
            "--model-name",
            model_name,
            "--host",
            cfg.host,
            "--port",
            str(cfg.port),
        ),
        *("--state-dir", str(state_dir), "--max-concurrency", str(cfg.max_concurrency), "--poll-s", str(cfg.poll_s)),
        *("--max-loaded", str(cfg.max_loaded), "--dtype", cfg.dtype, "--decoder", cfg.decoder),
        *([] if cfg.merge_adapter else ["--no-merge"]),
    ]
    with open(state_dir / "server.log", "ab") as log:
        return subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )


def serving(url: str) -> dict[str, Any] | None:
    """The server's ``/health`` body (its routes), or None when it does not answer."""
    try:
        with urllib.request.urlopen(url + READY_PATH, timeout=2) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as err:
        with contextlib.suppress(ValueError):
            return json.loads(err.read())
        return None
    except (OSError, ValueError):
        return None


def wait_serving(url: str, version: str, timeout_s: float, route: str = "champion") -> float:
    """Seconds until the server at ``url`` answers ``route`` with ``version``.

    Raises:
        RuntimeError: the timeout passed first (the message says what it serves and any load error).
    """
    start_t = time.monotonic()
    seen = None
    while time.monotonic() - start_t < timeout_s:
        seen = serving(url)
        if seen and seen.get("routes", {}).get(route) == str(version):
            return time.monotonic() - start_t
        time.sleep(0.2)
    raise RuntimeError(
        f"the server at {url} did not switch {route} to v{version} within {timeout_s:.0f} s "
        f"(serving {(seen or {}).get('routes')}, errors {(seen or {}).get('errors')})"
    )


def live(state_dir: str | Path) -> dict[str, Any] | None:
    """The server's own record (``<state_dir>/live.json``: URL, pid, routes), or None."""
    path = Path(state_dir) / "live.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class Deployment(BaseModel):
    """What the stable address serves after a run's decision (the ``deployment`` artifact of a run)."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    deployed: bool
    """Whether this call made the address switch (False: nothing to serve, or it served the target already)."""
    url: str
    reason: str = ""
    version: str | None = None
    model: str = ""
    model_uri: str = ""
    host: str = ""
    port: int = 0
    pid: int | None = None
    started: bool = False
    """Whether the server process was started by this call (else it was running and followed the alias)."""
    ready_seconds: float = 0.0
    log: str = ""

    def metadata(self) -> dict[str, str]:
        """What ZenML shows of it beside the step (the fields that apply)."""
        keep = ("deployed", "url", "version", "model_uri", "reason")
        return {k: str(v) for k, v in self.model_dump(include=set(keep)).items() if v not in (None, "")}


def serve_champion(model_name: str, target: str | None, tracking_uri: str, cfg: DeployConfig) -> Deployment:
    """Makes ``cfg.host:cfg.port`` answer with ``target`` as champion after a run's decision: the server is started
    when none answers there; otherwise only waits until the server has followed the alias (the alias is already moved:
    the registry is the only trigger; the address never changes).

    Raises:
        RuntimeError: the port is held by something else, the server exited, or it did not switch in time.
    """
    url = f"http://{cfg.host}:{cfg.port}"
    if target is None:
        return Deployment(deployed=False, url=url, reason="no champion to serve")
    current = serving(url)
    if current is not None and current.get("routes", {}).get("champion") == str(target):
        return _serving(model_name, str(target), cfg, deployed=False, reason=f"v{target} is already served at {url}")
    started = False
    if current is None or current.get("model") != model_name:
        if current is not None or not port_free(cfg.host, cfg.port):
            raise RuntimeError(f"port {cfg.port} on {cfg.host} is in use by something other than this model's server")
        proc = start(model_name, tracking_uri, cfg)
        try:
            wait_ready(url, cfg.ready_timeout_s, proc)
        except RuntimeError:
            stop(proc.pid)
            raise
        started = True
    switched = wait_serving(url, str(target), cfg.ready_timeout_s)
    return _serving(model_name, str(target), cfg, deployed=True, started=started, ready_seconds=round(switched, 2))


def _serving(model_name: str, version: str, cfg: DeployConfig, **outcome: Any) -> Deployment:
    """The address serving ``version`` as champion, with what this call did (``outcome``)."""
    return Deployment(
        url=f"http://{cfg.host}:{cfg.port}",
        version=version,
        model=model_name,
        model_uri=f"models:/{model_name}@champion",
        host=cfg.host,
        port=cfg.port,
        pid=(live(cfg.state_dir) or {}).get("pid"),
        log=str(Path(cfg.state_dir) / "server.log"),
        **outcome,
    )
