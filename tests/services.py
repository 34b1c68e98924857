"""The machine's real services for tests: a throw-away PostgreSQL database, an MLflow tracking server on it.

Tests that need PostgreSQL skip with the reason when 127.0.0.1:5432 does not answer.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

PG_ADMIN = os.environ.get("EMPATHY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_reason() -> str | None:
    """Why PostgreSQL cannot be used here, or None."""
    try:
        import psycopg2
    except ImportError:
        return "psycopg2 is not installed"
    try:
        psycopg2.connect(PG_ADMIN, connect_timeout=3).close()
    except psycopg2.OperationalError as exc:
        return f"PostgreSQL at {PG_ADMIN} is not reachable ({' '.join(str(exc).split())[:120]})"
    return None


needs_postgres = pytest.mark.skipif(postgres_reason() is not None, reason=postgres_reason() or "")


@contextmanager
def postgres_database(prefix: str = "ed_test"):
    """A fresh database, dropped afterwards (even with connections still open)."""
    import psycopg2

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(PG_ADMIN)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


ADMIN = ("admin", "empathy-tests-admin-pw")


@contextmanager
def mlflow_server(backend_store_uri: str, artifacts: Path, log: Path, auth: bool = False, port: int | None = None):
    """``mlflow server`` on a loopback port (a free one unless given) over ``backend_store_uri``, artifacts proxied
    to a folder.

    With ``auth``, MLflow's basic-auth app guards it (users in a SQLite file beside the log; admin = :data:`ADMIN`).
    """
    from deploy.client import stop, wait_ready

    port = port or free_port()
    cmd = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--backend-store-uri",
        backend_store_uri,
        "--artifacts-destination",
        str(artifacts),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "2",
    ]
    env = {
        **os.environ,
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    if auth:
        ini = log.with_name("basic_auth.ini")
        ini.write_text(
            "[mlflow]\ndefault_permission = READ\ndatabase_uri = "
            f"sqlite:///{log.with_name('basic_auth.db')}\nadmin_username = {ADMIN[0]}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            "auth_cache_ttl_seconds = 60\n"
        )  # else every request pays a PBKDF2 check (about 3x slower)
        cmd += ["--app-name", "basic-auth"]
        env.update(
            MLFLOW_AUTH_CONFIG_PATH=str(ini),
            MLFLOW_AUTH_ADMIN_PASSWORD=ADMIN[1],
            MLFLOW_FLASK_SERVER_SECRET_KEY=uuid.uuid4().hex,
        )
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, 180, proc)
        yield url
    finally:
        stop(proc.pid)


MARIADB_ADMIN = {
    "host": "127.0.0.1",
    "port": int(os.environ.get("EMPATHY_TEST_MARIADB_PORT", "3306")),
    "user": "root",
    "password": "",
}


def mariadb_reason() -> str | None:
    """Why MariaDB (or MySQL) cannot be used here, or None."""
    import pymysql

    try:
        pymysql.connect(**MARIADB_ADMIN, connect_timeout=3).close()
    except pymysql.err.MySQLError as exc:
        return f"MariaDB at {MARIADB_ADMIN['host']}:{MARIADB_ADMIN['port']} is not reachable ({exc})"
    return None


@contextmanager
def mariadb_database(prefix: str = "ed_test"):
    """A fresh database and a user that owns it (ZenML refuses a MySQL URL without a password); both dropped afterwards.

    Yields ``mysql://user:password@127.0.0.1:3306/name``.
    """
    import pymysql

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    password = uuid.uuid4().hex
    admin = pymysql.connect(**MARIADB_ADMIN, autocommit=True)
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
        cur.execute(f"CREATE USER '{name}'@'%%' IDENTIFIED BY '{password}'")
        cur.execute(f"GRANT ALL ON `{name}`.* TO '{name}'@'%%'")
    try:
        yield f"mysql://{name}:{password}@{MARIADB_ADMIN['host']}:{MARIADB_ADMIN['port']}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cur.execute(f"DROP USER IF EXISTS '{name}'@'%%'")
        admin.close()


@contextmanager
def zenml_server(store_url: str, home: Path, log: Path):
    """A ZenML server on a free loopback port over ``store_url``, started as the zenml-server image starts it.

    ``ZENML_SERVER_AUTO_ACTIVATE`` creates the admin user ``default`` with an empty password; the
    server keeps its own ZenML home (``home``), apart from the clients'.
    """
    from deploy.client import stop, wait_ready

    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "zenml.zen_server.zen_server_api:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    env = {
        **os.environ,
        "ZENML_CONFIG_PATH": str(home),
        "ZENML_STORE_URL": store_url,
        "ZENML_ANALYTICS_OPT_IN": "false",
        "ZENML_SERVER_AUTO_ACTIVATE": "true",
        "ZENML_SERVER_JWT_SECRET_KEY": uuid.uuid4().hex,
        "ZENML_SERVER_DEPLOYMENT_TYPE": "other",
    }
    for key in ("ZENML_STORE_USERNAME", "ZENML_STORE_PASSWORD", "ZENML_STORE_API_KEY"):
        env.pop(key, None)
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, 240, proc)  # the first start creates the schema (about 15 s on MariaDB here)
        yield url
    finally:
        stop(proc.pid)


def zenml_client_env(url: str) -> dict[str, str]:
    """What connects a ZenML client to the server (the service-account way is ZENML_STORE_API_KEY)."""
    return {"ZENML_STORE_URL": url, "ZENML_STORE_USERNAME": "default", "ZENML_STORE_PASSWORD": ""}
